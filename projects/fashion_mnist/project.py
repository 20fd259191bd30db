"""Fashion-MNIST: 28x28 grey images -> 10 classes, a small conv-pool-conv-pool-dense CNN.

Data: the real images from Debian's `dataset-fashion-mnist` package (IDX files, MIT licensed), read
with numpy; nothing is downloaded. Pixels are scaled to [0, 1) (x / 256: exact in fixed point).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from hgq.workflow import Dataset, split_arrays

CLASS_NAMES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot']
DATA = {'path': '/usr/share/datasets/fashion-mnist', 'val_fraction': 0.1, 'split_seed': 0, 'max_samples': 0}
MODEL = {'filters': [8, 16], 'kernel_size': 3, 'dense': 32}
INSTALL = 'apt-get install dataset-fashion-mnist'


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): magic 0x0000, dtype code 0x08 (uint8), ndim, big-endian dims."""
    opener = gzip.open if path.suffix == '.gz' else open
    with opener(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f'{path}: not an IDX file of unsigned bytes (header {raw[:4].hex()})')
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f'{path}: header says {dims}, the file holds {data.size} values')
    return data.reshape(dims)


def _file(folder: Path, stem: str) -> Path:
    for name in (f'{stem}.gz', stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f'Fashion-MNIST file {folder / (stem + ".gz")} does not exist; install the data with '
                            f'`{INSTALL}` (or set data.path to a folder with the four IDX files)')


def load_data(directory: Path, path: str, val_fraction: float, split_seed: int, max_samples: int) -> Dataset:
    """60k training images (split into train/val) and the 10k official test images."""
    folder = Path(path)
    x_train = read_idx(_file(folder, 'train-images-idx3-ubyte'))
    y_train = read_idx(_file(folder, 'train-labels-idx1-ubyte'))
    x_test = read_idx(_file(folder, 't10k-images-idx3-ubyte'))
    y_test = read_idx(_file(folder, 't10k-labels-idx1-ubyte'))
    if max_samples:
        x_train, y_train = x_train[:max_samples], y_train[:max_samples]
        x_test, y_test = x_test[:max(max_samples // 6, 1)], y_test[:max(max_samples // 6, 1)]
    x_train = (x_train[..., None] / 256.0).astype(np.float32)
    x_test = (x_test[..., None] / 256.0).astype(np.float32)
    xt, yt, xv, yv, _, _ = split_arrays(x_train, y_train.astype(np.int64), val_fraction, 0.0, split_seed)
    return Dataset(xt, yt, xv, yv, x_test, y_test.astype(np.int64), class_names=list(CLASS_NAMES),
                   source=f'Fashion-MNIST in {folder}').check()


def build_model(quantized: bool, filters: list[int], kernel_size: int, dense: int) -> Any:
    import keras

    from hgq import layers as q

    k = int(kernel_size)
    if quantized:
        body = [q.QConv2D(filters[0], k, activation='relu'), q.QMaxPooling2D(2),
                q.QConv2D(filters[1], k, activation='relu'), q.QMaxPooling2D(2), q.QFlatten(),
                q.QDense(dense, activation='relu'), q.QDense(10)]
    else:
        body = [keras.layers.Conv2D(filters[0], k, activation='relu'), keras.layers.MaxPooling2D(2),
                keras.layers.Conv2D(filters[1], k, activation='relu'), keras.layers.MaxPooling2D(2),
                keras.layers.Flatten(), keras.layers.Dense(dense, activation='relu'), keras.layers.Dense(10)]
    return keras.Sequential([keras.Input((28, 28, 1)), *body], name='fmnist_cnn' + ('_hgq' if quantized else '_float'))
