"""Accuracy-vs-Yosys-LUT fronts of ours and HGQ2 over several seeds, and the LUTs each needs at fixed accuracy drops.

The recipe is the same for both sides (issue 15): projects/jets, 16-64-32-32-5 MLP, Adam 3e-3 with cosine
decay, batch 1024, `--epochs`, beta from `--beta-start` on a log ramp to `--beta-end` set per epoch, each
library's default quantizers, Pareto checkpoints on (val accuracy max, EBOPs min), the front taken on test
accuracy. Training reuses bench/pareto_vs_hgq2.py (ours: `hgq.workflow.train` + `evaluate_front`; HGQ2:
bench/peers/hgq2_pareto.py in its own venv, which also runs HGQ2's RTL flow up to da4ml's CombLogic).

Hardware, per checkpoint (cached in WORKDIR/cache by checkpoint content and variant):
- ours: calibrated on 20,000 training samples -> `hgq.ir.from_model` -> `write_rtl(latency_cutoff=-1)`;
  accuracy of the exact emulator on the test set, and the RTL's logic (da4ml's C++ interpreter) must equal the
  emulator on every test output;
- HGQ2: its `trace_minmax` -> `da4ml.converter.trace_model` -> `comb_trace`, written here by da4ml's `RTLModel`
  (combinational); the interpreter must equal HGQ2's Keras model on every test output;
- `--ours-variants`: the activation overflow policy (hgq.layers.overflow) applied after training: `sat` (every
  activation clamps), `wrap` (every one wraps), `input-sat` (the quantizers reading the input clamp, hidden ones
  wrap). The overflow mode acts only at inference, so the trained weights and formats are the same; with
  `--ours-cost luts` the LUT cost counts saturation, so training uses `--ours-train-overflow`'s policy.

Only checkpoints that can matter are synthesized (Yosys `synth_xilinx`, counts only): per accuracy level, those
reaching it whose da4ml cost is within `--slack` of the cheapest reaching it. The LUTs at a level are the fewest
Yosys LUTs among a seed's synthesized checkpoints reaching it; `ratio` = median over our seeds / median over
HGQ2's. Each level's chosen design is then simulated with Verilator (`--verilator`): ours as `hgq synth` checks
(random inputs over twice the range + calibration inputs vs the exact emulator), HGQ2's on the test inputs vs
da4ml's interpreter (itself equal to HGQ2's Keras model).

    KERAS_BACKEND=jax nice -n 10 .venv/bin/python bench/front_vs_hgq2.py --seeds 0 1 2 --epochs 600
    .venv/bin/python bench/front_vs_hgq2.py --seeds 0 --epochs 20 --toy 20000 --json /tmp/f.json --png /tmp/f.png
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import hashlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import PEER_PYTHON, REPO, format_table, machine_info, pip_version, write_json

RESULTS = REPO / 'bench' / 'results'
DROP_POINTS = (1, 2, 3, 5, 7, 10, 15)  # accuracy levels: float test accuracy minus these (percentage points)
TARGET_RATIO = 0.8
ROLE_NAMES = {'ours': 'ours', 'hgq2': 'HGQ2'}
_print_lock = threading.Lock()
#: what the levels and the plot count: Yosys LUTs, or da4ml's estimate with --synth none (a quick look only)
COST = {'key': 'LUT'}


def say(*parts: Any) -> None:
    with _print_lock:
        print(*parts, flush=True)


# --ours-variants: the activation overflow policy (hgq.layers.overflow) each variant applies after training
POLICY = {'sat': 'SAT', 'wrap': 'WRAP', 'input-sat': 'input-SAT'}


def side_name(variant: str) -> str:
    return 'ours' if variant == 'sat' else f'ours_{variant.replace("-", "_")}'


def file_key(path: str | Path, variant: str) -> str:
    h = hashlib.sha256(Path(path).read_bytes())
    h.update(variant.encode())
    return h.hexdigest()[:20]


# ---------------------------------------------------------------------------------------------- training
def thin(points: list[dict[str, Any]], ratio: float, min_val: float, max_val: float = 1.0) -> list[dict[str, Any]]:
    """Pareto checkpoints, most accurate first: each kept one has at most `ratio` x the training EBOPs of the last
    one kept (the same rule as the HGQ2 worker's --thin), none with val accuracy below `min_val`, and of those above
    `max_val` only the cheapest (more accuracy than the top level costs more and is not asked for)."""
    kept: list[dict[str, Any]] = []
    for p in sorted(points, key=lambda p: -p['ebops']):
        if p['val_accuracy'] >= min_val and (not kept or p['ebops'] <= ratio * kept[-1]['ebops']):
            kept.append(p)
    above = [p for p in kept if p['val_accuracy'] > max_val]
    return above[-1:] + [p for p in kept if p['val_accuracy'] <= max_val]


def train_seed(args: argparse.Namespace, seed: int, work: Path, cache: Path,
               float_val: float | None) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Train one seed on both sides (HGQ2's process beside ours); (ours' run facts, HGQ2's result, our designs).
    A finished side is read back from WORKDIR (ours: `hgq.workflow.train` resumes or returns its index)."""
    import pareto_vs_hgq2 as pvh

    from hgq.workflow import train
    from hgq.workflow.report import CALIBRATION_SAMPLES, read_history

    work.mkdir(parents=True, exist_ok=True)
    hgq2_file = (work if args.hgq2_root is None else args.hgq2_root / work.name) / 'hgq2_front.json'
    ns = argparse.Namespace(**vars(args))
    ns.seed = seed
    if float_val is not None:  # one float baseline (the first seed's) is the reference of every seed
        ns.float_epochs = 0
    project, config, data = pvh.load_split(ns)
    config['training']['cost'] = args.ours_cost
    config['quantizers']['activation_overflow'] = args.ours_train_overflow  # only the LUT cost reads it
    if args.ours_beta_scale != 1:  # a candidate: our beta ramp only (HGQ2's stays the recipe's)
        beta = config['training']['beta']
        beta['start'], beta['end'] = beta['start'] * args.ours_beta_scale, beta['end'] * args.ours_beta_scale
    if args.ours_trainable_i:  # a candidate: our activations learn their integer bits (projects/jets model key)
        config['model']['trainable_i'] = True
    ns.batch_size = int(config['training']['batch_size'])
    ns.lr = float(config['training']['optimizer']['learning_rate'])
    split = work / 'split.npz'
    if not split.exists():
        np.savez(split, **{k: getattr(data, k) for k in pvh.SPLIT_KEYS})

    def hgq2_side() -> dict[str, Any]:
        if hgq2_file.exists():
            return json.loads(hgq2_file.read_text())
        if args.hgq2_root is not None:  # another run of the same recipe may still be training it: wait for it
            deadline = time.monotonic() + args.hgq2_wait * 60
            while not hgq2_file.exists():
                if time.monotonic() > deadline:
                    raise FileNotFoundError(f'--hgq2-root: {hgq2_file} does not exist after --hgq2-wait '
                                            f'{args.hgq2_wait} min (run that recipe first)')
                time.sleep(20)
            return json.loads(hgq2_file.read_text())
        say(f'[seed {seed}] HGQ2: training {args.epochs} epochs')
        extra = ['--comb-dir', str(work / 'hgq2_comb'), '--thin', str(args.thin),
                 '--min-val-accuracy', str(args.min_val_accuracy)]
        if float_val is not None and args.top_margin is not None:
            extra += ['--max-val-accuracy', str(float_val - args.top_margin / 100)]
        return pvh.run_hgq2(ns, split, work, min(CALIBRATION_SAMPLES, len(data.x_train)), extra)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(hgq2_side)
        run_dir = work / 'ours'
        t = time.perf_counter()
        index = train(project, config, run_dir, data=data)
        train_s = time.perf_counter() - t
        ours: dict[str, Any] = {'train_s': round(train_s, 1)}
        if (run_dir / 'float.json').exists():
            ours['float'] = json.loads((run_dir / 'float.json').read_text())
        ours['history_epochs'] = len(read_history(run_dir).get('epoch', []))
        points = [{'epoch': int(c['epoch']), 'file': str(run_dir / 'checkpoints' / c['file']),
                   'val_accuracy': float(c['metrics']['val_accuracy']), 'ebops': float(c['metrics']['ebops'])}
                  for c in index['checkpoints']]
        ref = float_val if float_val is not None else ours['float']['val_accuracy']
        kept = thin(points, args.thin, args.min_val_accuracy if args.min_val_accuracy else ref - 0.2,
                    1.0 if args.top_margin is None else ref - args.top_margin / 100)
        ours['pareto_checkpoints'] = len(points)
        say(f'[seed {seed}] ours: {len(points)} Pareto checkpoints, {len(kept)} kept; designs '
            f'({", ".join(args.ours_variants)})')
        t = time.perf_counter()
        designs = [d for p in kept for d in designs_ours(p, args.ours_variants, seed, data, cache)]
        ours['designs_s'] = round(time.perf_counter() - t, 1)
        hgq2 = future.result()
    return ours, hgq2, designs


# ---------------------------------------------------------------------------------------------- designs
def designs_ours(point: dict[str, Any], variants: list[str], seed: int, data: Any,
                 cache: Path) -> list[dict[str, Any]]:
    """Our checkpoint, calibrated once, through our RTL flow per variant (cached): test accuracy of the exact
    emulator, the RTL's logic (da4ml's C++ interpreter) compared with it on every test output, da4ml's cost."""
    import keras

    from hgq import ir
    from hgq.export.rtl import write_rtl
    from hgq.layers.overflow import apply_activation_overflow
    from hgq.report import ebops_per_layer
    from hgq.workflow.report import CALIBRATION_SAMPLES, load_calibrated

    files = {v: cache / f'{file_key(point["file"], v)}.json' for v in variants}
    out = {v: json.loads(f.read_text()) for v, f in files.items() if f.exists()}
    missing = [v for v in variants if v not in out]
    if missing:
        model = load_calibrated(Path(point['file']), data.x_train[:CALIBRATION_SAMPLES])
        for v in missing:
            apply_activation_overflow(model, POLICY[v])
            graph = ir.from_model(model)
            y_emul = ir.predict(graph, data.x_test)
            rtl_dir = files[v].with_suffix('')
            prj = write_rtl(graph, rtl_dir, 'top', latency_cutoff=-1)
            y_rtl = np.asarray(prj.predict_comb(data.x_test, strict=False), np.float64)
            d = {'side': side_name(v), 'variant': v, 'seed': seed, **point,
                 'common_ebops': float(sum(r['ebops'] for r in ebops_per_layer(graph))),
                 'test_accuracy': float(np.mean(y_emul.argmax(1) == data.y_test)),
                 'rtl_test_accuracy': float(np.mean(y_rtl.argmax(1) == data.y_test)),
                 'interpreter_mismatches': int(np.sum(y_rtl != y_emul)), 'outputs_compared': int(y_rtl.size),
                 'da4ml_cost': float(prj.comb.cost), 'rtl_dir': str(rtl_dir), 'cache_file': str(files[v]),
                 'point': point}
            write_json(files[v], d)
            out[v] = d
        keras.backend.clear_session()
    return [out[v] for v in variants]


def design_hgq2(point: dict[str, Any], data: Any, out: Path) -> dict[str, Any]:
    """HGQ2's CombLogic (from its worker) written as combinational Verilog by da4ml; interpreter vs HGQ2's Keras."""
    from da4ml.codegen import RTLModel
    from da4ml.types import CombLogic

    comb = CombLogic.load(point['comb'])
    RTLModel(comb, 'top', out, flavor='verilog', latency_cutoff=-1, print_latency=False).write()
    logits = np.load(point['keras_test_logits'])
    y = np.asarray(comb.predict(data.x_test.astype(np.float64)), np.float64)
    return {'test_accuracy': point['test_accuracy'], 'rtl_test_accuracy': float(np.mean(y.argmax(1) == data.y_test)),
            'interpreter_mismatches': int(np.sum(y != logits)), 'outputs_compared': int(y.size),
            'da4ml_cost': float(comb.cost), 'rtl_dir': str(out)}


def verilog_files(rtl_dir: Path) -> list[Path]:
    src = rtl_dir / 'src'
    files = [src / 'top.v', *sorted(src.glob('top_stage*.v'))]
    text = ''.join(p.read_text() for p in files)
    return files + [h for h in sorted((src / 'static').glob('*.v')) if h.stem in text]


def synthesize(design: dict[str, Any]) -> dict[str, Any]:
    from hgq.export.yosys import synthesize as yosys

    rtl = Path(design['rtl_dir'])
    mem = sorted((rtl / 'src' / 'memfiles').glob('*.mem'))
    rep = yosys(verilog_files(rtl), 'top', rtl / 'synth', memfiles=mem, longest_path=False)
    return {'LUT': rep['LUT'], 'FF': rep['FF'], 'CARRY4': rep['CARRY4'], 'yosys_s': rep['yosys_seconds']}


def verilator_ours(ckpt: dict[str, Any], variant: str, data: Any, out: Path, check: int) -> dict[str, Any]:
    """`hgq synth`'s own check of the combinational design (Verilator vs the exact emulator)."""
    import keras

    from hgq import ir
    from hgq.export.rtl import write_rtl
    from hgq.layers.overflow import apply_activation_overflow
    from hgq.workflow.report import CALIBRATION_SAMPLES, load_calibrated
    from hgq.workflow.synth import SynthSettings, _check_rtl

    x_cal = data.x_train[:CALIBRATION_SAMPLES]
    model = load_calibrated(Path(ckpt['file']), x_cal)
    apply_activation_overflow(model, POLICY[variant])
    graph = ir.from_model(model)
    prj = write_rtl(graph, out / 'rtl', 'top', latency_cutoff=-1)
    settings = SynthSettings(out_dir=str(out), latency_cutoff=-1, check=check, name='top')
    res = _check_rtl(settings, graph, prj, x_cal, {}, nproc=2)
    keras.backend.clear_session()
    return {'simulator': res['simulator'], 'mismatches': res['mismatches'], 'outputs': res['outputs'],
            'inputs': res['inputs']}


def verilator_hgq2(point: dict[str, Any], data: Any, out: Path) -> dict[str, Any]:
    """HGQ2's design built with Verilator (our Verilator set-up) vs da4ml's interpreter on the test inputs."""
    from da4ml.codegen import RTLModel
    from da4ml.types import CombLogic

    from hgq.export.tools import verilator_env

    comb = CombLogic.load(point['comb'])
    rtl = RTLModel(comb, 'top', out, flavor='verilog', latency_cutoff=-1, print_latency=False)
    rtl.write()
    rtl._compile(openmp=True, nproc=2, _env=verilator_env())
    x = data.x_test.astype(np.float64)
    got = np.asarray(rtl.predict(x), np.float64)
    want = np.asarray(comb.predict(x), np.float64)
    return {'simulator': 'Verilator', 'mismatches': int(np.sum(got != want)), 'outputs': int(got.size),
            'inputs': len(x)}


# ---------------------------------------------------------------------------------------------- breakdown
OPCODE_KINDS = {0: 'adders', 1: 'adders', 4: 'adders', 2: 'relu', -2: 'relu', 3: 'quantize', -3: 'quantize',
                6: 'msb_mux (saturation, min/max)', -6: 'msb_mux (saturation, min/max)', 7: 'multipliers',
                8: 'tables', 9: 'bit ops', -9: 'bit ops', 10: 'bit ops'}


def opcode_split(comb: Any) -> dict[str, float]:
    """da4ml's cost of a CombLogic by kind of op: the same rule for both libraries' logic."""
    split: dict[str, float] = {}
    for op in comb.ops:
        if op.cost:
            kind = OPCODE_KINDS.get(op.opcode, f'opcode {op.opcode}')
            split[kind] = round(split.get(kind, 0.0) + float(op.cost), 1)
    return split


def breakdown(d: dict[str, Any], data: Any) -> dict[str, Any]:
    """Where a chosen design's logic goes: da4ml's cost by kind of op (both sides); for ours also per IR layer and
    kind (bench/lut_breakdown.py's split) and per-layer widths; for HGQ2 its worker's per-layer widths."""
    from da4ml.types import CombLogic

    out: dict[str, Any] = {'side': d['side'], 'seed': d['seed'], 'epoch': d['epoch'], 'LUT': d.get('LUT'),
                           'test_accuracy': d['test_accuracy'], 'da4ml_cost': d['da4ml_cost']}
    if d['side'] == 'hgq2':
        out['by_kind'] = opcode_split(CombLogic.load(d['point']['comb']))
        front = json.loads((Path(d['point']['comb']).parents[1] / 'hgq2_front.json').read_text())['front']
        layers = next(p['layers'] for p in front if p['epoch'] == d['epoch'])
        out['layers'] = [{'layer': r['layer'], 'ebops': r['common_ebops'], 'input_bits': r['input_bits'],
                          'nonzero': r['nonzero_weights'], 'weight_bits': r['weight_bits']} for r in layers]
        return out
    import keras
    from lut_breakdown import node_costs

    from hgq import ir
    from hgq.export.rtl_trace import trace
    from hgq.layers.overflow import apply_activation_overflow
    from hgq.report import ebops_per_layer
    from hgq.workflow.report import CALIBRATION_SAMPLES, load_calibrated

    model = load_calibrated(Path(d['point']['file']), data.x_train[:CALIBRATION_SAMPLES])
    apply_activation_overflow(model, POLICY[d['variant']])
    graph = ir.from_model(model)
    out['by_layer_kind'] = [{'layer': k[0], 'kind': k[1], 'da4ml_cost': round(v, 1)}
                            for k, v in sorted(node_costs(graph).items())]
    out['by_kind'] = opcode_split(trace(graph).comb)
    out['layers'] = [{k: r.get(k) for k in ('layer', 'ebops', 'input_bits', 'nonzero', 'weight_bits')}
                     for r in ebops_per_layer(graph) if 'weights' in r]
    keras.backend.clear_session()
    return out


# ---------------------------------------------------------------------------------------------- analysis
def candidates(designs: list[dict[str, Any]], targets: list[float], slack: float) -> list[dict[str, Any]]:
    """Per target, the designs reaching it with da4ml cost within `slack` of the cheapest one reaching it."""
    chosen: dict[int, dict[str, Any]] = {}
    for target in targets:
        ok = [d for d in designs if d['test_accuracy'] >= target]
        if ok:
            best = min(d['da4ml_cost'] for d in ok)
            chosen.update({id(d): d for d in ok if d['da4ml_cost'] <= best * (1 + slack)})
    return list(chosen.values())


def cheapest(designs: list[dict[str, Any]], target: float, key: str | None = None) -> dict[str, Any] | None:
    key = key or COST['key']
    ok = [d for d in designs if key in d and d['test_accuracy'] >= target]
    return min(ok, key=lambda d: d[key]) if ok else None


def envelope(points: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    best, kept = -1.0, []
    for p in sorted(points, key=lambda p: (p[cost], -p['test_accuracy'])):
        if p['test_accuracy'] > best:
            kept.append(p)
            best = p['test_accuracy']
    return kept


def median_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def spread(values: list[float | None]) -> list[float | None]:
    vals = [v for v in values if v is not None]
    return [min(vals), max(vals)] if vals else [None, None]


def levels_table(levels: list[dict[str, Any]], ours_name: str) -> str:
    rows = []
    for lv in levels:
        def cell(v: Any, s: list[Any], n: int) -> str:
            return 'not reached' if v is None else f'{v:,.0f} [{s[0]:,.0f}-{s[1]:,.0f}] ({n})'
        rows.append([f'float-{lv["drop_points"]} = {lv["target_accuracy"]:.4f}', lv['cost'],
                     cell(lv['ours_luts'], lv['ours_spread'], lv['ours_seeds_reached']),
                     cell(lv['hgq2_luts'], lv['hgq2_spread'], lv['hgq2_seeds_reached']),
                     '-' if lv['ratio'] is None else f'{lv["ratio"]:.2f}',
                     ' '.join('-' if r is None else f'{r:.2f}' for r in lv['ratio_per_seed']),
                     '' if lv['ratio'] is None else ('yes' if lv['ratio'] <= TARGET_RATIO else 'no')])
    return format_table(['test accuracy >=', 'counted', f'{ours_name}: LUT median [min-max] (seeds)',
                         'HGQ2: LUT median [min-max] (seeds)', 'ratio', 'per seed', f'<= {TARGET_RATIO}'], rows)


def print_breakdowns(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    kinds = sorted({k for r in rows for k in r['by_kind']})
    say('\nda4ml cost by kind of op (first seed, the design chosen at each level):')
    say(format_table(['level', 'side', 'epoch', 'test acc', 'Yosys LUT', 'da4ml', *kinds],
                     [[f'float-{r["drop_points"]:g}', r['side'], r['epoch'], f'{r["test_accuracy"]:.4f}',
                       r['LUT'], f'{r["da4ml_cost"]:,.0f}',
                       *(f'{r["by_kind"].get(k, 0):,.0f} ({100 * r["by_kind"].get(k, 0) / r["da4ml_cost"]:.0f}%)'
                         for k in kinds)] for r in rows]))
    say('\nper layer: EBOPs, mean input bits, non-zero weights, mean weight bits (non-zero)')
    say(format_table(['level', 'side', *(f'layer {n}' for n in range(4))],
                     [[f'float-{r["drop_points"]:g}', r['side'],
                       *(f'{x["ebops"]:,.0f} / {x["input_bits"]:.2f} / {x["nonzero"]} / {x["weight_bits"]:.2f}'
                         for x in r.get('layers', []))] for r in rows]))
    for r in rows:
        if 'by_layer_kind' in r:
            layers = sorted({x['layer'] for x in r['by_layer_kind']}, key=str)
            kinds = sorted({x['kind'] for x in r['by_layer_kind']})
            cell = {(x['layer'], x['kind']): x['da4ml_cost'] for x in r['by_layer_kind']}
            say(f'\n{r["side"]} at float-{r["drop_points"]:g} (epoch {r["epoch"]}): da4ml cost per IR layer and kind')
            say(format_table(['layer', *kinds], [[lay, *(f'{cell.get((lay, k), 0):,.0f}' for k in kinds)]
                                                 for lay in layers]))


def plot(sides: dict[str, list[list[dict[str, Any]]]], float_acc: float, path: Path, title: str) -> None:
    """Left: every designed checkpoint at da4ml's estimate; right: the synthesized ones at Yosys LUTs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(13, 5.5), layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    colors = {'ours': 'tab:blue', 'ours_wrap': 'tab:green', 'ours_input_sat': 'tab:purple', 'hgq2': 'tab:orange'}
    styles = ('-', '--', ':', '-.')
    panels = (('da4ml_cost', "da4ml's LUT estimate (every designed checkpoint)"),
              ('LUT', 'Yosys synth_xilinx LUTs (combinational; the synthesized checkpoints)'))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, seeds in sides.items():
            for n, designs in enumerate(seeds):
                pts = [d for d in designs if key in d]
                if not pts:
                    continue
                ax.scatter([p[key] for p in pts], [p['test_accuracy'] for p in pts], s=9, alpha=0.35,
                           color=colors.get(name, 'k'))
                env = envelope(pts, key)
                ax.step([p[key] for p in env], [p['test_accuracy'] for p in env], where='post',
                        color=colors.get(name, 'k'), ls=styles[n % len(styles)], lw=1.2,
                        label=f'{name} seed {designs[0]["seed"]}')
        ax.axhline(float_acc, color='k', lw=1, label=f'float {float_acc:.4f}')
        for d in DROP_POINTS:
            ax.axhline(float_acc - d / 100, color='gray', ls=':', lw=0.7)
        ax.set_xscale('log')
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:,.0f}'))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=7, loc='lower right', ncol=2)
    axes[0].set_ylabel('test accuracy (float - 1, 2, 3, 5, 7, 10, 15 points dotted)')
    axes[0].set_ylim(float_acc - 0.17, float_acc + 0.01)
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--epochs', type=int, default=600)
    p.add_argument('--beta-start', type=float, default=5e-7)
    p.add_argument('--beta-end', type=float, default=1e-3)
    p.add_argument('--float-epochs', type=int, help="float baseline epochs (default: config.yaml's)")
    p.add_argument('--toy', type=int, default=0, help='N make_toy_jets samples instead of the jets data (smoke)')
    p.add_argument('--backend', default='jax')
    p.add_argument('--hgq2-python', default=str(PEER_PYTHON))
    p.add_argument('--ours-variants', nargs='+', default=['sat', 'wrap'], choices=list(POLICY))
    p.add_argument('--thin', type=float, default=0.93,
                   help='design only Pareto checkpoints at most THIN x the EBOPs of the last kept (1: all)')
    p.add_argument('--min-val-accuracy', type=float, default=0.0,
                   help='skip checkpoints below this val accuracy (default: ours below float - 20 points)')
    p.add_argument('--slack', type=float, default=0.15, help='synthesize designs within this of the cheapest')
    p.add_argument('--ours-beta-scale', type=float, default=1.0,
                   help='a candidate: multiply our whole beta ramp by this (HGQ2 keeps the recipe)')
    p.add_argument('--ours-trainable-i', action='store_true',
                   help='a candidate: our activation quantizers learn their integer bits (HGQQuantizer trainable_i)')
    p.add_argument('--ours-cost', choices=['ebops', 'luts'], default='ebops',
                   help="what our beta multiplies (config training.cost; HGQ2's stays EBOPs)")
    p.add_argument('--ours-train-overflow', choices=list(POLICY.values()), default='SAT',
                   help='the overflow policy during training: only `--ours-cost luts` sees it (SAT costs LUTs)')
    p.add_argument('--hgq2-root', type=Path,
                   help="reuse HGQ2's trained seeds from this WORKDIR/TAG folder of an earlier run (same recipe)")
    p.add_argument('--hgq2-wait', type=float, default=0,
                   help='minutes to wait for a --hgq2-root seed that a concurrent run is still training')
    p.add_argument('--top-margin', type=float,
                   help='of the checkpoints with val accuracy above float val - this (points), design only the '
                        'cheapest (saves tracing the largest designs; the top level is float - 1)')
    p.add_argument('--synth', choices=['candidates', 'cached', 'none'], default='candidates',
                   help="cached: no new Yosys runs, use the cached counts (a level lacking one counts da4ml's "
                        "estimate); none: no Yosys, the levels count da4ml's estimate (a quick look)")
    p.add_argument('--yosys-max-cost', type=float, default=float('inf'),
                   help="synthesize only designs up to this da4ml cost; a level whose designs are larger counts "
                        "da4ml's estimate on both sides (Yosys takes minutes per 20k-LUT design on a loaded machine)")
    p.add_argument('--jobs', type=int, default=2, help='Yosys processes at once')
    p.add_argument('--verilator', choices=['levels', 'first-seed', 'none'], default='first-seed',
                   help="simulate the designs chosen at the levels: all seeds', the first seed's, or none")
    p.add_argument('--verilator-max-luts', type=float, default=float('inf'),
                   help='simulate only chosen designs up to this size (Verilator builds of large designs take minutes)')
    p.add_argument('--check', type=int, default=2000, help='random inputs of our Verilator check')
    p.add_argument('--breakdown', type=float, nargs='*', default=[5, 7, 10, 15],
                   help="split the first seed's designs chosen at these levels by layer and kind")
    p.add_argument('--workdir', type=Path, default=Path('/tmp/front_vs_hgq2'))
    p.add_argument('--json', type=Path, default=RESULTS / 'front_vs_hgq2.json')
    p.add_argument('--png', type=Path, default=RESULTS / 'front_vs_hgq2.png')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ['KERAS_BACKEND'] = args.backend
    for path in (str(REPO), str(REPO / 'bench')):
        if path not in sys.path:
            sys.path.insert(0, path)
    import hgq

    if not Path(hgq.__file__).resolve().is_relative_to(REPO):
        sys.exit(f'imported hgq from {hgq.__file__}, not from {REPO}')
    if not Path(args.hgq2_python).exists():
        sys.exit(f'HGQ2 interpreter {args.hgq2_python} not found; create it with `make peers`')
    import pareto_vs_hgq2 as pvh

    started = time.perf_counter()
    tag = f'e{args.epochs}_b{args.beta_start:g}-{args.beta_end:g}' + (f'_toy{args.toy}' if args.toy else '')
    if args.ours_beta_scale != 1:
        tag += f'_ours-beta-x{args.ours_beta_scale:g}'
    if args.ours_trainable_i:
        tag += '_ours-trainable-i'
    if args.ours_cost != 'ebops':
        tag += f'_cost-{args.ours_cost}-{args.ours_train_overflow}'
    root = args.workdir.resolve() / tag
    info = machine_info()
    say(f'{info["cpu_model"]}, {info["nproc"]} CPUs, load {os.getloadavg()[0]:.1f}; seeds {args.seeds}, '
        f'{args.epochs} epochs, beta {args.beta_start:g} -> {args.beta_end:g} (log); work in {root}')

    timings: dict[str, float] = {}
    cache = root / 'cache'
    cache.mkdir(parents=True, exist_ok=True)
    sides: dict[str, list[list[dict[str, Any]]]] = {side_name(v): []
                                                     for v in args.ours_variants}
    sides['hgq2'] = []
    runs: dict[int, dict[str, Any]] = {}
    float_result = None
    _, _, data = pvh.load_split(argparse.Namespace(**{**vars(args), 'seed': args.seeds[0]}))
    t = time.perf_counter()
    for seed in args.seeds:
        ours, hgq2, designs = train_seed(args, seed, root / f'seed{seed}', cache,
                                         None if float_result is None else float_result['val_accuracy'])
        float_result = float_result or ours['float']
        for v in args.ours_variants:
            sides[side_name(v)].append([d for d in designs if d['variant'] == v])
        sides['hgq2'].append(build_designs('hgq2', seed, hgq2['front'], cache,
                                           lambda p, out: design_hgq2(p, data, out), 'hgq2'))
        runs[seed] = {'ours': ours, 'hgq2': {k: v for k, v in hgq2.items() if k not in ('front', 'history')}}
    timings['train_and_rtl_s'] = round(time.perf_counter() - t, 1)
    float_acc = float(float_result['test_accuracy'])
    targets = [float_acc - d / 100 for d in DROP_POINTS]
    bad = [(n, d['seed'], d['epoch'], d['interpreter_mismatches']) for n, s in sides.items() for ds in s for d in ds
           if d['interpreter_mismatches']]
    if bad:
        say(f'WARNING: RTL logic differs from the model: {bad}')

    # Yosys on the candidates of every level
    t = time.perf_counter()
    # only the levels whose da4ml-cheapest designs are all under --yosys-max-cost (the rest count da4ml's estimate)
    all_designs = [ds for seeds in sides.values() for ds in seeds]
    yosys_targets = [t for t in targets if all(p['da4ml_cost'] <= args.yosys_max_cost for ds in all_designs
                                               if (p := cheapest(ds, t, 'da4ml_cost')) is not None)]
    todo = list({d['cache_file']: d for ds in all_designs for d in candidates(ds, yosys_targets, args.slack)
                 if 'LUT' not in d and args.synth == 'candidates'}.values())
    if args.synth == 'none':
        COST['key'] = 'da4ml_cost'
    todo.sort(key=lambda d: -d['da4ml_cost'])  # the long ones first, so that the two workers end together
    say(f'Yosys on {len(todo)} designs ({args.jobs} at a time), '
        f'da4ml cost {sum(d["da4ml_cost"] for d in todo):,.0f} in all')
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for d, rep in zip(todo, pool.map(lambda d: synthesize(d), todo)):
            d.update(rep)
            write_json(Path(d['cache_file']), d)
            say(f'  {d["side"]} seed {d["seed"]} epoch {d["epoch"]}: {rep["LUT"]:,} LUT (da4ml {d["da4ml_cost"]:,.0f}'
                f'), acc {d["test_accuracy"]:.4f}, {rep["yosys_s"]:.0f} s')
    timings['yosys_s'] = round(time.perf_counter() - t, 1)

    # levels
    levels = []
    for drop, target in zip(DROP_POINTS, targets):
        # Yosys LUTs where every side's and seed's da4ml-cheapest design at this level was synthesized (under
        # --yosys-max-cost); otherwise da4ml's estimate for all of them, so that a level never mixes the two
        ck = COST['key']
        if ck == 'LUT' and any('LUT' not in p for ds in (x for seeds in sides.values() for x in seeds)
                                if (p := cheapest(ds, target, 'da4ml_cost')) is not None):
            ck = 'da4ml_cost'
        lv: dict[str, Any] = {'drop_points': drop, 'target_accuracy': target,
                              'cost': 'Yosys LUT' if ck == 'LUT' else "da4ml's LUT estimate"}
        for name, seeds in sides.items():
            picks = [cheapest(ds, target, ck) for ds in seeds]
            luts = [None if p is None else p[ck] for p in picks]
            key = 'ours' if name == 'ours' else name
            lv[f'{key}_luts'] = median_or_none(luts)
            lv[f'{key}_spread'] = spread(luts)
            lv[f'{key}_seeds_reached'] = sum(v is not None for v in luts)
            lv[f'{key}_per_seed'] = [None if p is None else {
                'seed': p['seed'], 'epoch': p['epoch'], 'LUT': p[ck], 'yosys_lut': p.get('LUT'),
                'da4ml_cost': p['da4ml_cost'],
                'test_accuracy': p['test_accuracy'], 'cache_file': p['cache_file']} for p in picks]
        for name in sides:
            if name == 'hgq2':
                continue
            a, b = lv[f'{name}_luts'], lv['hgq2_luts']
            lv['ratio' if name == 'ours' else f'ratio_{name}'] = None if a is None or b is None else a / b
            per = [None if x is None or y is None else x['LUT'] / y['LUT']
                   for x, y in zip(lv[f'{name}_per_seed'], lv['hgq2_per_seed'])]
            lv['ratio_per_seed' if name == 'ours' else f'ratio_per_seed_{name}'] = per
        if 'ratio' not in lv:  # without the SAT variant, the keys describe the first variant asked for
            first = side_name(args.ours_variants[0])
            for k in ('luts', 'spread', 'seeds_reached', 'per_seed'):
                lv[f'ours_{k}'] = lv[f'{first}_{k}']
            lv['ratio'], lv['ratio_per_seed'] = lv[f'ratio_{first}'], lv[f'ratio_per_seed_{first}']
            lv['ours_variant'] = first
        levels.append(lv)

    # Verilator on each level's chosen designs
    t = time.perf_counter()
    if args.verilator != 'none':
        chosen = {}
        for lv in levels:
            for name in sides:
                for p in lv[f'{name}_per_seed']:
                    if p is not None and (args.verilator == 'levels' or p['seed'] == args.seeds[0]) and \
                            p['LUT'] <= args.verilator_max_luts:
                        chosen[p['cache_file']] = name
        say(f'Verilator on the {len(chosen)} designs chosen at the levels')
        for cache_file, name in chosen.items():
            d = json.loads(Path(cache_file).read_text())
            if 'verilator' not in d:
                out = Path(d['rtl_dir']).parent / (Path(d['rtl_dir']).name + '_verilator')
                if name == 'hgq2':
                    d['verilator'] = verilator_hgq2(d['point'], data, out)
                else:
                    d['verilator'] = verilator_ours(d['point'], d['variant'], data, out, args.check)
                write_json(Path(cache_file), d)
            say(f'  {name} seed {d["seed"]} epoch {d["epoch"]}: {d["verilator"]["mismatches"]} mismatches in '
                f'{d["verilator"]["outputs"]:,} outputs ({d["verilator"]["simulator"]})')
            for lv in levels:
                for p in lv[f'{name}_per_seed']:
                    if p is not None and p['cache_file'] == cache_file:
                        p['verilator_mismatches'] = d['verilator']['mismatches']
    timings['verilator_s'] = round(time.perf_counter() - t, 1)

    breakdowns = []
    for drop in args.breakdown:
        lv = next(lv for lv in levels if lv['drop_points'] == drop)
        for name in sides:
            p = lv[f'{name}_per_seed'][0]
            if p is not None:
                b = breakdown(json.loads(Path(p['cache_file']).read_text()), data)
                b['drop_points'] = drop
                breakdowns.append(b)
    print_breakdowns(breakdowns)
    timings['total_s'] = round(time.perf_counter() - started, 1)

    say(f'\nfloat baseline (seed {args.seeds[0]}, {float_result["epochs"]} epochs): test accuracy {float_acc:.4f}')
    label = 'ours (SAT)' if 'sat' in args.ours_variants else f'ours ({POLICY[args.ours_variants[0]]})'
    say(levels_table(levels, label))
    for v in args.ours_variants:
        n = side_name(v)
        if n == 'ours' or levels and levels[0].get('ours_variant') == n:  # already the main table
            continue
        v_levels = [{**lv, 'ours_luts': lv[f'{n}_luts'], 'ours_spread': lv[f'{n}_spread'],
                     'ours_seeds_reached': lv[f'{n}_seeds_reached'], 'ratio': lv[f'ratio_{n}'],
                     'ratio_per_seed': lv[f'ratio_per_seed_{n}']} for lv in levels]
        say(f'\nours with {POLICY[v]} activations (same checkpoints):')
        say(levels_table(v_levels, f'ours ({POLICY[v]})'))
    say(f'timings: {timings}')

    title = (f'{data.source}: {args.epochs} epochs, beta {args.beta_start:g} -> {args.beta_end:g} (log), seeds '
             f'{args.seeds}; float {float_acc:.4f}')
    plot(sides, float_acc, args.png, title)
    versions = {'ours': {n: pip_version(sys.executable, n) for n in ('keras', 'jax', 'da4ml', 'numpy')},
                'hgq2': runs[args.seeds[0]]['hgq2'].get('versions')}
    git = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True)
    versions['ours']['git_commit'] = git.stdout.strip() or None
    write_json(args.json, {
        'benchmark': 'front_vs_hgq2',
        'command': ' '.join(['bench/front_vs_hgq2.py', *(sys.argv[1:] if argv is None else argv)]),
        'data': {'source': data.source, 'train': len(data.x_train), 'val': len(data.x_val), 'test': len(data.x_test)},
        'settings': {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        'machine': info, 'versions': versions, 'timings': timings,
        'float': float_result, 'float_test_accuracy': float_acc, 'runs': runs,
        'cost': 'Yosys LUT' if COST['key'] == 'LUT' else "da4ml's LUT estimate (--synth none)",
        'levels': levels,
        'breakdown': breakdowns,
        'fronts': {name: [[{k: v for k, v in d.items() if k != 'point'} for d in ds] for ds in seeds]
                   for name, seeds in sides.items()},
        'png': str(args.png),
    })
    say(f'wrote {args.json} and {args.png} ({timings["total_s"]:.0f} s)')


def build_designs(side: str, seed: int, points: list[dict[str, Any]], cache: Path, make: Any,
                  variant: str) -> list[dict[str, Any]]:
    """One design per checkpoint (cached): the checkpoint's facts plus what `make(point, rtl_dir)` returns."""
    out = []
    for p in points:
        src = p['comb'] if side == 'hgq2' else p['file']
        key = file_key(src, variant)
        cache_file = cache / f'{key}.json'
        if cache_file.exists():
            d = json.loads(cache_file.read_text())
        else:
            d = {'side': side, 'variant': variant, 'seed': seed, 'epoch': p['epoch'],
                 'common_ebops': p['common_ebops'], 'point': copy.deepcopy({k: v for k, v in p.items()
                                                                             if k != 'layers'}),
                 'cache_file': str(cache_file), **make(p, cache / key)}
            write_json(cache_file, d)
        d.update(side=side, seed=seed)
        out.append(d)
    say(f'[seed {seed}] {side}: {len(out)} designs, da4ml cost {min(d["da4ml_cost"] for d in out):,.0f}-'
        f'{max(d["da4ml_cost"] for d in out):,.0f}')
    return out


if __name__ == '__main__':
    main()
