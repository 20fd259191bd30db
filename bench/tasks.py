"""The benchmark tasks shared by bench/quantizers.py and bench/asq_arithmetic.py: data and float model.

A task's data and float architecture come from its project (projects/<name>/project.py), so every bench
trains on the same split as `hgq train`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
from common import REPO

__all__ = ['TASKS', 'Task', 'load_fmnist14', 'load_jets']


class Task:
    """One benchmark task: its data, its float model and how long that trains (every scheme starts from it)."""

    def __init__(self, name: str, title: str, float_epochs: int, load: Callable[[], Any],
                 build: Callable[[], Any]) -> None:
        self.name, self.title, self.float_epochs, self.load, self.build = name, title, float_epochs, load, build
        self._data: Any = None

    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = self.load()
        return self._data


def _project(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f'{name}_project', REPO / f'projects/{name}/project.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_jets() -> Any:
    """The jets project's data (60/20/20 split, seed 0, standardized)."""
    module = _project('jets')
    return module.load_data(REPO / 'projects/jets', **module.DATA)


def build_jets() -> Any:
    module = _project('jets')
    return module.build_model(False, **module.MODEL)


def load_fmnist14() -> Any:
    """Fashion-MNIST (projects/fashion_mnist: the real images, 54k/6k/10k) at 14x14: each 2x2 block averaged,
    which stays exact in fixed point (x/256 summed over four pixels, /4)."""
    from hgq.workflow import Dataset

    module = _project('fashion_mnist')
    d = module.load_data(REPO / 'projects/fashion_mnist', **module.DATA)

    def pool(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), 14, 2, 14, 2, 1).mean(axis=(2, 4)).astype(np.float32)

    return Dataset(pool(d.x_train), d.y_train, pool(d.x_val), d.y_val, pool(d.x_test), d.y_test,
                   class_names=d.class_names, source=f'{d.source}, 2x2-averaged to 14x14').check()


def build_fmnist14() -> Any:
    """Conv 4 -> pool -> conv 8 -> pool -> dense 16 -> 10 on 14x14: the CNN whose RTL Yosys can still take
    on 2 cores (the 28x28 one of projects/fashion_mnist is 0.8-2.7M LUTs unrolled, docs/benchmarks.md)."""
    import keras

    L = keras.layers
    return keras.Sequential([keras.Input((14, 14, 1)), L.Conv2D(4, 3, activation='relu'), L.MaxPooling2D(2),
                             L.Conv2D(8, 3, activation='relu'), L.MaxPooling2D(2), L.Flatten(),
                             L.Dense(16, activation='relu'), L.Dense(10)], name='fmnist14_cnn_float')


TASKS = {
    'jets': Task('jets', 'jets 16-64-32-32-5', 30, load_jets, build_jets),
    'fmnist14': Task('fmnist14', 'Fashion-MNIST 14x14 CNN c4-c8-d16-10', 40, load_fmnist14, build_fmnist14),
}
