"""LSQ activations and POST weights (√2 and power-of-two levels) through every backend, with `==`.

One small 16-32-5 model, calibrated from 64 samples (the PTQ setting), exported to hls4ml and to RTL;
Keras inference, hls4ml C-simulation and Verilator must equal the emulator on 100,000 outputs per input
scale (×1, and ×4 beyond the calibrated ranges).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from exactness import check_backends, require_tools

from hgq import layers as L
from hgq.training import calibrate


def test_lsq_and_post_exact_on_every_backend(tmp_path: Path) -> None:
    require_tools()
    inp = keras.Input((16,))
    x = L.QDense(32, activation='relu', input_quantizer={'scheme': 'lsq', 'bits': 4},
                 kernel_quantizer={'scheme': 'post', 'bits': 4})(inp)
    x = L.QDense(5, input_quantizer={'scheme': 'lsq', 'bits': 3, 'signed': False},
                 kernel_quantizer={'scheme': 'post', 'bits': 3, 'base': 'pow2'})(x)
    model = keras.Model(inp, x)
    data = np.random.default_rng(0).normal(size=(20_000, 16))
    model.compile(optimizer='adam', loss='mse')
    model.fit(data[:2048], np.zeros((2048, 5)), epochs=1, verbose=0)
    calibrate(model, data[:64])
    counts = check_backends(model, data, tmp_path)
    print(counts)
    assert counts['outputs'] == 200_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
