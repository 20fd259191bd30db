"""Jet tagging: 16 high-level jet features -> 5 classes (g, q, W, Z, t), the classic 16-64-32-32-5 MLP.

Data: our own Monte-Carlo set shipped in data/ (projects/jets/README.md says how it was made and how
to regenerate it with generate.py). Features are standardized with the training split's statistics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hgq.workflow import Dataset, split_arrays, standardize

DATA = {'path': 'data/jets_100k.npz', 'val_fraction': 0.2, 'test_fraction': 0.2, 'split_seed': 0,
        'max_samples': 0}
MODEL = {'hidden': [64, 32, 32], 'trainable_i': False}


def load_data(directory: Path, path: str, val_fraction: float, test_fraction: float, split_seed: int,
              max_samples: int) -> Dataset:
    """The shipped (or a regenerated) jets file, split and standardized; max_samples > 0 keeps a prefix."""
    file = Path(path) if Path(path).is_absolute() else directory / path
    if not file.is_file():
        raise FileNotFoundError(f'jets data {file} does not exist; generate it with '
                                f'python projects/jets/generate.py --out {file} (needs pip install "hgq[jets]")')
    with np.load(file) as npz:
        missing = {'x', 'y', 'class_names'} - set(npz.files)
        if missing:
            raise ValueError(f'{file}: not a jets file, it lacks {sorted(missing)}')
        x, y = npz['x'].astype(np.float32), npz['y'].astype(np.int64)
        class_names = [str(c) for c in npz['class_names']]
        settings = json.loads(str(npz['settings'])) if 'settings' in npz.files else {}
    if max_samples:
        x, y = x[:max_samples], y[:max_samples]
    data = Dataset(*split_arrays(x, y, val_fraction, test_fraction, split_seed), class_names=class_names,
                   source=f'jets data {file.name} (seed {settings.get("seed", "?")})')
    data.check()  # NaN/Inf before standardizing: the statistics would hide where they came from
    return standardize(data)


def build_model(quantized: bool, hidden: list[int], trainable_i: bool = False) -> Any:
    """trainable_i: every layer's input quantizer also learns its integer bits (docs/quantization.md)."""
    import functools

    import keras

    from hgq.layers import QDense

    dense = keras.layers.Dense
    if quantized:
        dense = functools.partial(QDense, input_quantizer={'trainable_i': True}) if trainable_i else QDense
    layers = [keras.Input((16,))] + [dense(int(n), activation='relu') for n in hidden] + [dense(5)]
    return keras.Sequential(layers, name='jets_mlp' + ('_hgq' if quantized else '_float'))
