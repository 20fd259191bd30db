"""How often a test sample drives an activation outside its calibrated range, per place (input vs hidden).

For each design chosen at a level of a bench/front_vs_hgq2.py result (ours, every seed), the checkpoint is
calibrated as the bench does (first 20,000 training samples), put under the input-SAT policy
(hgq.layers.overflow) and run through the exact emulator on the test set. A quantize node overflows on a
sample when some live element's rounded value lies outside its format (what SAT would clamp and WRAP would
wrap). Reported per design: the fraction of test samples with an input-reading quantizer out of range (SAT
clips them), with a hidden one out of range (WRAP wraps them: a wrong value), and the test accuracies the
bench measured under SAT, WRAP and input-SAT for the same checkpoint.

    PYTHONPATH=$PWD .venv/bin/python bench/overflow_rate.py bench/results/front_vs_hgq2_defaults.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / 'bench' / 'results'


def overflowing_samples(graph: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """{quantize node name: bool per sample, True where a live element fell outside the node's format}."""
    from hgq.ir import run
    from hgq.ir.emulator import FixedTensor
    from hgq.ir.intmath import requantize
    from hgq.quantizers.fixed_point import quantize_np

    env = run(graph, x, return_all=True)
    out = {}
    for node in graph.nodes:
        if node.op != 'quantize':
            continue
        a = node.attrs
        fmt = a['fmt'].broadcast(node.shape)
        src = env[node.inputs[0]]
        if isinstance(src, FixedTensor):  # the same rounding with 40 more integer bits: never overflows
            wide = requantize(src.codes, src.f, np.ones_like(fmt.k), fmt.i + 40, fmt.f, a['round_mode'], 'SAT')
            wide = np.ldexp(wide.astype(np.float64), -fmt.f)
        else:
            wide = quantize_np(src, 1, fmt.i + 40, fmt.f, a['round_mode'], 'SAT')
        lo, hi = -fmt.k * 2.0 ** fmt.i, 2.0 ** fmt.i - 2.0 ** -fmt.f.astype(np.float64)
        live = (fmt.k + fmt.i + fmt.f) > 0
        bad = ((wide < lo) | (wide > hi)) & live
        out[node.name] = bad.reshape(len(x), -1).any(axis=1)
    return out


def measure(cache_file: Path, front: dict[str, Any]) -> dict[str, Any]:
    import keras

    from hgq import ir
    from hgq.layers.overflow import apply_activation_overflow
    from hgq.workflow.report import CALIBRATION_SAMPLES, load_calibrated

    d = json.loads(cache_file.read_text())
    split = np.load(cache_file.parent.parent / f'seed{d["seed"]}' / 'split.npz')
    model = load_calibrated(Path(d['point']['file']), split['x_train'][:CALIBRATION_SAMPLES])
    apply_activation_overflow(model, 'input-SAT')
    graph = ir.from_model(model)
    inputs = set(graph.inputs)
    x = split['x_test']
    flags = overflowing_samples(graph, x)
    reads_input = {n.name for n in graph.nodes if n.op == 'quantize' and n.inputs[0] in inputs}
    at_input = np.any([v for k, v in flags.items() if k in reads_input], axis=0)
    hidden = np.any([v for k, v in flags.items() if k not in reads_input], axis=0)
    acc = {v: p['test_accuracy'] for side, seeds in front.items() if side.startswith('ours')
           for ds in seeds for p in ds if p['seed'] == d['seed'] and p['epoch'] == d['epoch']
           for v in [p['variant']]}
    keras.backend.clear_session()
    return {'seed': d['seed'], 'epoch': d['epoch'], 'test_samples': len(x),
            'input_out_of_range': float(at_input.mean()), 'hidden_out_of_range': float(hidden.mean()),
            'hidden_nodes_out_of_range': {k: int(v.sum()) for k, v in flags.items()
                                          if k not in reads_input and v.any()},
            'test_accuracy': acc}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('front', type=Path, help='a bench/front_vs_hgq2.py JSON')
    p.add_argument('--side', default='ours_input_sat', help="the side whose chosen designs are measured")
    p.add_argument('--json', type=Path, default=RESULTS / 'overflow_rate.json')
    args = p.parse_args(argv)
    os.environ.setdefault('KERAS_BACKEND', 'jax')
    sys.path.insert(0, str(REPO))
    res = json.loads(args.front.read_text())
    rows, seen = [], {}
    for lv in res['levels']:
        for pick in lv[f'{args.side}_per_seed']:
            if pick is None:
                continue
            key = pick['cache_file']
            if key not in seen:
                seen[key] = measure(Path(key), res['fronts'])
            rows.append({'drop_points': lv['drop_points'], **seen[key]})
    print(f'{"level":>9} {"seed":>4} {"epoch":>5} {"inputs out":>10} {"hidden out":>10}  acc SAT / WRAP / input-SAT')
    for r in rows:
        a = r['test_accuracy']
        print(f'float-{r["drop_points"]:<3g} {r["seed"]:>4} {r["epoch"]:>5} {100 * r["input_out_of_range"]:>9.3f}% '
              f'{100 * r["hidden_out_of_range"]:>9.3f}%  {a.get("sat", float("nan")):.4f} / '
              f'{a.get("wrap", float("nan")):.4f} / {a.get("input-sat", float("nan")):.4f}')
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix('.tmp')
    tmp.write_text(json.dumps({'benchmark': 'overflow_rate', 'front': str(args.front), 'side': args.side,
                               'rows': rows}, indent=1))
    tmp.replace(args.json)
    print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
