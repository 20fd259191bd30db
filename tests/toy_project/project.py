"""A tiny project for the workflow tests: the generated toy jets, a 16-8-5 MLP (trains in seconds)."""

from pathlib import Path

from hgq.data.toy import make_toy_jets
from hgq.workflow import Dataset, split_arrays

DATA = {'n': 4000, 'poison': ''}
MODEL = {'hidden': 8}


def load_data(directory: Path, n: int, poison: str) -> Dataset:
    x, y = make_toy_jets(n, seed=0)
    if poison == 'nan':
        x[17, 3] = float('nan')
    if poison == 'shape':
        x = x[:, :12]
    if poison == 'labels':
        y[5] = 7
    return Dataset(*split_arrays(x, y, 0.2, 0.2, 0), class_names=list('gqwzt'), source='toy data')


def build_model(quantized: bool, hidden: int):
    import keras

    from hgq.layers import QDense

    dense = QDense if quantized else keras.layers.Dense
    return keras.Sequential([keras.Input((16,)), dense(hidden, activation='relu'), dense(5)])
