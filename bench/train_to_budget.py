"""Train to a LUT budget: how close the final checkpoint lands to the budget, in LUTs measured by Yosys.

For each budget, the jets MLP 16-64-32-32-5 is trained on the jets project's data (projects/jets, the
shipped Monte-Carlo set and its split; `--toy` uses hgq.data.toy.make_toy_jets instead) with
`BudgetController(budget, 'luts')` (no beta schedule; it steers on the fitted LUT cost `LUTEstimate`),
Adam 3e-3 with cosine decay to 1% (the project's recipe), batch 1024. The controller's final model
(`restore_best`: best val accuracy within budget, else the last epoch) is calibrated on the training set,
written as combinational RTL (`write_rtl`) and synthesized with Yosys (`synth_xilinx`, hgq.export.yosys
defaults). `--legacy` steers with the first controller (mode='proportional', the last epoch kept), for
comparison. A design Yosys cannot count (e.g. every output pruned to a constant) is reported with
`yosys_error` instead of LUTs.

    KERAS_BACKEND=jax nice -n 10 .venv/bin/python bench/train_to_budget.py [--budgets 1000 3000 8000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, format_table, machine_info, write_json


def load(toy: bool, n: int) -> tuple[Any, ...]:
    """(x, y) for train, val and test, and where they came from."""
    if toy:
        from hgq.data.toy import make_toy_jets

        x, y = make_toy_jets(n, seed=0)
        xv, yv = make_toy_jets(5000, seed=1)
        xt, yt = make_toy_jets(5000, seed=2)
        return x, y, xv, yv, xt, yt, f'make_toy_jets({n}) / (5000, seed=1) / (5000, seed=2)'
    from hgq.workflow import find_project

    project = find_project('jets')
    data = project.load_data(project.config())
    return (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test,
            f'{data.source}: {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test')


def run(budget: float, epochs: int, data: tuple[Any, ...], legacy: bool, work: Path) -> dict[str, Any]:
    import keras

    import hgq.ir as ir
    from hgq import layers as L
    from hgq.export.rtl import write_rtl
    from hgq.training import BudgetController, EBOPsLogger, ResetRanges, calibrate, exact_ebops
    from hgq.training.lut_cost import lut_estimate

    x, y, xv, yv, xt, yt, _ = data
    keras.utils.set_random_seed(1)
    inp = keras.Input((16,))
    h = L.QDense(64, activation='relu')(inp)
    h = L.QDense(32, activation='relu')(h)
    h = L.QDense(32, activation='relu')(h)
    model = keras.Model(inp, L.QDense(5)(h))
    batch = 1024
    steps = -(-len(x) // batch)
    lr = keras.optimizers.schedules.CosineDecay(3e-3, steps * epochs, alpha=0.01)
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    options = dict(mode='proportional', restore_best=False) if legacy else {}
    controller = BudgetController(budget, 'luts', beta_start=1e-6, **options)
    start = time.perf_counter()
    hist = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, validation_data=(xv, yv),
                     callbacks=[ResetRanges(), controller, EBOPsLogger()])
    train_s = time.perf_counter() - start
    kept = controller.best_epoch or epochs
    calibrate(model, x)
    predicted = lut_estimate(model)  # the kept model, after calibration (what is synthesized)
    test_acc = float(np.mean(np.argmax(model.predict(xt, batch_size=4096, verbose=0), -1) == yt))
    val_acc = float(np.mean(np.argmax(model.predict(xv, batch_size=4096, verbose=0), -1) == yv))
    start = time.perf_counter()
    prj = write_rtl(ir.from_model(model), work / f'b{int(budget)}', 'budget', latency_cutoff=-1)
    try:
        rep, error = prj.synthesize(longest_path=False), None
    except (RuntimeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        rep, error = {'LUT': None}, f'{type(e).__name__}: {e}'[:500]
    synth_s = time.perf_counter() - start
    return {'budget_luts': budget, 'epochs': epochs, 'controller': repr(controller), 'kept_epoch': kept,
            'final_beta': controller.history[kept - 1][0],
            'predicted_luts_at_kept_epoch': controller.history[kept - 1][1], 'predicted_luts': predicted,
            'exact_ebops': exact_ebops(model), 'yosys_luts': rep['LUT'], 'yosys_error': error,
            'ratio': None if rep['LUT'] is None else rep['LUT'] / budget,
            'da4ml_cost': float(prj.comb.cost), 'val_accuracy': val_acc, 'test_accuracy': test_acc,
            'val_accuracy_last_epoch': float(hist.history['val_accuracy'][-1]),
            'train_s': round(train_s, 1), 'synth_s': round(synth_s, 1),
            'beta_per_epoch': [b for b, _ in controller.history],
            'predicted_luts_per_epoch': [round(c, 1) for _, c in controller.history],
            'val_accuracy_per_epoch': [round(float(a), 4) for a in hist.history['val_accuracy']]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--budgets', nargs='+', type=float, default=[1000, 3000, 8000])
    parser.add_argument('--epochs', type=int, default=200)
    parser.add_argument('--toy', action='store_true', help='make_toy_jets data instead of projects/jets')
    parser.add_argument('--n', type=int, default=20_000, help='training samples with --toy')
    parser.add_argument('--legacy', action='store_true', help='the first, proportional-only controller')
    parser.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'train_to_budget.json'))
    args = parser.parse_args()
    data = load(args.toy, args.n)
    print(data[-1], flush=True)
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            r = run(budget, args.epochs, data, args.legacy, Path(tmp))
            results.append(r)
            luts = '-' if r['yosys_luts'] is None else f'{r["yosys_luts"]:,}'
            ratio = '-' if r['ratio'] is None else f'{r["ratio"]:.2f}'
            rows.append([f'{budget:,.0f}', r['kept_epoch'], f'{r["predicted_luts"]:,.0f}', luts, ratio,
                         f'{r["exact_ebops"]:,.0f}', f'{r["final_beta"]:.2e}', f'{r["val_accuracy"]:.3f}',
                         f'{r["test_accuracy"]:.3f}', r['train_s']])
            print(rows[-1], flush=True)
            write_json(Path(args.out), {'machine': machine_info(), 'command': 'bench/train_to_budget.py',
                                        'args': vars(args), 'data': data[-1], 'load_avg': os.getloadavg(),
                                        'results': results})
    print(format_table(['budget LUT', 'kept epoch', 'predicted LUT', 'Yosys LUT', 'Yosys/budget', 'EBOPs (exact)',
                        'beta', 'val acc', 'test acc', 'train s'], rows))


if __name__ == '__main__':
    main()
