"""ASQ (per-sample step s·β(x)) through every backend, with `==`: MLP and CNN, in range and ×4 beyond.

The adapter, its β cast, the comparisons with per-sample thresholds (IR op `scaled_encode`) and the
product with β (IR op `mul`) must give the same numbers in Keras inference, the emulator, hls4ml
C-simulation and Verilator.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from exactness import check_backends, require_tools

from hgq import ir
from hgq import layers as L
from hgq.training import calibrate


def _trained(model: keras.Model, x: np.ndarray) -> keras.Model:
    y = np.random.default_rng(1).normal(size=(len(x), *model.output_shape[1:]))
    model.compile(keras.optimizers.Adam(3e-3), 'mse')
    model.fit(x[:2048], y[:2048], epochs=2, batch_size=256, verbose=0)
    calibrate(model, x[:64])  # the PTQ setting: 64 samples
    return model


def _mlp() -> keras.Model:
    inp = keras.Input((16,))
    x = L.QDense(16, activation='relu')(inp)
    x = L.QDense(5, input_quantizer={'scheme': 'asq', 'bits': 3})(x)
    return keras.Model(inp, x)


def _cnn() -> keras.Model:
    inp = keras.Input((6, 6, 1))
    x = L.QConv2D(4, 3, activation='relu')(inp)
    x = L.QConv2D(3, 3, input_quantizer={'scheme': 'asq', 'bits': 2})(x)
    x = L.QFlatten()(x)
    x = L.QDense(2)(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize(('build', 'shape', 'n'), [(_mlp, (16,), 10_000), (_cnn, (6, 6, 1), 25_000)])
def test_asq_is_exact_on_every_backend(build, shape, n, tmp_path: Path) -> None:
    require_tools()
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(n, *shape)).astype('float32')
    model = _trained(build(), x)
    graph = ir.from_model(model)
    assert {'scaled_encode', 'mul'} <= {node.op for node in graph.nodes}
    counts = check_backends(model, x, tmp_path)
    print(counts)
    assert counts['outputs'] >= 100_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts


def test_asq_refuses_weight_slots_and_bad_bits() -> None:
    with pytest.raises(ValueError, match='activations only'):
        L.QDense(3, kernel_quantizer={'scheme': 'asq'})
    with pytest.raises(ValueError, match=r'bits=9 must be an integer in \[1, 8\]'):
        L.QDense(3, input_quantizer={'scheme': 'asq', 'bits': 9})


def test_rtl_refuses_chained_asq_slots_beyond_da4ml_width(tmp_path: Path) -> None:
    """Three ASQ slots in a row make da4ml intermediates of ~75 bits, where its Verilog differed from the emulator
    (180 of 20,000 outputs): the RTL backend must refuse, naming the cause, instead of a silent wrong design."""
    pytest.importorskip('da4ml')
    from hgq.export.rtl import write_rtl

    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    h = L.QDense(16, activation='relu')(inp)
    for _ in range(2):
        h = L.QDense(16, activation='relu', input_quantizer={'scheme': 'asq', 'bits': 3})(h)
    out = L.QDense(5, input_quantizer={'scheme': 'asq', 'bits': 3})(h)
    x = np.random.default_rng(0).normal(size=(4000, 16)).astype('float32')
    model = _trained(keras.Model(inp, out), x)
    with pytest.raises(NotImplementedError, match=r'intermediate of \d+ bits, beyond the 64 bits'):
        write_rtl(ir.from_model(model), tmp_path / 'rtl')
