"""`hgq report RUN_DIR`: the Pareto checkpoints of a training run, evaluated exactly, with plots.

Every checkpoint is calibrated on training data (activation ranges, as before export), then its exact
EBOPs and its test accuracy are measured on the calibrated model (whose inference equals the fixed-point
emulator bit for bit). One checkpoint is *chosen*: by default the cheapest whose validation accuracy is
within `tolerance` of the best one (validation, so the test set stays unbiased). With `synth=K`, K
checkpoints (the chosen one and others spread along the front) go through `hgq synth` for Yosys LUTs,
FFs and latency, and the front is also plotted against LUTs.

Writes RUN_DIR/report/: report.md, report.json, chosen-epoch-N-calibrated.keras (ready to export),
pareto.png, bitwidths.png, weight_bits.png, history.png, beta.png (models with ASQ quantizers: β per sample
over the test set),
and synth/epoch-N/ for synthesized checkpoints.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..report import ebops_per_layer, jsonable, layers_table, markdown_table, weight_bits
from ..training.files import save_model_atomic, write_json_atomic, write_text_atomic
from . import plots
from .config import ConfigError
from .files import load_checkpoint
from .train import CHECKPOINTS, FLOAT_FILE, HISTORY_FILE, read_run

CALIBRATION_SAMPLES = 20_000


def pareto_table(index: dict[str, Any]) -> str:
    """Plain-text table of a Pareto index (as training leaves it), most accurate first."""
    rows = sorted(index['checkpoints'], key=lambda c: -c['metrics']['val_accuracy'])
    lines = [f'{"epoch":>6} {"val_acc":>8} {"EBOPs":>12}']
    lines += [f'{c["epoch"]:>6} {c["metrics"]["val_accuracy"]:>8.4f} {c["metrics"]["ebops"]:>12,.0f}' for c in rows]
    return '\n'.join(lines)


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """history.csv as columns of floats (empty when there is none)."""
    path = run_dir / HISTORY_FILE
    if not path.is_file():
        return {}
    with open(path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(float(value) if value not in ('', None) else float('nan'))
    if 'epoch' in columns:
        columns['epoch'] = [e + 1 for e in columns['epoch']]  # Keras logs 0-based epochs; ours are 1-based
    return columns


def load_calibrated(path: Path, x_calibration: np.ndarray) -> Any:
    from hgq.training import calibrate

    model = load_checkpoint(path)
    calibrate(model, x_calibration)
    return model


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.predict(x, batch_size=4096, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def evaluate_front(run_dir: Path, data: Any, checkpoints: list[dict[str, Any]],
                   calibrated: dict[int, Any] | None = None) -> list[dict[str, Any]]:
    """One row per checkpoint, cheapest first: epoch, file, val_accuracy and ebops (as trained), exact_ebops and
    test_accuracy (calibrated). Pass a dict as `calibrated` to keep the calibrated models by epoch (reused for
    synthesis and plots instead of calibrating again)."""
    from tqdm.auto import tqdm

    from hgq.training import exact_ebops

    x_cal = data.x_train[:CALIBRATION_SAMPLES]
    rows = []
    for entry in tqdm(sorted(checkpoints, key=lambda c: c['metrics']['ebops']), desc='calibrating checkpoints',
                      unit='ckpt', leave=False):
        model = load_calibrated(run_dir / CHECKPOINTS / entry['file'], x_cal)
        if calibrated is not None:
            calibrated[int(entry['epoch'])] = model
        rows.append({'epoch': int(entry['epoch']), 'file': str(run_dir / CHECKPOINTS / entry['file']),
                     'val_accuracy': float(entry['metrics']['val_accuracy']),
                     'ebops': float(entry['metrics']['ebops']),
                     'exact_ebops': float(exact_ebops(model)),
                     'test_accuracy': _accuracy(model, data.x_test, data.y_test)})
    return rows


def choose(rows: list[dict[str, Any]], tolerance: float, epoch: int | None = None) -> dict[str, Any]:
    """The row of `epoch`, or the cheapest row whose val accuracy is within `tolerance` of the best."""
    if epoch is not None:
        match = [r for r in rows if r['epoch'] == epoch]
        if not match:
            raise ConfigError(f'epoch {epoch} is not a Pareto checkpoint of this run; '
                              f'choose one of {sorted(r["epoch"] for r in rows)}')
        return match[0]
    best = max(r['val_accuracy'] for r in rows)
    return min((r for r in rows if r['val_accuracy'] >= best - tolerance), key=lambda r: r['exact_ebops'])


def weighted_layers(graph: Any) -> list[dict[str, Any]]:
    """Per dense/conv node of a calibrated IR graph: name, per-weight bits (0 = pruned), input bits."""
    from hgq.ir.analysis import analyze

    infos = analyze(graph)
    layers = []
    for node in graph.nodes:
        if node.op not in ('dense', 'conv'):
            continue
        x = infos[node.inputs[0]]
        layers.append({'name': node.source or node.name,
                       'weight_bits': weight_bits(node.attrs['weight'], node.attrs['weight_fmt']),
                       'input_bits': np.broadcast_to(x.fmt.width, x.lo.shape).astype(np.float64)})
    return layers


def beta_distributions(model: Any, x: np.ndarray, batch_size: int = 4096) -> list[dict[str, Any]]:
    """Per ASQ quantizer of `model` (docs/quantizers.md "## ASQ"): its per-sample β over `x` (values, and their
    min, median, max, distinct count). β is recorded while the model runs eagerly in inference mode, so it is the
    β the quantizer used, whatever layer holds it."""
    import keras

    from hgq.layers.asq import ASQQuantizer

    found = [q for q in model._flatten_layers(include_self=False, recursive=True) if isinstance(q, ASQQuantizer)]
    if not found:
        return []
    record: dict[int, list[np.ndarray]] = {id(q): [] for q in found}
    original = ASQQuantizer.beta

    def recording(self: Any, inputs: Any, training: bool | None = None) -> Any:
        out = original(self, inputs, training=training)
        if id(self) in record:
            record[id(self)].append(np.asarray(keras.ops.convert_to_numpy(out)).reshape(-1))
        return out

    ASQQuantizer.beta = recording
    try:
        for start in range(0, len(x), batch_size):
            model(x[start: start + batch_size], training=False)
    finally:
        ASQQuantizer.beta = original
    rows = []
    for q in found:
        values = np.concatenate(record[id(q)]) if record[id(q)] else np.zeros(0)
        rows.append({'quantizer': q.name, 'samples': int(values.size), 'values': values,
                     'min': float(values.min(initial=np.inf)), 'median': float(np.median(values)) if values.size
                     else float('nan'), 'max': float(values.max(initial=-np.inf)),
                     'distinct': int(np.unique(values).size)})
    return rows


def beta_table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(['ASQ quantizer', 'test samples', 'min β', 'median β', 'max β', 'distinct β'],
                          [[r['quantizer'], r['samples'], r['min'], r['median'], r['max'], r['distinct']]
                           for r in rows])


def _spread(rows: list[dict[str, Any]], chosen: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """`k` rows: the chosen one and the rest evenly spaced along the front (by rank in EBOPs)."""
    if k <= 0:
        return []
    picks = {chosen['epoch']}
    for i in np.linspace(0, len(rows) - 1, num=min(k, len(rows))).round().astype(int):
        if len(picks) >= min(k, len(rows)):
            break
        picks.add(rows[int(i)]['epoch'])
    return [r for r in rows if r['epoch'] in picks]


def synthesize_rows(rows: list[dict[str, Any]], calibrated: dict[int, Any], synth_config: dict[str, Any],
                    out_dir: Path, jobs: int) -> None:
    """`hgq synth` each row's calibrated model (by epoch); adds LUT, FF, latency and mismatches to the row."""
    from .synth import SynthSettings, require_tools, synthesize_model

    require_tools()
    for n, row in enumerate(rows, 1):
        print(f'\n=== synthesizing checkpoint {n}/{len(rows)}: epoch {row["epoch"]} '
              f'({row["exact_ebops"]:,.0f} EBOPs) ===', flush=True)
        model = calibrated[row['epoch']]
        settings = SynthSettings(str(out_dir / f'epoch-{row["epoch"]:05d}'), float(synth_config['clock_ns']),
                                 float(synth_config['latency_cutoff']), int(synth_config['check']), jobs=jobs,
                                 checkpoint=row['file'], calibration=f'first {CALIBRATION_SAMPLES:,} training samples')
        report, paths = synthesize_model(model, settings)
        s, lat, check = report['synthesis'], report['latency'], report['check']
        row.update({'LUT': s['LUT'], 'FF': s['FF'], 'CARRY4': s['CARRY4'], 'latency_cycles': lat['cycles'],
                    'latency_ns': lat['latency_ns'], 'mismatches': (check or {}).get('mismatches'),
                    'checked_outputs': (check or {}).get('outputs'), 'synth_report': str(paths['md'])})


