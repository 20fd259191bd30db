"""The merged report of a sweep: every trial's Pareto checkpoints on one plot, the global front, and which
trial and epoch each front point is.

The points are the trials' own Pareto indexes (val accuracy and EBOPs as logged in training), so the report
costs no evaluation; the global front is the ParetoFront of all of them. With `synth=K`, K front points,
spread along it by EBOPs, are calibrated and synthesized like `hgq report --synth` does (same functions),
which adds test accuracy, exact EBOPs and Yosys LUTs, and an accuracy-vs-LUTs panel.

Writes SWEEP_DIR/report/: sweep.md, sweep.json, sweep_pareto.png (and synth/TRIAL/epoch-N/).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..report import jsonable, markdown_table
from ..training.files import write_json_atomic, write_text_atomic
from .config import ConfigError
from .sweep import Trial, is_done
from .train import CHECKPOINTS, PARETO_METRICS, read_run

REPORT_DIR = 'report'


def collect(trials: list[Trial]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one summary per trial, every Pareto checkpoint of every trial as a point)."""
    from hgq.training import read_index

    summaries, points = [], []
    for t in trials:
        index = read_index(t.run_dir / CHECKPOINTS) if (t.run_dir / CHECKPOINTS).is_dir() else None
        entries = index['checkpoints'] if index else []
        summaries.append({'trial': t.name, 'overrides': t.overrides, 'done': is_done(t.run_dir),
                          'epochs_done': index['last_epoch'] if index else 0,
                          'epochs': t.config['training']['epochs'], 'checkpoints': len(entries)})
        for entry in entries:
            points.append({'trial': t.name, 'epoch': int(entry['epoch']),
                           'val_accuracy': float(entry['metrics']['val_accuracy']),
                           'ebops': float(entry['metrics']['ebops']),
                           'file': str(t.run_dir / CHECKPOINTS / entry['file'])})
    return summaries, points


