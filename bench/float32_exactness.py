"""How often float32 Keras inference differs from the exact fixed-point result, against the analysis bound.

A 64→16 QDense with f fractional bits on inputs and weights; for each f: the partial-sum width
that hgq.ir.analysis bounds, whether from_model warns, and the measured mismatch rate against the
exact emulator. Usage: python bench/float32_exactness.py [--json bench/results/float32_exactness.json]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import keras
import numpy as np

from hgq import ir
from hgq.layers import QDense
from hgq.training import calibrate


def measure(f_bits: int, n: int = 20_000) -> dict:
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    fmt = {'f_init': f_bits}
    model = keras.Sequential([keras.Input((64,)), QDense(16, input_quantizer=fmt, kernel_quantizer=fmt)])
    x = (rng.normal(size=(n, 64)) * 2).astype(np.float32)
    model.build((None, 64))
    calibrate(model, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        graph = ir.from_model(model)
    got = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float64)
    ref = ir.predict(graph, x)
    bits = ir.analyze(graph)[graph.outputs[0]].partial_sum_bits
    return {'f': f_bits, 'bound_bits': bits, 'warned': any('float32' in str(w.message) for w in caught),
            'outputs': int(got.size), 'mismatches': int(np.sum(got != ref))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--json', default='bench/results/float32_exactness.json')
    args = parser.parse_args()
    rows = [measure(f) for f in (4, 6, 8, 10, 12, 14)]
    print(f'backend: {keras.backend.backend()}')
    print(f'{"f":>3} {"bound bits":>10} {"warned":>7} {"mismatches":>12} {"rate":>8}')
    for r in rows:
        print(f'{r["f"]:>3} {r["bound_bits"]:>10} {str(r["warned"]):>7} {r["mismatches"]:>12} '
              f'{r["mismatches"] / r["outputs"]:>8.2%}')
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({'backend': keras.backend.backend(), 'rows': rows}, indent=1))


if __name__ == '__main__':
    main()