def front_table(rows: list[dict[str, Any]], chosen: dict[str, Any]) -> str:
    synthesized = any('LUT' in r for r in rows)
    header = ['epoch', 'val acc', 'test acc', 'EBOPs (training)', 'EBOPs (exact)']
    if synthesized:
        header += ['LUT', 'FF', 'latency', 'RTL mismatches']
    body = []
    for r in sorted(rows, key=lambda r: -r['exact_ebops']):
        line = [f'**{r["epoch"]}**' if r is chosen else r['epoch'], f'{r["val_accuracy"]:.4f}',
                f'{r["test_accuracy"]:.4f}', r['ebops'], r['exact_ebops']]
        if synthesized:
            line += [r.get('LUT'), r.get('FF'),
                     None if 'LUT' not in r else f'{r["latency_cycles"]} cycles = {r["latency_ns"]:g} ns',
                     None if r.get('mismatches') is None else f'{r["mismatches"]} / {r["checked_outputs"]:,}']
        body.append(line)
    return markdown_table(header, body)


def markdown(report: dict[str, Any]) -> str:
    fl, chosen = report['float'], report['chosen']
    rows_by_epoch = {r['epoch']: r for r in report['front']}
    chosen_row = rows_by_epoch[chosen['epoch']]
    parts = [
        f'# hgq report: {report["run_dir"]}',
        '',
        f'Project `{report["project"]}`, backend {report["backend"]}, {report["epochs_done"]} epochs; '
        f'beta {report["config"]["training"]["beta"]}. Written {report["written"]}.',
        '',
        ('Float baseline (same model, float32): '
         f'val accuracy {fl["val_accuracy"]:.4f}, test accuracy {fl["test_accuracy"]:.4f} '
         f'({fl["epochs"]} epochs).' if fl else 'No float baseline (training.float_epochs = 0).'),
        '',
        f'## Pareto front ({len(report["front"])} checkpoints)',
        '',
        'Each checkpoint calibrated on the first '
        f'{report["calibration_samples"]:,} training samples; test accuracy and exact EBOPs of the calibrated '
        'model (bit-exact with the fixed-point emulator). **Bold**: the chosen checkpoint '
        f'({chosen["rule"]}).',
        '',
        front_table(report['front'], chosen_row),
        '',
        '![accuracy vs EBOPs](pareto.png)',
        '',
        f'## Chosen checkpoint: epoch {chosen["epoch"]}',
        '',
        f'`{chosen_row["file"]}`: test accuracy {chosen_row["test_accuracy"]:.4f}, '
        f'{chosen_row["exact_ebops"]:,.0f} EBOPs. Calibrated copy: `{chosen["calibrated_file"]}`; export it with '
        f'`hgq export {chosen["calibrated_file"]} --to hls4ml OUT`, RTL: `hgq synth {chosen["calibrated_file"]} OUT`.',
        '',
        layers_table(report['chosen_layers']),
        '',
        '![bit-width histograms](bitwidths.png)',
        '',
        '![per-weight bit-widths](weight_bits.png)',
        '',
        *([f'## ASQ: β over the test set ({len(report["asq_beta"])} quantizers)', '',
           beta_table(report['asq_beta']), '', '![beta histograms](beta.png)', ''] if report.get('asq_beta') else []),
        '## Training history',
        '',
        '![history](history.png)',
        '',
    ]
    return '\n'.join(parts)


