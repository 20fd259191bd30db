"""Accuracy-vs-EBOPs Pareto fronts of one training run of ours and one of HGQ2, against the float baseline.

Both libraries train the jets project's model (16-64-32-32-5 MLP, ReLU) on the same split (exported once to an
.npz that HGQ2's worker reads), with the same epochs, batch size, Adam + cosine learning-rate decay, seed, log
beta ramp applied per epoch, and the same backend (JAX):

- ours: `hgq.workflow.train` (the `hgq train jets` recipe: float baseline, then the HGQ run keeping its Pareto
  checkpoints on (val_accuracy max, ebops min)), then `hgq.workflow.report.evaluate_front` (each checkpoint
  calibrated on the first 20,000 training samples: test accuracy and exact EBOPs); the EBOPs of the common
  definition come from `hgq.ir.from_model` + `hgq.report.ebops_per_layer`.
- HGQ2 0.2.0: bench/peers/hgq2_pareto.py, run in HGQ2's own venv: its default quantizers, its `BetaScheduler`,
  `FreeEBOPs` and `ParetoFront` callbacks, `trace_minmax` on the same 20,000 samples; it reports HGQ2's EBOPs
  and recomputes ours from HGQ2's calibrated formats and values (see that file for both definitions).

The two libraries count EBOPs differently (HGQ2 leaves out sign bits and counts each weight's declared width), so
the matched-accuracy ratios use the common definition, ours (docs/ebops.md). For each target (float test
accuracy minus 1, 2, 3 and 5 points) each front's cost is the fewest EBOPs among its checkpoints whose
calibrated test accuracy reaches the target. Per-epoch time is steady state (median of epochs 2..E), once as
wall time from epoch end to epoch end (training steps, validation and each library's callbacks), and split into
the epoch-end callbacks (checkpoint writing, EBOPs logging) and the rest (training steps and validation).

    .venv/bin/python bench/pareto_vs_hgq2.py            # jets, 200 epochs; bench/results/pareto_vs_hgq2.{json,png}
    .venv/bin/python bench/pareto_vs_hgq2.py --toy 20000 --epochs 5 --json /tmp/p.json --png /tmp/p.png
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from common import PEER_PYTHON, REPO, format_table, machine_info, pip_version, write_json

PEER_SCRIPT = REPO / 'bench' / 'peers' / 'hgq2_pareto.py'
DEFAULT_PEER_PYTHON = str(PEER_PYTHON)
RESULTS = REPO / 'bench' / 'results'
DROPS = (0.01, 0.02, 0.03, 0.05)  # matched accuracy: float test accuracy minus these (absolute)
TARGET_RATIO = 0.8
SPLIT_KEYS = ('x_train', 'y_train', 'x_val', 'y_val', 'x_test', 'y_test')
STDERR_NOISE = ('cuda', 'TF-TRT', 'oneDNN', 'cpu_feature_guard', 'absl', 'computation placer', 'rebuild TensorFlow')


# ---------------------------------------------------------------------------------------------- data
def load_split(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """(project, config, data): the jets project with its config (epochs, beta, seed from the arguments) and
    either its data or, with --toy N, N `make_toy_jets` samples split and standardized the same way."""
    from hgq.workflow import Dataset, find_project, split_arrays, standardize

    project = find_project('jets')
    config = copy.deepcopy(project.config())
    training = config['training']
    training['epochs'] = args.epochs
    training['beta'] = {'schedule': 'log', 'start': args.beta_start, 'end': args.beta_end}
    training['seed'] = args.seed
    if args.float_epochs is not None:
        training['float_epochs'] = args.float_epochs
    if args.toy:
        from hgq.data.toy import make_toy_jets

        d = config['data']
        x, y = make_toy_jets(args.toy, seed=0)
        data = standardize(Dataset(*split_arrays(x, y, d['val_fraction'], d['test_fraction'], d['split_seed']),
                                   source=f'make_toy_jets({args.toy}, seed=0)'))
    else:
        data = project.load_data(config)
    return project, config, data


# ---------------------------------------------------------------------------------------------- our side
def epoch_timers() -> tuple[Any, Any]:
    """Two Keras callbacks, to go first and last in a fit's list. Per fit, keyed by the model's name, they record
    the epoch wall time (epoch end to epoch end; on JAX only the epoch end waits for the device, so no finer
    split of steps and validation is reliable) and the time of the epoch-end callbacks in between (checkpoint
    writing, EBOPs logging: from the first callback's `on_epoch_end` to the last one's)."""
    import keras

    class First(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.t = time.perf_counter()

    class Last(keras.callbacks.Callback):
        def __init__(self, first: First) -> None:
            super().__init__()
            self.first = first
            self.runs: dict[str, dict[str, list[float]]] = {}

        def on_train_begin(self, logs: Any = None) -> None:
            self._rec = self.runs.setdefault(self.model.name, {'epoch_s': [], 'callbacks_s': []})
            self._last = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            now = time.perf_counter()
            self._rec['epoch_s'].append(now - self._last)
            self._rec['callbacks_s'].append(now - self.first.t)
            self._last = now

    first = First()
    return first, Last(first)


def time_summary(epoch_s: list[float], callbacks_s: list[float]) -> dict[str, Any]:
    """Steady state (median of epochs 2..E) and fastest epoch after the first; 'fit' = epoch minus callbacks."""
    fit_s = [e - c for e, c in zip(epoch_s, callbacks_s, strict=True)]
    later = slice(1, None)
    return {'epoch_s': epoch_s, 'callbacks_s': callbacks_s, 'first_epoch_s': epoch_s[0] if epoch_s else None,
            'steady_epoch_s': statistics.median(epoch_s[later]) if len(epoch_s) > 1 else None,
            'steady_fit_s': statistics.median(fit_s[later]) if len(fit_s) > 1 else None,
            'steady_callbacks_s': statistics.median(callbacks_s[later]) if len(callbacks_s) > 1 else None,
            'best_epoch_s': min(epoch_s[later], default=None), 'best_fit_s': min(fit_s[later], default=None)}


@contextlib.contextmanager
def timed_fits() -> Iterator[Any]:
    """Put the epoch timers around the callbacks of every `Model.fit` inside the block (`hgq.workflow.train` takes
    no callbacks of ours); yields the last timer, whose `runs` maps model name -> epoch and callback times."""
    import keras

    first, last = epoch_timers()
    original = keras.Model.fit
    had_own = 'fit' in keras.Model.__dict__

    def fit(self: Any, *a: Any, callbacks: list[Any] | None = None, **kw: Any) -> Any:
        return original(self, *a, callbacks=[first, *(callbacks or []), last], **kw)

    keras.Model.fit = fit
    try:
        yield last
    finally:
        if had_own:
            keras.Model.fit = original
        else:
            del keras.Model.fit


def run_ours(project: Any, config: dict[str, Any], data: Any, run_dir: Path) -> dict[str, Any]:
    """Train with `hgq.workflow.train`, evaluate the front with `evaluate_front`, add the IR's EBOPs."""
    import keras

    from hgq import ir
    from hgq.report import ebops_per_layer
    from hgq.workflow import train
    from hgq.workflow.report import CALIBRATION_SAMPLES, evaluate_front, load_calibrated, read_history

    load_before = os.getloadavg()
    t = time.perf_counter()
    with timed_fits() as timer:
        index = train(project, config, run_dir, restart=True, data=data)
    train_s = time.perf_counter() - t
    load_after = os.getloadavg()
    times = next(v for k, v in timer.runs.items() if k.endswith('_hgq'))
    float_result = json.loads((run_dir / 'float.json').read_text())

    print(f'[ours] {len(index["checkpoints"])} Pareto checkpoints: calibrate, test accuracy, EBOPs', flush=True)
    t = time.perf_counter()
    rows = evaluate_front(run_dir, data, index['checkpoints'])
    x_cal = data.x_train[:CALIBRATION_SAMPLES]
    for row in rows:
        graph = ir.from_model(load_calibrated(Path(row['file']), x_cal))
        layers = ebops_per_layer(graph)
        row['common_ebops'] = float(sum(r['ebops'] for r in layers))
        row['layers'] = [{k: r.get(k) for k in ('layer', 'ebops', 'input_bits', 'nonzero', 'weight_bits')}
                         for r in layers if 'weights' in r]
        keras.backend.clear_session()  # dozens of loaded models otherwise pile up
    evaluate_s = time.perf_counter() - t
    mismatch = max((abs(r['common_ebops'] - r['exact_ebops']) for r in rows), default=0.0)
    history = {}
    for key, values in read_history(run_dir).items():
        if key in ('epoch', 'val_accuracy', 'ebops', 'beta', 'loss', 'accuracy'):
            history[key] = values
    return {
        'impl': 'ours',
        'backend': keras.backend.backend(),
        'float': float_result,
        'train_s': round(train_s, 2),
        'evaluate_s': round(evaluate_s, 2),
        **time_summary(times['epoch_s'], times['callbacks_s']),
        'float_epoch_s': next((v['epoch_s'] for k, v in timer.runs.items() if k.endswith('_float')), None),
        'loadavg_before': load_before,
        'loadavg_after': load_after,
        'ir_vs_exact_ebops_max_difference': mismatch,
        'history': history,
        'front': [{'epoch': r['epoch'], 'file': r['file'], 'val_accuracy': r['val_accuracy'],
                   'ebops_training': r['ebops'], 'test_accuracy': r['test_accuracy'],
                   'own_ebops': r['exact_ebops'], 'common_ebops': r['common_ebops'], 'layers': r['layers']}
                  for r in rows],
    }


