"""Activation overflow policies (hgq.layers.overflow): which quantizer gets which mode, the config key, and
that a model under input-SAT exports bit-exactly (Keras == emulator == hls4ml C-sim == Verilator, with ==)
on in-range inputs and on inputs x4 that overflow the hidden, wrapping activations."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from exactness import check_backends, require_tools
from models import fit_randomized, random_data
from test_export_rtl import _overflows

from hgq import ir
from hgq.layers import QDense, QQuantize
from hgq.layers.overflow import POLICIES, activation_overflow_modes, apply_activation_overflow, input_quantizers
from hgq.workflow import config as cfg


def mlp() -> keras.Model:
    x = keras.Input((6,))
    y = QDense(5, activation='relu', name='d0')(x)
    y = QDense(4, activation='relu', name='d1')(y)
    return keras.Model(x, QDense(3, name='d2')(y))


@pytest.mark.parametrize('policy, want', [
    ('SAT', {'d0': 'SAT', 'd1': 'SAT', 'd2': 'SAT'}),
    ('WRAP', {'d0': 'WRAP', 'd1': 'WRAP', 'd2': 'WRAP'}),
    ('input-SAT', {'d0': 'SAT', 'd1': 'WRAP', 'd2': 'WRAP'}),
])
def test_modes_per_quantizer(policy: str, want: dict[str, str]) -> None:
    model = mlp()
    apply_activation_overflow(model, policy.lower())  # the name is case-insensitive
    assert activation_overflow_modes(model) == {(n, 'input_quantizer'): m for n, m in want.items()}


def test_input_sat_follows_data_moving_layers_and_qquantize() -> None:
    x = keras.Input((2, 3))
    y = keras.layers.Reshape((6,))(x)  # no quantizer: the next layer still reads the input
    y = QDense(4, name='a')(y)
    model = keras.Model(x, QDense(2, name='b')(y))
    assert input_quantizers(model) == [('a', 'input_quantizer')]
    x = keras.Input((6,))
    y = QQuantize(name='q')(x)  # QQuantize clips the input; the dense after it reads a hidden tensor
    model = keras.Model(x, QDense(2, name='c')(y))
    modes = apply_activation_overflow(model, 'input-SAT')
    assert modes == {('q', 'quantizer'): 'SAT', ('c', 'input_quantizer'): 'WRAP'}


def test_bad_policy_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match='input-SAT'):
        apply_activation_overflow(mlp(), 'clip')


def test_config_key() -> None:
    resolved = cfg.resolve({'quantizers': {'activation_overflow': 'wrap'}}, {}, {})
    assert resolved['quantizers'] == {'activation_overflow': 'WRAP'}
    assert cfg.resolve({}, {}, {})['quantizers']['activation_overflow'] in POLICIES
    assert cfg.OVERFLOW_POLICIES == POLICIES
    with pytest.raises(cfg.ConfigError, match='quantizers.activation_overflow'):
        cfg.resolve({'quantizers': {'activation_overflow': 'clip'}}, {}, {})
    with pytest.raises(cfg.ConfigError, match='unknown key'):
        cfg.resolve({'quantizers': {'overflow': 'SAT'}}, {}, {})


def test_input_sat_is_bit_exact(tmp_path_factory: pytest.TempPathFactory) -> None:
    require_tools()
    x = random_data((6,), 1500, 3)
    model = fit_randomized(mlp(), x, 3, act_f=(0, 3), weight_f=(0, 4))
    apply_activation_overflow(model, 'input-SAT')
    graph = ir.from_model(model)
    wide = np.random.default_rng(4).normal(size=(1500, 6)) * 4
    overflows = _overflows(graph, wide)
    assert overflows['SAT'] > 0 and overflows['WRAP'] > 0, overflows  # both modes act on the x4 inputs
    assert {n.attrs['overflow_mode'] for n in graph.nodes if n.op == 'quantize'} == {'SAT', 'WRAP'}
    counts = check_backends(model, x, tmp_path_factory.mktemp('input_sat'), name='input_sat')
    assert counts.pop('outputs') >= 2 * 1500 * 3
    assert counts == {k: 0 for k in counts}, counts


def test_wrap_policy_refuses_quantizers_that_learn_their_integer_bits() -> None:
    """trainable_i trains by clipping at the learned integer bits: a WRAP policy would change the function."""
    model = keras.Sequential([keras.Input((4,)), QDense(3, input_quantizer={'trainable_i': True}, name='learns_i')])
    with pytest.raises(ValueError, match=r'learns_i/.*trainable_i=True.*activation_overflow: SAT'):
        apply_activation_overflow(model, 'WRAP')
    modes = apply_activation_overflow(model, 'SAT')
    assert set(modes.values()) == {'SAT'}
