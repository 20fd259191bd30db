"""Helpers shared by the export tests (and bench/rtl_cnn.py): random per-element formats, random data, a quick fit."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from hgq.quantizers.hgq_quantizer import HGQQuantizer


def randomize_formats(model: keras.Model, seed: int, act_f: tuple[int, int] = (-2, 6),
                      weight_f: tuple[int, int] = (0, 6)) -> None:
    """Random integer f per element: heterogeneous formats, some pruned weights and activations."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for q in vars(layer).values():
            if isinstance(q, HGQQuantizer) and q.built:
                lo, hi = weight_f if q.role == 'weight' else act_f
                q.f.assign(rng.integers(lo, hi + 1, size=q.f.shape).astype('float32'))


def random_data(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype('float32')


def fit_randomized(model: keras.Model, x: np.ndarray, seed: int, **randomize: Any) -> keras.Model:
    """One epoch on random targets, then random formats (`randomize_formats(**randomize)`), calibrated on `x`."""
    from hgq.training import calibrate

    y = np.random.default_rng(seed).normal(size=(len(x), *model.output_shape[1:])).astype('float32')
    model.compile(keras.optimizers.Adam(3e-3), 'mse')
    model.fit(x, y, epochs=1, batch_size=256, verbose=0)
    randomize_formats(model, seed, **randomize)
    calibrate(model, x)
    return model


def sequence_model() -> keras.Model:
    """A small (12, 3) sequence model: QQuantize (WRAP) then a layer's own input quantizer (two quantizers in a
    row), strided QConv1D, QDense on (steps, channels), relu with input and output quantizers, QMaxPooling1D,
    and a tanh table whose per-element output rounds RND_CONV (its entries are then kept exact)."""
    import hgq.layers as L

    x = keras.Input((12, 3))
    y = L.QQuantize({'overflow_mode': 'WRAP'})(x)
    y = L.QConv1D(4, 3, strides=2, activation='relu')(y)
    y = L.QDense(3)(y)
    y = L.QActivation('relu', input_quantizer={}, output_quantizer={})(y)
    y = L.QMaxPooling1D(2)(y)
    y = L.QFlatten()(y)
    y = L.QDense(4)(y)
    y = L.QActivation('tanh', output_quantizer={'round_mode': 'RND_CONV', 'overflow_mode': 'WRAP'})(y)
    y = L.QDense(3)(y)
    return keras.Model(x, y)


def small_checkpoint(directory: Any) -> tuple[Any, keras.Model]:
    """A calibrated 6-8-3 QDense model saved as directory/model.keras, its 256 training inputs as calib.npy.
    Layers are named (hidden, out): auto-names depend on which tests ran before in the process."""
    from pathlib import Path

    from hgq.layers import QDense
    from hgq.training import calibrate

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((6,)), QDense(8, activation='relu', name='hidden'), QDense(3, name='out')])
    x = rng.normal(size=(256, 6)).astype(np.float32)
    model.compile('adam', 'mse')
    model.fit(x, rng.normal(size=(256, 3)).astype(np.float32), epochs=1, verbose=0)
    calibrate(model, x)
    path = Path(directory) / 'model.keras'
    model.save(path)
    np.save(path.parent / 'calib.npy', x)
    return path, model