# ---------------------------------------------------------------------------------------------- HGQ2 side
def run_hgq2(args: argparse.Namespace, split: Path, workdir: Path, calibration_samples: int,
             extra: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """HGQ2's worker in its own interpreter (no PYTHONPATH: HGQ2's `hgq` must win); streams its progress.
    `extra`: more worker arguments (bench/front_vs_hgq2.py: --comb-dir)."""
    out = workdir / 'hgq2_front.json'
    cmd = [args.hgq2_python, str(PEER_SCRIPT), '--data', str(split), '--epochs', str(args.epochs),
           '--batch-size', str(args.batch_size), '--lr', str(args.lr), '--beta-start', str(args.beta_start),
           '--beta-end', str(args.beta_end), '--seed', str(args.seed),
           '--calibration-samples', str(calibration_samples), '--workdir', str(workdir / 'hgq2'), '--out', str(out),
           *extra]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['KERAS_BACKEND'] = args.backend
    print('[hgq2] ' + ' '.join(cmd), flush=True)
    tail: list[str] = []
    with subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-40:], line]
            if line.startswith('[hgq2]') or ('Error' in line and not any(n in line for n in STDERR_NOISE)):
                print(line, flush=True)
    if proc.returncode != 0 or not out.exists():
        sys.exit(f'HGQ2 worker failed (exit {proc.returncode}):\n' + '\n'.join(tail))
    result = json.loads(out.read_text())
    result['command'] = ' '.join(cmd)
    return result


