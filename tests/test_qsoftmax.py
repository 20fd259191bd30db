"""QSoftmax: a softmax exact in hardware (max, exp table, sum, reciprocal table, product), with `==`."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from exactness import check_backends, require_tools
from models import fit_randomized, random_data

from hgq import ir
from hgq import layers as L


@pytest.mark.parametrize('classes', [5])
def test_qsoftmax_is_exact_on_every_backend(classes: int, tmp_path: Path) -> None:
    require_tools()
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    x = L.QDense(classes)(inp)
    y = L.QSoftmax(exp_quantizers=({'f_init': 3}, {'f_init': 6}), inverse_quantizers=({'f_init': 4}, {'f_init': 6}))(x)
    model = keras.Model(inp, y)
    data = random_data((8,), 10_000, seed=2)
    fit_randomized(model, data[:2048], seed=2, act_f=(2, 5), weight_f=(1, 4))
    graph = ir.from_model(model)
    assert [n.op for n in graph.nodes].count('table') == 2
    counts = check_backends(model, data, tmp_path)
    print(counts)
    assert counts['outputs'] == 2 * 10_000 * classes
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
    probs = model.predict(data, verbose=0)
    assert np.all(probs >= 0) and np.all(np.abs(probs.sum(axis=1) - 1) < 0.25)  # a (coarse) distribution


def test_qsoftmax_refuses_rank_above_one() -> None:
    with pytest.raises(ValueError, match='flatten first'):
        L.QSoftmax()(keras.Input((3, 4)))
