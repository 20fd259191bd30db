"""The arrays a project hands to `hgq train`, checked once, with errors that say what is wrong where.

Bad data must never train silently: a NaN feature poisons every weight, a label out of range is
an index error deep inside a loss. `Dataset.check` catches both (and shape mismatches) up front.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ('train', 'val', 'test')


@dataclass
class Dataset:
    """Train/validation/test arrays of a classification project; y holds integer class labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)
    source: str = ''

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise ValueError(f'unknown split {name!r}; valid: {", ".join(SPLITS)}')
        return getattr(self, f'x_{name}'), getattr(self, f'y_{name}')

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.y_train.max()) + 1

    def check(self, input_shape: tuple[int | None, ...] | None = None) -> Dataset:
        """Raise ValueError naming the split and the problem (NaN/Inf, shapes, labels); return self."""
        shape = None
        for name in SPLITS:
            x, y = self.split(name)
            where = f'{self.source or "data"}: x_{name}'
            if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.number):
                raise ValueError(f'{where} must be a numeric numpy array, got {type(x).__name__}')
            if len(x) == 0:
                raise ValueError(f'{where} is empty')
            if len(x) != len(y):
                raise ValueError(f'{where} has {len(x)} samples but y_{name} has {len(y)}')
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            if bad:
                rows = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
                raise ValueError(f'{where} has {bad} NaN/Inf values (first in sample {int(rows[0])}); clean or '
                                 'drop them before training: fixed-point hardware has no NaN')
            if shape is None:
                shape = x.shape[1:]
            elif x.shape[1:] != shape:
                raise ValueError(f'{where} has samples of shape {x.shape[1:]}, x_train has {shape}')
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f'{self.source or "data"}: y_{name} must be a 1-D array of integer class labels, '
                                 f'got dtype {y.dtype} and shape {y.shape}')
            if y.min() < 0 or (self.class_names and y.max() >= len(self.class_names)):
                raise ValueError(f'{self.source or "data"}: y_{name} has labels in [{y.min()}, {y.max()}]; valid: '
                                 f'0..{len(self.class_names) - 1} ({", ".join(self.class_names)})')
        if input_shape is not None:
            expected = tuple(input_shape)
            if len(expected) != len(shape) or any(e is not None and e != s for e, s in zip(expected, shape)):
                raise ValueError(f'{self.source or "data"}: samples have shape {shape}, the model takes '
                                 f'{expected}')
        return self


def split_arrays(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float,
                 seed: int) -> tuple[np.ndarray, ...]:
    """A seeded random split into (x_train, y_train, x_val, y_val, x_test, y_test); test may be empty."""
    for name, frac, low in (('val_fraction', val_fraction, 0.0), ('test_fraction', test_fraction, -1.0)):
        if not low < frac < 1 or frac < 0:
            raise ValueError(f'{name} = {frac}: expected a fraction in {"(0" if low == 0 else "[0"}, 1)')
    if val_fraction + test_fraction >= 1:
        raise ValueError(f'val_fraction + test_fraction = {val_fraction + test_fraction}: must leave training data')
    order = np.random.default_rng(seed).permutation(len(x))
    n_val, n_test = int(round(len(x) * val_fraction)), int(round(len(x) * test_fraction))
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    return x[train], y[train], x[val], y[val], x[test], y[test]


def standardize(dataset: Dataset) -> Dataset:
    """Scale every feature by the training set's mean and standard deviation (in place; float32)."""
    mean = dataset.x_train.mean(axis=0)
    std = dataset.x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    for name in SPLITS:
        x, _ = dataset.split(name)
        setattr(dataset, f'x_{name}', ((x - mean) / std).astype(np.float32))
    return dataset
