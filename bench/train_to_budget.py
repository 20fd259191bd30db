"""Train to a LUT budget: how close the final checkpoint lands to the budget, in LUTs measured by Yosys.

For each budget, the jets MLP 16-64-32-32-5 (hgq.data.toy.make_toy_jets) is trained with
`BudgetController(budget, 'luts')` (no beta schedule), calibrated on the training set, written as
combinational RTL (`write_rtl`) and synthesized with Yosys (`synth_xilinx`, hgq.export.yosys defaults).

    KERAS_BACKEND=tensorflow nice -n 10 .venv/bin/python bench/train_to_budget.py [--budgets 1000 3000 8000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, format_table, machine_info, write_json


def run(budget: float, epochs: int, n: int, work: Path) -> dict[str, Any]:
    import keras

    import hgq.ir as ir
    from hgq import layers as L
    from hgq.data.toy import make_toy_jets
    from hgq.export.rtl import write_rtl
    from hgq.training import BudgetController, EBOPsLogger, ResetRanges, calibrate, exact_ebops

    keras.utils.set_random_seed(1)
    x, y = make_toy_jets(n, seed=0)
    xv, yv = make_toy_jets(5000, seed=1)
    inp = keras.Input((16,))
    h = L.QDense(64, activation='relu')(inp)
    h = L.QDense(32, activation='relu')(h)
    h = L.QDense(32, activation='relu')(h)
    model = keras.Model(inp, L.QDense(5)(h))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    controller = BudgetController(budget, 'luts', beta_start=1e-6)
    start = time.perf_counter()
    hist = model.fit(x, y, batch_size=1024, epochs=epochs, verbose=0, validation_data=(xv, yv),
                     callbacks=[ResetRanges(), controller, EBOPsLogger()])
    train_s = time.perf_counter() - start
    calibrate(model, x)
    prj = write_rtl(ir.from_model(model), work / f'b{int(budget)}', 'budget', latency_cutoff=-1)
    rep = prj.synthesize(longest_path=False)
    return {'budget_luts': budget, 'epochs': epochs, 'final_beta': controller.history[-1][0],
            'predicted_luts': controller.history[-1][1], 'exact_ebops': exact_ebops(model),
            'yosys_luts': rep['LUT'], 'ratio': rep['LUT'] / budget, 'da4ml_cost': float(prj.comb.cost),
            'val_accuracy': float(hist.history['val_accuracy'][-1]), 'train_s': round(train_s, 1),
            'beta_per_epoch': [b for b, _ in controller.history],
            'predicted_luts_per_epoch': [round(c, 1) for _, c in controller.history],
            'n_train': n, 'accuracy_on': 'make_toy_jets(5000, seed=1)'}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--budgets', nargs='+', type=float, default=[1000, 3000, 8000])
    parser.add_argument('--epochs', type=int, default=40)
    parser.add_argument('--n', type=int, default=20_000)
    parser.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'train_to_budget.json'))
    args = parser.parse_args()
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            r = run(budget, args.epochs, args.n, Path(tmp))
            results.append(r)
            rows.append([f'{budget:,.0f}', f'{r["predicted_luts"]:,.0f}', f'{r["yosys_luts"]:,}',
                         f'{r["ratio"]:.2f}', f'{r["exact_ebops"]:,.0f}', f'{r["final_beta"]:.2e}',
                         f'{r["val_accuracy"]:.3f}', r['train_s']])
            print(rows[-1], flush=True)
    print(format_table(['budget LUT', 'predicted LUT', 'Yosys LUT', 'Yosys/budget', 'EBOPs (exact)',
                        'final beta', 'val acc', 'train s'], rows))
    write_json(Path(args.out), {'machine': machine_info(), 'command': 'bench/train_to_budget.py', 'args': vars(args),
                                'results': results})


if __name__ == '__main__':
    main()