def write_run_report(run_dir: str | Path, epoch: int | None = None, tolerance: float = 0.01, synth: int = 0,
                     jobs: int = 2) -> dict[str, Any]:
    """Evaluate, choose, optionally synthesize, plot, and write RUN_DIR/report/; returns the report dict."""
    from hgq import ir
    from hgq.training import read_index

    from .project import find_project

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    index = read_index(run_dir / CHECKPOINTS)
    if index is None or not index['checkpoints']:
        raise ConfigError(f'{run_dir} has no Pareto checkpoints yet (train first: hgq train {run["project"]})')
    project = find_project(run['project_dir'])
    data = project.load_data(run['config'])
    float_path = run_dir / FLOAT_FILE
    float_result = json.loads(float_path.read_text(encoding='utf-8')) if float_path.is_file() else None

    start = time.perf_counter()
    models: dict[int, Any] = {}
    rows = evaluate_front(run_dir, data, index['checkpoints'], calibrated=models)
    chosen = choose(rows, tolerance, epoch)
    rule = f'epoch {epoch}, as asked' if epoch is not None else (
        f'the fewest EBOPs with val accuracy within {tolerance:g} of the best')
    out = run_dir / 'report'
    out.mkdir(parents=True, exist_ok=True)
    if synth:
        synthesize_rows(_spread(rows, chosen, synth), models, run['config']['synth'], out / 'synth', jobs)

    model = models[chosen['epoch']]
    calibrated = out / f'chosen-epoch-{chosen["epoch"]:05d}-calibrated.keras'
    for stale in out.glob('chosen-epoch-*-calibrated.keras'):
        stale.unlink()
    save_model_atomic(model, calibrated)  # ready for hgq export / hgq synth without --calibration
    graph = ir.from_model(model)
    layers = weighted_layers(graph)
    title = f'{run["project"]}: epoch {chosen["epoch"]}, {chosen["exact_ebops"]:,.0f} EBOPs'
    plots.plot_front(rows, float_result, chosen['epoch'], out / 'pareto.png', f'{run["project"]}: Pareto front')
    plots.plot_bit_histograms(layers, out / 'bitwidths.png', title)
    plots.plot_weight_map(layers, out / 'weight_bits.png', title)
    betas = beta_distributions(model, data.x_test)
    if betas:
        plots.plot_beta_histograms(betas, out / 'beta.png', f'{title}: ASQ β over the test set')
    history = read_history(run_dir)
    if history:
        plots.plot_history(history, out / 'history.png', f'{run["project"]}: training')
    report = {
        'run_dir': str(run_dir), 'project': run['project'], 'backend': run['backend'], 'config': run['config'],
        'epochs_done': index['last_epoch'], 'written': time.strftime('%Y-%m-%d %H:%M:%S'), 'float': float_result,
        'calibration_samples': min(CALIBRATION_SAMPLES, len(data.x_train)), 'front': rows,
        'chosen': {'epoch': chosen['epoch'], 'rule': rule, 'calibrated_file': str(calibrated)},
        'chosen_layers': ebops_per_layer(graph),
        'asq_beta': [{k: v for k, v in b.items() if k != 'values'} for b in betas],
        'seconds': round(time.perf_counter() - start, 1),
    }
    write_json_atomic(out / 'report.json', jsonable(report))
    write_text_atomic(out / 'report.md', markdown(report))
    return report


__all__ = ['beta_distributions', 'choose', 'evaluate_front', 'front_table', 'pareto_table', 'write_run_report']
