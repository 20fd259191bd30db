"""μ-law companding in weight and activation slots through every backend, with `==`.

A jets-sized MLP (16 inputs) and a small CNN (a strided QConv2D on 8x8x1 -> QDense), each trained one short epoch
(QAT: α and μ move, one μ shared per layer and tensor kind by TieMu) and calibrated on 64 samples, then
exported to hls4ml and to RTL: Keras inference, hls4ml C-simulation and Verilator must equal the
emulator on 100,000 outputs per input scale (×1, and ×4 beyond the calibrated ranges).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from exactness import check_backends, require_tools

from hgq import layers as L
from hgq.quantizers.schemes.mulaw import TieMu
from hgq.training import calibrate


def mulaw(bits: int = 4, **kw: object) -> dict:
    return {'scheme': 'mulaw', 'bits': bits, **kw}


def jets_mlp() -> keras.Model:
    inp = keras.Input((16,))
    x = L.QDense(16, activation='relu', input_quantizer=mulaw(5), kernel_quantizer=mulaw(4),
                 bias_quantizer=mulaw(5, mu=20.0))(inp)
    x = L.QDense(5, input_quantizer=mulaw(3, signed=False, mu=10.0), kernel_quantizer=mulaw(3, mu=50.0))(x)
    return keras.Model(inp, x)


def small_cnn() -> keras.Model:
    inp = keras.Input((8, 8, 1))
    f6 = {'level_frac_bits': 6}  # narrow words: a small RTL design that Verilator compiles quickly
    x = L.QConv2D(2, 3, strides=2, activation='relu', input_quantizer=mulaw(4, **f6),
                  kernel_quantizer=mulaw(4, **f6))(inp)
    x = L.QFlatten()(x)
    x = L.QDense(10, input_quantizer=mulaw(3, signed=False, mu=20.0, **f6), kernel_quantizer=mulaw(3, **f6))(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize('build,shape,n', [(jets_mlp, (16,), 20_000), (small_cnn, (8, 8, 1), 10_000)],
                         ids=['mlp', 'cnn'])
def test_mulaw_exact_on_every_backend(build, shape, n, tmp_path: Path) -> None:
    require_tools()
    model = build()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *shape))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss='mse')
    model.fit(x[:512], rng.normal(size=(512, *model.output_shape[1:])), epochs=1, batch_size=64, verbose=0,
              callbacks=[TieMu()])
    calibrate(model, x[:64])
    counts = check_backends(model, x, tmp_path)
    print(counts)
    assert counts['outputs'] == 2 * n * model.output_shape[-1] >= 200_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
