"""Where the LUTs of cheap jets designs go: per layer and per kind of logic, and what SAT costs over WRAP.

Designs: the jets project's 16-64-32-32-5 MLP (`hgq.layers.QDense`, our defaults: SAT activations), trained
on projects/jets for `--epochs` epochs at each constant `--betas` (larger beta: cheaper design), calibrated
on 20,000 training samples. Each design is measured twice with the SAME weights and formats:

- `sat`: as trained (our default, activations saturate at the calibrated range);
- `wrap`: every activation quantizer switched to WRAP after training (only the overflow logic differs).

Per design:
- the split comes from da4ml's op-level cost (its LUT estimate per traced operation). Each da4ml variable is
  assigned to the first IR node (in graph order) whose outputs depend on it, so a node's cost is the logic it
  adds. Kinds: `dense adders` (da4ml's shift-and-add constant-matrix solution: the products and their
  accumulation are one adder graph, da4ml does not separate them), `overflow/saturation` (the min/max/mux ops
  of SAT quantizers), `rounding/wrap` (the remaining ops of a quantize node), `relu`, `tables`;
- Yosys `synth_xilinx` LUTs of the combinational design (hgq.export.rtl: latency_cutoff=-1), for both modes:
  `sat - wrap` is the measured cost of saturation;
- test accuracy of the emulator (hgq.ir.predict) and the number of RTL (da4ml interpreter) outputs that
  differ from the emulator's (must be 0).

    KERAS_BACKEND=jax nice -n 10 .venv/bin/python bench/lut_breakdown.py --epochs 30 --betas 1e-4 3e-4 1e-3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault('KERAS_BACKEND', 'jax')

import numpy as np  # noqa: E402
from common import REPO, format_table, machine_info, write_json  # noqa: E402

RESULTS = REPO / 'bench' / 'results'
SAT_OPRS = {'min', 'max', 'msb_mux'}


def node_costs(graph: Any) -> dict[tuple[str, str], float]:
    """da4ml's cost per (layer, kind): each variable charged to the first node whose outputs depend on it
    (`hgq.report.charged_da4ml_variables`), then sorted into a kind by its node and operation."""
    from hgq.report import charged_da4ml_variables

    costs: dict[tuple[str, str], float] = defaultdict(float)
    for node, added, _ in charged_da4ml_variables(graph):
        for v in added:
            if node.op in ('dense', 'conv', 'affine'):
                kind = 'dense adders'
            elif node.op == 'table' or v.opr == 'lookup':
                kind = 'tables'
            elif node.op == 'relu' or v.opr == 'relu':
                kind = 'relu'
            elif v.opr in SAT_OPRS:
                kind = 'overflow/saturation'
            else:
                kind = 'rounding/wrap'
            costs[(node.source or node.name, kind)] += float(v.cost)
    return dict(costs)


def set_activation_overflow(model: Any, mode: str) -> None:
    from hgq.quantizers.hgq_quantizer import HGQQuantizer

    for layer in model.layers:
        for q in (layer.quantizers().values() if hasattr(layer, 'quantizers') else ()):
            if isinstance(q, HGQQuantizer) and q.role == 'activation':
                q.overflow_mode = mode


def measure(model: Any, data: Any, x_cal: np.ndarray, work: Path, name: str, synth: bool) -> dict[str, Any]:
    from hgq import ir
    from hgq.export.rtl import write_rtl
    from hgq.training import exact_ebops

    graph = ir.from_model(model)
    y_emul = ir.predict(graph, data.x_test)
    prj = write_rtl(graph, work / name, name, latency_cutoff=-1)
    y_rtl = np.asarray(prj.predict_comb(data.x_test, strict=False), dtype=np.float64)
    costs = node_costs(graph)
    row: dict[str, Any] = {
        'test_accuracy': float(np.mean(y_emul.argmax(1) == data.y_test)),
        'rtl_vs_emulator_mismatches': int(np.sum(y_rtl != y_emul)), 'outputs_compared': int(y_rtl.size),
        'ebops': float(exact_ebops(model)), 'da4ml_cost': float(prj.comb.cost),
        'split': [{'layer': k[0], 'kind': k[1], 'da4ml_cost': round(v, 1)} for k, v in sorted(costs.items())],
    }
    if synth:
        rep = prj.synthesize(work / name / 'synth')
        row.update(LUT=rep['LUT'], FF=rep['FF'], CARRY4=rep.get('CARRY4'), yosys_s=rep.get('yosys_seconds'))
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--betas', type=float, nargs='+', default=[1e-4, 3e-4, 1e-3])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-synth', action='store_true', help="da4ml's estimates only")
    parser.add_argument('--json', type=Path, default=RESULTS / 'lut_breakdown.json')
    args = parser.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import keras

    from hgq.training import ResetRanges, calibrate
    from hgq.workflow import find_project
    from hgq.workflow.report import CALIBRATION_SAMPLES

    project = find_project('jets')
    config = project.config()
    data = project.load_data(config)
    x_cal = data.x_train[:CALIBRATION_SAMPLES]
    designs = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='lut-breakdown-') as tmp:
        for beta in args.betas:
            keras.utils.set_random_seed(args.seed)
            from hgq.layers import QDense

            layers: list[Any] = [keras.Input((16,))]
            for n, units in enumerate((64, 32, 32, 5)):
                layers.append(QDense(units, activation=None if units == 5 else 'relu', beta=beta, name=f'dense{n}'))
            model = keras.Sequential(layers, name='jets')
            model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=['accuracy'],
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.fit(data.x_train, data.y_train, batch_size=1024, epochs=args.epochs, verbose=0,
                      callbacks=[ResetRanges()])
            calibrate(model, x_cal)
            entry: dict[str, Any] = {'beta': beta}
            for mode in ('SAT', 'WRAP'):
                set_activation_overflow(model, mode)
                entry[mode.lower()] = measure(model, data, x_cal, Path(tmp), f'b{len(designs)}_{mode.lower()}',
                                              not args.no_synth)
            designs.append(entry)
            s, w = entry['sat'], entry['wrap']
            print(f"beta {beta:g}: acc SAT {s['test_accuracy']:.4f} WRAP {w['test_accuracy']:.4f}, "
                  f"LUT SAT {s.get('LUT')} WRAP {w.get('LUT')}, mismatches {s['rtl_vs_emulator_mismatches']}/"
                  f"{w['rtl_vs_emulator_mismatches']}", flush=True)
            keras.backend.clear_session()

    for d in designs:
        s = d['sat']
        total = sum(r['da4ml_cost'] for r in s['split']) or 1.0
        rows = [[r['layer'], r['kind'], f"{r['da4ml_cost']:,.0f}", f"{100 * r['da4ml_cost'] / total:.1f}%"]
                for r in s['split']]
        print(f"\nbeta {d['beta']:g} (SAT, as trained): test acc {s['test_accuracy']:.4f}, EBOPs {s['ebops']:,.0f}, "
              f"da4ml cost {s['da4ml_cost']:,.0f}, Yosys LUT {s.get('LUT')} (WRAP: {d['wrap'].get('LUT')}, "
              f"acc {d['wrap']['test_accuracy']:.4f})")
        print(format_table(['layer', 'kind', 'da4ml cost', 'share'], rows))
        kinds: dict[str, float] = defaultdict(float)
        for r in s['split']:
            kinds[r['kind']] += r['da4ml_cost']
        d['sat']['by_kind'] = {k: round(v, 1) for k, v in kinds.items()}
    write_json(args.json, {'benchmark': 'lut_breakdown', 'command': ' '.join(['bench/lut_breakdown.py',
               *(sys.argv[1:] if argv is None else argv)]), 'machine': machine_info(), 'settings': vars(args) | {
               'json': str(args.json)}, 'total_s': round(time.perf_counter() - start, 1), 'designs': designs})
    print(f'\nwrote {args.json}')


if __name__ == '__main__':
    main()