# ---------------------------------------------------------------------------------------------- analysis
def envelope(points: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """The points not dominated on (test_accuracy max, cost min), cheapest first."""
    best = -1.0
    kept = []
    for p in sorted(points, key=lambda p: (p[cost], -p['test_accuracy'])):
        if p['test_accuracy'] > best:
            kept.append(p)
            best = p['test_accuracy']
    return kept


def cheapest_at(points: list[dict[str, Any]], target: float, cost: str) -> dict[str, Any] | None:
    ok = [p for p in points if p['test_accuracy'] >= target]
    return min(ok, key=lambda p: p[cost]) if ok else None


def matched(ours: dict[str, Any], hgq2: dict[str, Any], float_acc: float) -> list[dict[str, Any]]:
    """Per target accuracy: each front's cheapest checkpoint reaching it (common and own EBOPs) and the ratios."""
    rows = []
    for drop in DROPS:
        target = float_acc - drop
        row: dict[str, Any] = {'drop': drop, 'target_accuracy': target}
        for name, res, own in (('ours', ours, 'own_ebops'), ('hgq2', hgq2, 'hgq2_ebops')):
            p = cheapest_at(res['front'], target, 'common_ebops')
            q = cheapest_at(res['front'], target, own)
            row[name] = None if p is None else {'epoch': p['epoch'], 'test_accuracy': p['test_accuracy'],
                                                'common_ebops': p['common_ebops']}
            row[f'{name}_own_ebops'] = None if q is None else q[own]
        if row['ours'] and row['hgq2']:
            row['ratio'] = row['ours']['common_ebops'] / row['hgq2']['common_ebops']
            row['meets_target'] = row['ratio'] <= TARGET_RATIO
        else:
            row['ratio'] = row['meets_target'] = None
        if row['ours_own_ebops'] and row['hgq2_own_ebops']:
            row['ratio_own_definitions'] = row['ours_own_ebops'] / row['hgq2_own_ebops']
        rows.append(row)
    return rows


def fmt(v: float | None, spec: str = ',.0f') -> str:
    return 'not reached' if v is None else format(v, spec)


def front_table(res: dict[str, Any], own: str) -> str:
    env = {id(p) for p in envelope(res['front'], 'common_ebops')}
    rows = [[p['epoch'], f'{p["val_accuracy"]:.4f}', f'{p["test_accuracy"]:.4f}', fmt(p['common_ebops']),
             fmt(p[own]), '*' if id(p) in env else '']
            for p in sorted(res['front'], key=lambda p: -p['common_ebops'])]
    return format_table(['epoch', 'val acc', 'test acc', 'EBOPs (common)', 'EBOPs (own)', 'on test front'], rows)


def point_cell(p: dict[str, Any] | None) -> str:
    return 'not reached' if p is None else f'{p["common_ebops"]:,.0f} (ep {p["epoch"]}, {p["test_accuracy"]:.4f})'


def ratio_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        body.append([f'float - {r["drop"] * 100:g} pts = {r["target_accuracy"]:.4f}',
                     point_cell(r['ours']), point_cell(r['hgq2']),
                     fmt(r['ratio'], '.3f'),
                     '' if r['meets_target'] is None else ('yes' if r['meets_target'] else 'no'),
                     fmt(r.get('ratio_own_definitions'), '.3f')])
    return format_table(['test accuracy >=', 'ours: EBOPs (epoch, acc)', 'HGQ2: EBOPs (epoch, acc)',
                         'ours / HGQ2', f'<= {TARGET_RATIO}', 'own definitions (not comparable)'], body)


def time_table(ours: dict[str, Any], hgq2: dict[str, Any]) -> str:
    def row(label: str, key: str, spec: str = '.3f') -> list[str]:
        a, b = ours.get(key), hgq2.get(key)
        return [label, fmt(a, spec), fmt(b, spec), fmt(a / b if a and b else None, '.2f')]

    return format_table(['per epoch (steady: median of epochs 2..E)', 'ours', 'HGQ2', 'ours / HGQ2'], [
        row('wall, epoch end to epoch end (s)', 'steady_epoch_s'),
        row('  of which training + validation (s)', 'steady_fit_s'),
        row('  of which epoch-end callbacks (s)', 'steady_callbacks_s'),
        row('fastest epoch after the first: wall (s)', 'best_epoch_s'),
        row('fastest epoch after the first: training + validation (s)', 'best_fit_s'),
        row('first epoch, incl. compilation (s)', 'first_epoch_s', '.2f'),
        ['all epochs of the quantized run (s)', *(fmt(sum(r['epoch_s']), '.1f') for r in (ours, hgq2)),
         fmt(sum(ours['epoch_s']) / sum(hgq2['epoch_s']), '.2f')],
        row('evaluating the front (s)', 'evaluate_s', '.1f')])


def plot(ours: dict[str, Any], hgq2: dict[str, Any], float_acc: float, path: Path, title: str) -> None:
    """Left: both fronts on the common EBOPs definition; right: each on its own library's definition."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(12, 4.8), layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    panels = (('common_ebops', 'common_ebops', 'EBOPs, common definition (ours: docs/ebops.md)'),
              ('own_ebops', 'hgq2_ebops', "EBOPs, each library's own definition"))
    for ax, (key_ours, key_hgq2, label) in zip(axes, panels, strict=True):
        for res, key, color, name in ((ours, key_ours, 'tab:blue', 'ours'), (hgq2, key_hgq2, 'tab:orange', 'HGQ2')):
            pts = res['front']
            ax.scatter([p[key] for p in pts], [p['test_accuracy'] for p in pts], s=12, color=color, alpha=0.45)
            env = envelope(pts, key)
            ax.step([p[key] for p in env], [p['test_accuracy'] for p in env], where='post', color=color,
                    label=f'{name}: {len(pts)} Pareto checkpoints')
        ax.axhline(float_acc, color='k', ls='-', lw=1, label=f'float baseline {float_acc:.4f}')
        for drop in DROPS[:3]:
            ax.axhline(float_acc - drop, color='gray', ls=':', lw=0.8)
        ax.set_xscale('log')
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:,.0f}'))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=8, loc='lower right')
    axes[0].set_ylabel('test accuracy (calibrated checkpoint)')
    accs = [p['test_accuracy'] for p in ours['front'] + hgq2['front']]
    top = max([*accs, float_acc]) + 0.005
    axes[0].set_ylim(max(min([*accs, float_acc - 0.06]), top - 0.3) - 0.005, top)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=200, help='HGQ epochs for both (default 200, as config.yaml)')
    parser.add_argument('--beta-start', type=float, default=1e-7)
    parser.add_argument('--beta-end', type=float, default=1e-4)
    parser.add_argument('--seed', type=int, default=1, help='Keras seed of both runs (config.yaml: 1)')
    parser.add_argument('--float-epochs', type=int, help="float baseline epochs (default: config.yaml's 40)")
    parser.add_argument('--toy', type=int, default=0, help='use N make_toy_jets samples instead of the jets data')
    parser.add_argument('--backend', default='jax', help='Keras backend of both sides (default jax)')
    parser.add_argument('--hgq2-python', default=DEFAULT_PEER_PYTHON, help='interpreter of the HGQ2 venv')
    parser.add_argument('--hgq2-result', type=Path, help="reuse this JSON of HGQ2's worker instead of training")
    parser.add_argument('--workdir', type=Path, help='keep run folders and checkpoints here (default: a temp dir)')
    parser.add_argument('--json', type=Path, default=RESULTS / 'pareto_vs_hgq2.json')
    parser.add_argument('--png', type=Path, default=RESULTS / 'pareto_vs_hgq2.png')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ['KERAS_BACKEND'] = args.backend
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import hgq

    if not Path(hgq.__file__).resolve().is_relative_to(REPO):
        sys.exit(f'imported hgq from {hgq.__file__}, not from {REPO}')
    if args.hgq2_result is None and not Path(args.hgq2_python).exists():
        sys.exit(f'HGQ2 interpreter {args.hgq2_python} not found; create it with `make peers`, or pass '
                 '--hgq2-python')

    project, config, data = load_split(args)
    training = config['training']
    args.batch_size = int(training['batch_size'])
    args.lr = float(training['optimizer']['learning_rate'])
    info = machine_info()
    print(f'{info["cpu_model"]}, {info["nproc"]} CPUs, load {os.getloadavg()[0]:.1f}; data {data.source}: '
          f'{len(data.x_train):,} / {len(data.x_val):,} / {len(data.x_test):,} samples; {args.epochs} epochs, '
          f'beta {args.beta_start:g} -> {args.beta_end:g} (log), backend {args.backend}', flush=True)

    from hgq.workflow.report import CALIBRATION_SAMPLES

    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='pareto-vs-hgq2-')))
        else:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        split = workdir / 'split.npz'
        np.savez(split, **{k: getattr(data, k) for k in SPLIT_KEYS})

        print('=== ours ===', flush=True)
        ours = run_ours(project, config, data, workdir / 'ours')
        if args.hgq2_result is not None:
            hgq2 = json.loads(args.hgq2_result.read_text())
        else:
            print('=== HGQ2 ===', flush=True)
            if (workdir / 'hgq2').exists():
                shutil.rmtree(workdir / 'hgq2')
            hgq2 = run_hgq2(args, split, workdir, min(CALIBRATION_SAMPLES, len(data.x_train)))

    float_acc = ours['float']['test_accuracy']
    ratios = matched(ours, hgq2, float_acc)
    versions = {'ours': {n: pip_version(sys.executable, n) for n in ('keras', 'jax', 'jaxlib', 'numpy')},
                'hgq2': hgq2.get('versions')}
    git = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True)
    versions['ours']['git_commit'] = git.stdout.strip() or None
    epoch_ratio = (ours['steady_epoch_s'] / hgq2['steady_epoch_s']
                   if ours['steady_epoch_s'] and hgq2['steady_epoch_s'] else None)
    fit_ratio = (ours['steady_fit_s'] / hgq2['steady_fit_s'] if ours['steady_fit_s'] and hgq2['steady_fit_s']
                 else None)
    reached = [r for r in ratios if r['ratio'] is not None]
    summary = {
        'float_test_accuracy': float_acc,
        'float_val_accuracy': ours['float']['val_accuracy'],
        'ebops_ratio_target': TARGET_RATIO,
        'ebops_target_met_at_every_matched_accuracy': bool(reached) and all(r['meets_target'] for r in reached),
        'targets_not_reached': [r['drop'] for r in ratios if r['ratio'] is None],
        'steady_epoch_ratio': epoch_ratio,
        'steady_fit_ratio': fit_ratio,
        'epoch_time_target_met': epoch_ratio is not None and epoch_ratio <= 1.0,
    }

    print('\n=== ours: Pareto checkpoints (calibrated) ===')
    print(front_table(ours, 'own_ebops'))
    print('\n=== HGQ2: Pareto checkpoints (trace_minmax) ===')
    print(front_table(hgq2, 'hgq2_ebops'))
    print(f'\nfloat baseline: test accuracy {float_acc:.4f} (val {ours["float"]["val_accuracy"]:.4f})')
    print('\nEBOPs at matched test accuracy (common definition; a front\'s cheapest checkpoint reaching it):')
    print(ratio_table(ratios))
    print()
    print(time_table(ours, hgq2))
    print(f'\nours / HGQ2 EBOPs <= {TARGET_RATIO} at every matched accuracy reached by both: '
          f'{summary["ebops_target_met_at_every_matched_accuracy"]}; per-epoch time no worse: '
          f'{summary["epoch_time_target_met"]}')

    title = (f'{data.source}: {args.epochs} epochs, beta {args.beta_start:g} -> {args.beta_end:g} (log), '
             f'{args.backend}; float test accuracy {float_acc:.4f}')
    plot(ours, hgq2, float_acc, args.png, title)
    payload = {
        'benchmark': 'pareto_vs_hgq2',
        'command': ' '.join(['bench/pareto_vs_hgq2.py', *(sys.argv[1:] if argv is None else argv)]),
        'data': {'source': data.source, 'train': len(data.x_train), 'val': len(data.x_val), 'test': len(data.x_test),
                 'split': config['data']},
        'settings': {'epochs': args.epochs, 'batch_size': args.batch_size, 'lr': args.lr,
                     'lr_schedule': 'CosineDecay(lr, steps_per_epoch*epochs, alpha=0.01)',
                     'beta': {'schedule': 'log', 'start': args.beta_start, 'end': args.beta_end},
                     'seed': args.seed, 'float_epochs': training['float_epochs'], 'backend': args.backend,
                     'calibration_samples': min(CALIBRATION_SAMPLES, len(data.x_train)),
                     'matched_accuracy': 'float test accuracy minus ' + ', '.join(f'{d:g}' for d in DROPS)},
        'machine': info,
        'versions': versions,
        'summary': summary,
        'matched': ratios,
        'ours': ours,
        'hgq2': hgq2,
        'png': str(args.png),
    }
    write_json(args.json, payload)
    print(f'\nwrote {args.json} and {args.png}')


if __name__ == '__main__':
    main()
