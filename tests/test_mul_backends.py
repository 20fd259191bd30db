"""Variable × variable products (IR op `mul`, from keras.layers.Multiply) through every backend, with `==`.

The op that ASQ's per-sample step and an exact softmax build on: a product of two quantized tensors
of one sample. Keras inference, hls4ml C-simulation and Verilator must equal the emulator on every
output, in range and ×4 beyond the calibrated ranges (both quantizers then saturate).
"""

from __future__ import annotations

from pathlib import Path

import keras
from exactness import check_backends, require_tools
from models import fit_randomized, random_data

from hgq import ir
from hgq import layers as L


def test_product_of_two_quantized_tensors_is_exact_on_every_backend(tmp_path: Path) -> None:
    require_tools()
    inp = keras.Input((8,))
    a = L.QQuantize()(inp)
    b = L.QDense(8, activation='relu')(inp)
    b = L.QQuantize()(b)
    y = keras.layers.Multiply()([a, b])
    y = L.QDense(3)(y)
    model = keras.Model(inp, y)
    x = random_data((8,), 12_500, seed=3)
    fit_randomized(model, x[:2048], seed=3, act_f=(0, 4), weight_f=(0, 4))
    graph = ir.from_model(model)
    assert [n.op for n in graph.nodes].count('mul') == 1
    counts = check_backends(model, x, tmp_path)
    print(counts)
    assert counts['outputs'] == 2 * 12_500 * 3
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
