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
