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


def _chained() -> keras.Model:
    """ASQ in three consecutive layers: each product with β feeds the next slot's input and adapter."""
    inp = keras.Input((16,))
    h = L.QDense(16, activation='relu')(inp)
    for _ in range(2):
        h = L.QDense(16, activation='relu', input_quantizer={'scheme': 'asq', 'bits': 3})(h)
    out = L.QDense(5, input_quantizer={'scheme': 'asq', 'bits': 3})(h)
    return keras.Model(inp, out)


def test_chained_asq_slots_are_exact_on_every_backend(tmp_path: Path) -> None:
    """Before the operands of a variable product were put in da4ml frame 1, three slots in a row made
    intermediates of ~75 bits and Verilator differed from the emulator on 180 of 20,000 outputs."""
    require_tools()
    from hgq.export.rtl import MAX_OP_BITS, _op_bits, trace_da4ml

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(10_000, 16)).astype('float32')
    model = _trained(_chained(), x)
    assert max(_op_bits(op.qint) for op in trace_da4ml(ir.from_model(model)).ops) <= MAX_OP_BITS
    counts = check_backends(model, x, tmp_path)
    print(counts)
    assert counts['outputs'] >= 100_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts


def test_rtl_refuses_intermediates_beyond_da4ml_width() -> None:
    """The guard stays: a design with an op wider than 64 bits is refused, naming the cause."""
    from types import SimpleNamespace

    from hgq.export.rtl import _check_op_widths

    narrow = SimpleNamespace(qint=SimpleNamespace(min=0.0, max=255.0, step=1.0))
    wide = SimpleNamespace(qint=SimpleNamespace(min=0.0, max=2.0**70, step=1.0))
    _check_op_widths(SimpleNamespace(ops=[narrow]))
    with pytest.raises(NotImplementedError, match=r'intermediate of 70 bits, beyond the 64 bits'):
        _check_op_widths(SimpleNamespace(ops=[narrow, wide]))


def test_asq_codes_leave_in_da4ml_frame_one(monkeypatch) -> None:
    """The output-scaling rewrite (`factor_sample_scale`) feeds ASQ codes to a dense layer before any product
    with β; codes still in their input's power-of-two frame made the product with β inexact on the jets MLP
    with POST weights (1,400 of 200,000 outputs, bench/asq_arithmetic.py). The codes must leave in frame 1."""
    from da4ml.trace import FixedVariable

    from hgq.export import rtl_trace
    from hgq.ir.rewrite import factor_sample_scale

    frames: list[float] = []
    encode = rtl_trace.OPS['scaled_encode']

    def recorded(node, args):
        y = encode(node, args)
        frames.extend(abs(v._factor) for v in np.ravel(rtl_trace._raw(y)) if isinstance(v, FixedVariable))
        return y

    monkeypatch.setitem(rtl_trace.OPS, 'scaled_encode', recorded)
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(2048, 16)).astype('float32')
    rtl_trace.trace(factor_sample_scale(ir.from_model(_trained(_chained(), x))))
    assert len(frames) == 3 * 16 and set(frames) == {1.0}, sorted(set(frames))
