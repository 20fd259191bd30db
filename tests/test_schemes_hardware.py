"""LSQ activations and POST weights (√2 and power-of-two levels) through every backend, with `==`.

A small 16-32-5 MLP and a small CNN (QConv2D, QAveragePooling2D, QConv2D, QDense), each calibrated from 64
samples (the PTQ setting), exported to hls4ml and to RTL; Keras inference, hls4ml C-simulation and Verilator
must equal the emulator on 100,000 outputs per input scale (×1, and ×4 beyond the calibrated ranges). Each
model mixes √2 and power-of-two POST weights and signed and unsigned LSQ activations, so one compiled design
per model covers them all.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from exactness import check_backends, require_tools

from hgq import layers as L
from hgq.training import calibrate


def _calibrated_counts(model: keras.Model, data: np.ndarray, tmp_path: Path) -> dict[str, int]:
    model.compile(optimizer='adam', loss='mse')
    model.fit(data[:2048], np.zeros((2048, 5)), epochs=1, verbose=0)
    calibrate(model, data[:64])
    counts = check_backends(model, data, tmp_path)
    print(counts)
    return counts


def test_lsq_and_post_exact_on_every_backend(tmp_path: Path) -> None:
    require_tools()
    inp = keras.Input((16,))
    x = L.QDense(32, activation='relu', input_quantizer={'scheme': 'lsq', 'bits': 4},
                 kernel_quantizer={'scheme': 'post', 'bits': 4})(inp)
    x = L.QDense(5, input_quantizer={'scheme': 'lsq', 'bits': 3, 'signed': False},
                 kernel_quantizer={'scheme': 'post', 'bits': 3, 'base': 'pow2'})(x)
    model = keras.Model(inp, x)
    counts = _calibrated_counts(model, np.random.default_rng(0).normal(size=(20_000, 16)), tmp_path)
    assert counts['outputs'] == 200_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts


def test_lsq_and_post_cnn_exact_on_every_backend(tmp_path: Path) -> None:
    """Conv kernels (α per output filter), an LSQ average-pooling output and LSQ conv inputs, 6x6x1 → 5."""
    require_tools()
    inp = keras.Input((6, 6, 1))
    x = L.QConv2D(3, 3, activation='relu', input_quantizer={'scheme': 'lsq', 'bits': 4},
                  kernel_quantizer={'scheme': 'post', 'bits': 4})(inp)
    x = L.QAveragePooling2D(2, output_quantizer={'scheme': 'lsq', 'bits': 4, 'signed': False})(x)
    x = L.QConv2D(4, 2, activation='relu', input_quantizer={'scheme': 'lsq', 'bits': 3, 'signed': False},
                  kernel_quantizer={'scheme': 'post', 'bits': 3, 'base': 'pow2'})(x)
    x = L.QFlatten()(x)
    x = L.QDense(5, input_quantizer={'scheme': 'lsq', 'bits': 4, 'signed': False},
                 kernel_quantizer={'scheme': 'post', 'bits': 4, 'base': 'pow2'})(x)
    model = keras.Model(inp, x)
    counts = _calibrated_counts(model, np.random.default_rng(1).normal(size=(20_000, 6, 6, 1)), tmp_path)
    assert counts['outputs'] == 200_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
