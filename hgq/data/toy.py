"""A generated 16-feature, 5-class tabular problem shaped like jet tagging, for the demo and tests.

Not physics: each class is a mixture of two correlated Gaussians with overlapping means, so
that a 16-64-32-32-5 MLP reaches a high but not perfect accuracy and quantization visibly costs
accuracy. The real jets project (projects/jets) replaces it in benchmarks.
"""

from __future__ import annotations

import numpy as np

N_FEATURES = 16
N_CLASSES = 5


def make_toy_jets(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (x float32 of shape (n, 16), y int64 of shape (n,)); the same seed gives the same set."""
    if n < 1:
        raise ValueError(f'make_toy_jets: n={n} must be a positive number of samples')
    structure = np.random.default_rng(12345)  # the problem itself never changes with `seed`
    centers = structure.normal(0.0, 0.35, size=(N_CLASSES, 2, N_FEATURES))
    mixing = structure.normal(0.0, 0.15, size=(N_CLASSES, N_FEATURES, N_FEATURES)) + np.eye(N_FEATURES)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, size=n)
    mode = rng.integers(0, 2, size=n)
    noise = rng.normal(0.0, 1.0, size=(n, N_FEATURES))
    x = centers[y, mode] + np.einsum('nj,njk->nk', noise, mixing[y])
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), y.astype(np.int64)