def global_front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point of any trial beats on both val accuracy and EBOPs, cheapest first."""
    from hgq.training import ParetoFront

    front = ParetoFront(PARETO_METRICS)
    by_id = {}
    for p in sorted(points, key=lambda p: (p['trial'], p['epoch'])):  # ties keep the first, deterministically
        key = f'{p["trial"]}/{p["epoch"]}'
        by_id[key] = p
        front.add(key, p)
    return sorted((by_id[i] for i in front.ids()), key=lambda p: p['ebops'])


def spread(front: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """`k` front points evenly spaced by EBOPs rank (both ends included)."""
    if k <= 0 or not front:
        return []
    picks = sorted(set(np.linspace(0, len(front) - 1, num=min(k, len(front))).round().astype(int).tolist()))
    return [front[i] for i in picks]


def synthesize(points: list[dict[str, Any]], trials: list[Trial], out: Path, jobs: int) -> None:
    """Calibrate and `hgq synth` the given points, per trial with its own data and synth settings;
    adds test_accuracy, exact_ebops, LUT, FF, latency and mismatches to each point."""
    from .project import find_project
    from .report import evaluate_front, synthesize_rows

    by_name = {t.name: t for t in trials}
    for name in dict.fromkeys(p['trial'] for p in points):
        trial = by_name[name]
        run = read_run(trial.run_dir)
        data = find_project(run['project_dir']).load_data(run['config'])
        mine = [p for p in points if p['trial'] == name]
        epochs = {p['epoch'] for p in mine}
        entries = [{'file': Path(p['file']).name, 'epoch': p['epoch'],
                    'metrics': {'val_accuracy': p['val_accuracy'], 'ebops': p['ebops']}} for p in mine]
        models: dict[int, Any] = {}
        rows = [r for r in evaluate_front(trial.run_dir, data, entries, calibrated=models) if r['epoch'] in epochs]
        synthesize_rows(rows, models, run['config']['synth'], out / 'synth' / name, jobs)
        for p in mine:
            row = next(r for r in rows if r['epoch'] == p['epoch'])
            p.update({k: v for k, v in row.items() if k not in p})


def labels(summaries: list[dict[str, Any]]) -> dict[str, str]:
    """Per trial, the overrides that differ between trials (short keys): what tells the trials apart."""
    keys = sorted({k for s in summaries for k in s['overrides']})
    varying = [k for k in keys if len({repr(s['overrides'].get(k)) for s in summaries}) > 1]
    return {s['trial']: ', '.join(f'{k.split(".")[-1]}={s["overrides"].get(k)}' for k in varying) or s['trial']
            for s in summaries}


def plot(points: list[dict[str, Any]], front: list[dict[str, Any]], names: dict[str, str], path: Path,
         title: str) -> Path:
    """Accuracy vs EBOPs of every trial's checkpoints (one colour per trial), the global front as a line;
    a second panel of test accuracy vs LUTs for the synthesized front points."""
    from . import plots

    synthesized = [p for p in front if p.get('LUT') is not None]
    fig = plots._figure((12 if synthesized else 7, 4.8))
    axes = fig.subplots(1, 2 if synthesized else 1, squeeze=False)[0]
    ax = axes[0]
    trials = list(dict.fromkeys(p['trial'] for p in points))
    for name in trials:
        mine = [p for p in points if p['trial'] == name]
        ax.plot([p['ebops'] for p in mine], [p['val_accuracy'] for p in mine], 'o', ms=4, alpha=0.6,
                label=names.get(name, name) if len(trials) <= 12 else None)
    ax.step([p['ebops'] for p in front], [p['val_accuracy'] for p in front], 'k-', where='post', lw=1.5,
            label=f'global front ({len(front)} points)')
    ax.set_xscale('log')
    ax.set_xlabel('EBOPs (training)')
    ax.set_ylabel('validation accuracy')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=6, loc='lower right')
    ax.set_title(title, fontsize=10)
    if synthesized:
        s = sorted(synthesized, key=lambda p: p['LUT'])
        axes[1].plot([p['LUT'] for p in s], [p['test_accuracy'] for p in s], 'o-', color='tab:blue',
                     label='test accuracy (calibrated)')
        for p in s:
            axes[1].annotate(f' {names.get(p["trial"], p["trial"])} @{p["epoch"]}', (p['LUT'], p['test_accuracy']),
                             fontsize=6)
        axes[1].set_xscale('log')
        axes[1].set_xlabel('LUTs (Yosys synth_xilinx)')
        axes[1].set_ylabel('accuracy')
        axes[1].grid(alpha=0.3, which='both')
        axes[1].legend(fontsize=7, loc='lower right')
    for a in axes:  # log only over a decade or more: a narrower log axis gets no readable ticks
        low, high = a.get_xlim()
        if high < 10 * low:
            a.set_xscale('linear')
    return plots._save(fig, path)


def front_markdown(front: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> str:
    overrides = {s['trial']: s['overrides'] for s in summaries}
    synthesized = any('LUT' in p for p in front)
    header = ['#', 'trial', 'epoch', 'val acc', 'EBOPs', 'overrides']
    if synthesized:
        header += ['test acc', 'LUT', 'latency', 'RTL mismatches']
    body = []
    for n, p in enumerate(front, 1):
        line = [n, p['trial'], p['epoch'], f'{p["val_accuracy"]:.4f}', p['ebops'],
                ', '.join(f'{k}={v}' for k, v in overrides[p['trial']].items())]
        if synthesized:
            line += [f'{p["test_accuracy"]:.4f}' if 'test_accuracy' in p else None, p.get('LUT'),
                     None if 'LUT' not in p else f'{p["latency_cycles"]} cycles = {p["latency_ns"]:g} ns',
                     None if p.get('mismatches') is None else f'{p["mismatches"]} / {p["checked_outputs"]:,}']
        body.append(line)
    return markdown_table(header, body)


def write_sweep_report(trials: list[Trial], out_dir: str | Path, synth: int = 0, jobs: int = 2,
                       title: str = 'sweep') -> dict[str, Any]:
    """Collect, merge, (synthesize,) plot and write OUT_DIR/report/; returns the report dict."""
    out = Path(out_dir) / REPORT_DIR
    summaries, points = collect(trials)
    if not points:
        raise ConfigError(f'{out_dir}: no trial has a Pareto checkpoint yet (run the sweep first)')
    start = time.perf_counter()
    front = global_front(points)
    out.mkdir(parents=True, exist_ok=True)
    if synth:
        synthesize(spread(front, synth), trials, out, jobs)
    plot(points, front, labels(summaries), out / 'sweep_pareto.png',
         f'{title}: {len(points)} checkpoints of {len(trials)} trials')
    done = sum(s['done'] for s in summaries)
    report = {'sweep_dir': str(out_dir), 'written': time.strftime('%Y-%m-%d %H:%M:%S'), 'trials': summaries,
              'points': points, 'front': front, 'seconds': round(time.perf_counter() - start, 1)}
    write_json_atomic(out / 'sweep.json', jsonable(report))
    unfinished = [s for s in summaries if not s['done']]
    lines = [f'# hgq sweep report: {out_dir}', '',
             f'{done} of {len(trials)} trials done; {len(points)} Pareto checkpoints in all, {len(front)} on the '
             f'global front (val accuracy max, EBOPs min, as logged in training). Written {report["written"]}.', '',
             '## Global front', '', front_markdown(front, summaries), '', '![accuracy vs EBOPs](sweep_pareto.png)', '',
             '## Trials', '',
             markdown_table(['trial', 'done', 'epochs', 'checkpoints', 'overrides'],
                            [[s['trial'], 'yes' if s['done'] else 'no', f'{s["epochs_done"]}/{s["epochs"]}',
                              s['checkpoints'], json.dumps(s['overrides'])] for s in summaries]), '']
    if unfinished:
        lines += [f'{len(unfinished)} trials are not done; run the same `hgq sweep` command again to finish them.', '']
    write_text_atomic(out / 'sweep.md', '\n'.join(lines))
    return report
