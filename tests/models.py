"""Helpers shared by the export tests: random per-element formats and random data."""

from __future__ import annotations

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
