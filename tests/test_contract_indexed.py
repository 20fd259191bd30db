"""The contract: a quantizer written only against the protocol (tests/codebook.py, a 3-level codebook)
goes Keras → IR → emulator → hls4ml C-sim → Verilator, and every stage equals the emulator with `==`.

It covers both RTL forms of encode→decode (one ROM for a 7-bit cast; threshold comparisons for a
10-bit one), per-tensor and per-channel level sets, every slot kind (a layer's input quantizer, its
kernel quantizer, a QQuantize, a QActivation table's output, an average pool's output), and inputs
×4 beyond the calibrated range. Once this passes, a new scheme needs no edit below the layers.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from codebook import CodebookQuantizer
from exactness import check_backends, require_tools

import hgq.ir as ir
from hgq import layers as L
from hgq.quantizers import IndexedFormat, indexed_format
from hgq.quantizers.fixed_point import FixedFormat
from hgq.training import calibrate

N = 25_000  # samples per scale; 5 outputs each: 125,000 outputs per scale


def codebook_mlp() -> keras.Model:
    inp = keras.Input((8,))
    x = L.QDense(12, activation='relu', input_quantizer=CodebookQuantizer(),
                 kernel_quantizer=CodebookQuantizer(role='weight', scale=0.25, per_channel=True))(inp)
    x = L.QQuantize(quantizer=CodebookQuantizer(scale=2.0, wide=True, per_channel=True))(x)
    x = L.QDense(6)(x)
    x = L.QActivation('tanh', input_quantizer={'f_init': 3}, output_quantizer=CodebookQuantizer(scale=0.5))(x)
    x = L.QDense(5, input_quantizer=CodebookQuantizer(wide=True))(x)
    return keras.Model(inp, x)


def codebook_cnn() -> keras.Model:
    inp = keras.Input((6, 6, 2))
    x = L.QConv2D(4, 3, activation='relu', input_quantizer=CodebookQuantizer(per_channel=True),
                  kernel_quantizer=CodebookQuantizer(role='weight', scale=0.5))(inp)
    x = L.QAveragePooling2D(2, output_quantizer=CodebookQuantizer(scale=0.5, per_channel=True))(x)
    x = keras.layers.Flatten()(x)
    x = L.QDense(5)(x)
    return keras.Model(inp, x)


@pytest.fixture(scope='module')
def data() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N, 8)) * 1.5


def _calibrated(model: keras.Model, x: np.ndarray) -> keras.Model:
    model.compile(optimizer='adam', loss='mse')
    model.fit(x[:2048], np.zeros((2048, 5)), epochs=1, verbose=0)
    calibrate(model, x[:4096])
    return model


def test_codebook_lowers_to_cast_encode_decode(data: np.ndarray) -> None:
    model = _calibrated(codebook_mlp(), data)
    graph = ir.from_model(model)
    ops = [n.op for n in graph.nodes]
    assert ops.count('encode') == ops.count('decode') == 4  # 4 activation slots; the kernel is a constant
    kernel = model.layers[1].kernel_quantizer.describe(np.asarray(model.layers[1].kernel))
    levels = np.unique(graph.nodes[4].attrs['weight'])
    assert set(levels) <= set(np.unique(kernel.levels))  # weights are decoded levels, per output channel


def test_codebook_mlp_exact_on_every_backend(data: np.ndarray, tmp_path: Path) -> None:
    require_tools()
    model = _calibrated(codebook_mlp(), data)
    counts = check_backends(model, data, tmp_path)
    print(counts)
    assert counts['outputs'] >= 2 * 100_000
    assert {k: v for k, v in counts.items() if k != 'outputs'} == {
        f'{b} x{s}': 0 for s in (1, 4) for b in ('keras', 'hls4ml', 'verilator')}


def test_codebook_cnn_exact_on_every_backend(tmp_path: Path) -> None:
    require_tools()
    x = np.random.default_rng(1).normal(size=(N, 6, 6, 2))
    model = _calibrated(codebook_cnn(), x)
    counts = check_backends(model, x, tmp_path)
    print(counts)
    assert counts['outputs'] >= 2 * 100_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts


def test_emulator_encode_uses_the_stated_thresholds_not_midpoints() -> None:
    one = np.ones((), dtype=np.int64)
    desc = indexed_format(FixedFormat(one, one * 3, one * 3, 'RND', 'SAT'), [-0.5, 0.125], [-0.75, 0.0, 0.5], 2)
    x = np.array([-0.625, -0.5, -0.375, 0.0, 0.125, 0.2, 0.3])
    # nearest-level rounding would give -0.75 at -0.375 and 0.0 at 0.125 and 0.2
    assert desc.quantize(x).tolist() == [-0.75, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    assert desc.encode(x).tolist() == [0, 1, 1, 1, 2, 2, 2]
    assert isinstance(desc, IndexedFormat)


@pytest.mark.parametrize('thresholds, levels, bits, message', [
    ([0.0, 1.0, 2.0], [0, 1, 2, 3, 4], 2, 'do not fit a 2-bit index'),
    ([1.0, 0.0], [0, 1, 2], 2, 'ascending'),
    ([0.0], [0.0, 0.1], 1, 'exact fixed-point'),
    ([0.0], [0.0, 1.0, 2.0], 2, 'do not match'),
])
def test_bad_indexed_descriptions_name_the_owner(thresholds: list, levels: list, bits: int, message: str) -> None:
    one = np.ones((), dtype=np.int64)
    with pytest.raises(ValueError, match=message) as err:
        indexed_format(FixedFormat(one, one * 3, one * 3, 'RND', 'SAT'), thresholds, levels, bits, owner='my_q')
    assert 'my_q' in str(err.value)
