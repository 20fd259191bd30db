"""QKeras flow vs ours (jets MLP, Fashion-MNIST CNN): accuracy, hls4ml's exactness, LUTs at matched accuracy.

`--project jets` (default): the MLP 16-64-32-32-5; `--project fashion_mnist`: the CNN of projects/fashion_mnist.
Stages (each cached in --work, so an interrupted run continues):
1. the project's split (the same train/val/test arrays for everyone) -> split.npz;
2. QKeras at uniform 4, 6, 8 bits, trained in the Keras 2 venv (bench/peers/qkeras_jets.py, qkeras_fmnist.py):
   accuracy, and hls4ml 1.3's own conversion (granularity='name', Vitis, io_parallel for the MLP, io_stream for
   the CNN), C-simulated: outputs != QKeras;
3. our import (`hgq import-qkeras`): outputs == QKeras on the test set (count);
4. HGQ from scratch: `hgq train PROJECT` with the same optimizer, schedule, batch size and epochs;
5. HGQ fine-tuned from each imported model: `hgq train PROJECT --init imported.keras`;
6. `hgq synth` (RTL, Verilator against the emulator, Yosys synth_xilinx) of: each imported QKeras model; for
   each QKeras model, the cheapest (EBOPs) Pareto checkpoint of the HGQ runs whose validation accuracy
   reaches the QKeras model's (matched accuracy), from scratch and fine-tuned from that model;
7. a table, bench/results/qkeras_peer.json and bench/results/qkeras_peer.png (LUTs vs accuracy).

Usage: nice -n 10 python bench/qkeras_peer.py [--project jets] [--epochs 20] [--ft-epochs 20] [--qkeras-python PY]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_info  # noqa: E402

QKERAS_PYTHON = REPO / '.peers' / 'qkeras2-hls4ml' / 'bin' / 'python'
#: per project: the QKeras script (bench/peers), the beta ramp of the short HGQ runs, the plot's title
PROJECTS: dict[str, dict[str, Any]] = {
    # a steeper beta ramp than the project's 200-epoch recipe, so that 20 epochs trace a front from QKeras-8b
    # accuracy down to far fewer EBOPs
    'jets': {'script': 'qkeras_jets.py', 'beta': (1.0e-6, 1.0e-2), 'title': 'jets MLP'},
    # the CNN has ~10x the EBOPs of the MLP: a ramp 100x lower (projects/fashion_mnist: 1e-8 -> 3e-6 over 40)
    'fashion_mnist': {'script': 'qkeras_fmnist.py', 'beta': (1.0e-7, 1.0e-5), 'title': 'Fashion-MNIST CNN'},
}
#: matched accuracy: an HGQ checkpoint matches a QKeras model when its validation accuracy is at most this far below
TOLERANCE = 0.005
PAPER_CLAIM = 'HGQ paper (arXiv 2405.00645): up to 20x fewer resources than QKeras-trained models at similar accuracy'


def _config(name: str, epochs: int, lr: float | None = None) -> dict[str, Any]:
    from hgq.workflow import find_project

    config = find_project(name).config(None)
    config['training']['epochs'] = epochs
    config['training']['float_epochs'] = 0
    beta = PROJECTS[name]['beta']
    config['training']['beta'] = {'schedule': 'log', 'start': beta[0], 'end': beta[1]}
    if lr is not None:
        config['training']['optimizer']['learning_rate'] = lr
    return config


def stage_split(work: Path, name: str) -> Path:
    path = work / 'split.npz'
    if not path.is_file():
        from hgq.workflow import find_project

        project = find_project(name)
        d = project.load_data(project.config(None))
        np.savez(path, **{f'{a}_{s}': getattr(d, f'{a}_{s}') for a in 'xy' for s in ('train', 'val', 'test')})
    return path


def stage_qkeras(work: Path, name: str, python: Path, bits: list[int], epochs: int) -> dict[str, Any]:
    out = work / 'qkeras'
    path = out / 'qkeras.json'
    if not path.is_file():
        if not python.is_file():
            raise SystemExit(f'{python}: no QKeras venv; make one with tensorflow-cpu==2.15.1 qkeras==0.9.0 '
                             'hls4ml==1.3.0 (docs/benchmarks.md, "QKeras flow vs ours")')
        cmd = [str(python), str(REPO / 'bench/peers' / PROJECTS[name]['script']), '--data', str(work / 'split.npz'),
               '--out', str(out), '--epochs', str(epochs), '--bits', *map(str, bits)]
        print('$', ' '.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return json.loads(path.read_text())


def stage_import(work: Path, row: dict[str, Any], x_test: np.ndarray) -> dict[str, Any]:
    from hgq.importers.qkeras import import_qkeras
    from hgq.training.files import save_model_atomic

    bits = row['bits']
    out = work / 'imported' / f'qkeras_{bits}b.keras'
    model = import_qkeras(work / 'qkeras' / f'qkeras_{bits}b.h5')
    out.parent.mkdir(exist_ok=True)
    if not out.is_file():
        save_model_atomic(model, out)
    ref = np.load(work / 'qkeras' / f'qkeras_{bits}b_test_outputs.npy')
    got = np.asarray(model.predict(x_test, verbose=0, batch_size=4096), dtype=np.float64)
    return {'path': str(out), 'outputs': int(ref.size), 'mismatches': int((got != ref).sum())}


def stage_train(work: Path, project: str, name: str, epochs: int, init: Path | None = None,
                lr: float | None = None) -> dict[str, Any]:
    from hgq.workflow import find_project, train

    run = work / name
    start = time.perf_counter()
    index = train(find_project(project), _config(project, epochs, lr), run, init=init)
    return {'run': str(run), 'index': index, 'seconds': round(time.perf_counter() - start, 1)}


def matched(index: dict[str, Any], val_accuracy: float) -> dict[str, Any] | None:
    """The Pareto checkpoint with the fewest EBOPs whose validation accuracy reaches `val_accuracy` - TOLERANCE."""
    ok = [c for c in index['checkpoints'] if c['metrics']['val_accuracy'] >= val_accuracy - TOLERANCE]
    return min(ok, key=lambda c: c['metrics']['ebops']) if ok else None


def synth(work: Path, name: str, checkpoint: Path, calibrate: bool, x_train: np.ndarray, check: int,
          jobs: int, trace_only: bool | str, yosys: list[str] = ()) -> dict[str, Any]:
    """`hgq synth` of one checkpoint (cached): LUT/FF/latency, Verilator mismatches, IR EBOPs.

    check == 0: Yosys counts only. trace_only (and nothing cached, `name` not matched by a pattern of `yosys`):
    da4ml's LUT estimate and latency, no Yosys; trace_only == 'ebops': the IR's EBOPs only (no da4ml trace: a
    QKeras CNN's can outlast the session). A check of bench/qkeras_peer_verilate.py (WORK/verilator/NAME.json:
    the same RTL, a port narrowed to 32 bits where da4ml's harness needs it) fills the Verilator columns."""
    result = _synth(work, name, checkpoint, calibrate, x_train, check, jobs,
                    False if any(fnmatch.fnmatch(name, y) for y in yosys) else trace_only)
    verilated = work / 'verilator' / f'{name}.json'
    if result['verilator_outputs'] is None and verilated.is_file():
        v = json.loads(verilated.read_text())
        result |= {'verilator_outputs': v['outputs'], 'verilator_mismatches': v['mismatches'],
                   'verilator_port': v['narrowed_port'] or v['default_port'],
                   'verilator_build_s': v['timings_s'].get('verilator_build')}
    return result


def _synth(work: Path, name: str, checkpoint: Path, calibrate: bool, x_train: np.ndarray, check: int,
           jobs: int, trace_only: bool | str) -> dict[str, Any]:
    from hgq.workflow.files import load_checkpoint
    from hgq.workflow.synth import SynthSettings, synthesize_model

    out = work / 'synth' / name
    cached = out / 'report.json'
    if not cached.is_file() and trace_only == 'ebops':
        return _trace_only(work, name, checkpoint, calibrate, x_train, rtl=False)
    if not cached.is_file() and trace_only:
        return _trace_only(work, name, checkpoint, calibrate, x_train)
    if not cached.is_file():
        settings = SynthSettings(out_dir=str(out), clock_ns=5.0, latency_cutoff=5, check=check, jobs=jobs,
                                 checkpoint=str(checkpoint), calibration='x_train' if calibrate else None,
                                 counts_only=check == 0)
        synthesize_model(load_checkpoint(checkpoint, compile=False), settings, x_train if calibrate else None)
    report = json.loads(cached.read_text())
    check_ = report.get('check') or {}
    return {'LUT': report['synthesis']['LUT'], 'FF': report['synthesis']['FF'], 'source': 'yosys',
            'da4ml_luts': round(report['da4ml']['cost_luts']),
            'latency_cycles': report['latency']['cycles'], 'latency_ns': report['latency']['latency_ns'],
            'ebops': report['ebops']['ir_total'], 'verilator_outputs': check_.get('outputs'),
            'verilator_mismatches': check_.get('mismatches'), 'yosys_s': report['timings_s'].get('yosys'),
            'trace_s': report['timings_s'].get('tracing')}


def _trace_only(work: Path, name: str, checkpoint: Path, calibrate: bool, x_train: np.ndarray,
                rtl: bool = True) -> dict[str, Any]:
    """da4ml's LUT estimate and latency of a design that Yosys has not run on (no LUT/FF counts).

    Cached in WORK/trace/NAME.json: a CNN's trace takes minutes."""
    cached = work / 'trace' / f'{name}.json'
    if rtl and cached.is_file():
        return json.loads(cached.read_text())
    from hgq import ir
    from hgq import report as rep
    from hgq.export.rtl import write_rtl
    from hgq.training import calibrate as calibrate_model
    from hgq.workflow.files import load_checkpoint

    model = load_checkpoint(checkpoint, compile=False)
    if calibrate:
        calibrate_model(model, x_train)
    graph = ir.from_model(model)
    out: dict[str, Any] = {'LUT': None, 'FF': None, 'source': 'EBOPs only', 'da4ml_luts': None,
                           'latency_cycles': None, 'latency_ns': None}
    if rtl:
        start = time.perf_counter()
        prj = write_rtl(graph, Path('/tmp') / f'qkeras_peer_trace_{checkpoint.stem}', 'hgq_model', latency_cutoff=5,
                        clock_period=5.0, write=False)
        out |= {'source': 'da4ml estimate', 'da4ml_luts': round(float(prj.comb.cost)),
                'latency_cycles': prj.latency.cycles, 'latency_ns': prj.latency.ns,
                'trace_s': round(time.perf_counter() - start, 1)}
    out = {**out, 'ebops': round(sum(r['ebops'] for r in rep.ebops_per_layer(graph)), 3), 'verilator_outputs': None,
           'verilator_mismatches': None, 'yosys_s': None}
    if rtl:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(out, indent=1))
    return out


def accuracy(checkpoint: Path, x: np.ndarray, y: np.ndarray, x_cal: np.ndarray | None) -> float:
    from hgq.training import calibrate
    from hgq.workflow.files import load_checkpoint

    model = load_checkpoint(checkpoint, compile=False)
    if x_cal is not None:
        calibrate(model, x_cal)
    return float(np.mean(np.argmax(np.asarray(model.predict(x, verbose=0, batch_size=4096)), 1) == y))


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ebops = not any(r['LUT'] or r['da4ml_luts'] for r in rows)
    styles = {'QKeras (imported)': ('s', 'C3'), 'HGQ from scratch': ('o', 'C0'), 'HGQ fine-tuned': ('^', 'C2')}
    for flow, (marker, color) in styles.items():
        pts = [(r['ebops'] if ebops else r['LUT'] or r['da4ml_luts'], r['test_accuracy'],
                r['label'] + ('' if r['LUT'] or ebops else ' (da4ml est.)'))
               for r in rows if r['flow'] == flow]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=flow, zorder=3)
            for lut, acc, label in pts:
                ax.annotate(label, (lut, acc), textcoords='offset points', xytext=(4, -10), fontsize=7)
    ax.set_xscale('log')
    ax.set_xlabel('EBOPs (no RTL: --ebops-only)' if ebops else 'LUTs (Yosys synth_xilinx)')
    ax.set_ylabel('test accuracy')
    ax.set_title(f'{title}: QKeras uniform bits vs HGQ (same flow: RTL, Verilator, Yosys)', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title='ratios: table in docs/benchmarks.md; paper claim: up to 20x', title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=20, help='QKeras and HGQ-from-scratch epochs (default 20)')
    p.add_argument('--ft-epochs', type=int, default=20, help='fine-tuning epochs (default 20)')
    p.add_argument('--ft-lr', type=float, default=5e-4,
                   help='fine-tuning learning rate (default 5e-4; from scratch and QKeras: 3e-3, the project\'s)')
    p.add_argument('--bits', type=int, nargs='+', default=[4, 6, 8])
    p.add_argument('--check', type=int, default=10_000,
                   help='random inputs through Verilator per imported QKeras design (0: Yosys counts only)')
    p.add_argument('--hgq-check', type=int, default=0,
                   help='the same for the HGQ designs (default 0: Yosys counts only; tests hold their exactness)')
    p.add_argument('--jobs', type=int, default=2, help='processes per hgq synth (Yosys beside Verilator)')
    p.add_argument('--trace-only', action='store_true',
                   help='no new Yosys runs: designs without a cached report get da4ml\'s LUT estimate')
    p.add_argument('--yosys', nargs='+', default=[], metavar='PATTERN',
                   help='designs (qkeras_4b, scratch_*, ft_6b_*; shell patterns) that get Yosys even with '
                        '--trace-only / --ebops-only (e.g. the cheapest CNN design, to check da4ml\'s estimate)')
    p.add_argument('--ebops-only', action='store_true',
                   help='no RTL at all for designs without a cached report: EBOPs and accuracy only')
    p.add_argument('--qkeras-python', type=Path, default=QKERAS_PYTHON)
    p.add_argument('--project', choices=sorted(PROJECTS), default='jets')
    p.add_argument('--work', type=Path, help='the cache (default runs/qkeras_peer, runs/qkeras_peer_fashion_mnist)')
    p.add_argument('--json', type=Path, help='default bench/results/qkeras_peer[_fashion_mnist].json')
    p.add_argument('--png', type=Path, help='default: the --json path with .png')
    args = p.parse_args(argv)
    if args.ebops_only:
        args.trace_only = 'ebops'
    suffix = '' if args.project == 'jets' else f'_{args.project}'
    args.work = args.work or REPO / 'runs' / f'qkeras_peer{suffix}'
    args.json = args.json or REPO / 'bench/results' / f'qkeras_peer{suffix}.json'
    args.png = args.png or args.json.with_suffix('.png')
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with np.load(stage_split(args.work, args.project)) as z:
        d = {k: z[k] for k in z.files}
    qk = stage_qkeras(args.work, args.project, args.qkeras_python, args.bits, args.epochs)
    scratch = stage_train(args.work, args.project, 'hgq_scratch', args.epochs)
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    for q in qk['results']:
        bits = q['bits']
        if bits not in args.bits:
            continue
        imp = stage_import(args.work, q, d['x_test'])
        s_imp = synth(args.work, f'qkeras_{bits}b', Path(imp['path']), False, d['x_train'], args.check, args.jobs,
                      args.trace_only, args.yosys)
        qrow = {'flow': 'QKeras (imported)', 'label': f'{bits}b', 'bits': bits, 'val_accuracy': q['val_accuracy'],
                'test_accuracy': q['test_accuracy'], 'hls4ml': q.get('hls4ml'), 'import': imp, **s_imp}
        rows.append(qrow)
        ft = stage_train(args.work, args.project, f'hgq_finetuned_{bits}b', args.ft_epochs, init=Path(imp['path']),
                         lr=args.ft_lr)
        for flow, run in (('HGQ from scratch', scratch), ('HGQ fine-tuned', ft)):
            c = matched(run['index'], q['val_accuracy'])
            hit = c is not None
            if not hit:  # the run's most accurate checkpoint, reported as below the QKeras model's accuracy
                c = max(run['index']['checkpoints'], key=lambda c: c['metrics']['val_accuracy'])
            ckpt = Path(run['run']) / 'checkpoints' / c['file']
            kind = 'match' if hit else 'best'
            name = f'{"scratch" if flow.endswith("scratch") else "ft"}_{bits}b_{kind}_e{c["epoch"]}'
            s = synth(args.work, name, ckpt, True, d['x_train'], args.hgq_check, args.jobs, args.trace_only,
                      args.yosys)
            acc = accuracy(ckpt, d['x_test'], d['y_test'], d['x_train'])
            label = f'≥{bits}b e{c["epoch"]}' if flow.endswith('scratch') else f'from {bits}b e{c["epoch"]}'
            rows.append({'flow': flow, 'label': label + ('' if hit else ' (below)'), 'bits': bits,
                         'epoch': c['epoch'], 'matched': hit, 'val_accuracy': c['metrics']['val_accuracy'],
                         'test_accuracy': acc, **s})
            ratios.append({'bits': bits, 'flow': flow, 'matched': hit, 'epoch': c['epoch'],
                           'val_accuracy_gap': round(c['metrics']['val_accuracy'] - q['val_accuracy'], 4),
                           'lut_ratio': round(qrow['LUT'] / s['LUT'], 2) if qrow['LUT'] and s['LUT'] else None,
                           'da4ml_lut_ratio': round(qrow['da4ml_luts'] / s['da4ml_luts'], 2)
                           if qrow['da4ml_luts'] and s['da4ml_luts'] else None,
                           'ebops_ratio': round(qrow['ebops'] / max(s['ebops'], 1e-9), 2)})
    print_table(rows, ratios)
    command = ' '.join(['python', 'bench/qkeras_peer.py', *(argv or sys.argv[1:])])
    result = {'machine': machine_info(), 'command': command,
              'epochs': args.epochs, 'ft_epochs': args.ft_epochs, 'ft_lr': args.ft_lr,
              'project': args.project, 'beta': PROJECTS[args.project]['beta'],
              'tolerance': TOLERANCE, 'qkeras_versions': qk.get('versions'),
              'paper_claim': PAPER_CLAIM, 'rows': rows, 'ratios': ratios,
              'seconds': round(time.perf_counter() - started, 1)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    plot(rows, args.png, PROJECTS[args.project]['title'])
    print(f'wrote {args.json} and {args.png}')


def print_table(rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> None:
    head = f'{"flow":<18} {"model":<14} {"val acc":>8} {"test acc":>8} {"EBOPs":>9} {"LUT":>7} {"da4ml":>7} ' \
           f'{"FF":>6} {"cycles":>6} {"verilator":>11} {"hls4ml !=":>12}'
    print(head)
    print('-' * len(head))
    for r in rows:
        v = f'{r["verilator_mismatches"]}/{r["verilator_outputs"]}' if r.get('verilator_outputs') else '-'
        h = r.get('hls4ml')
        hs = f'{h["mismatches"]}/{h["outputs"]}' if h else ''
        print(f'{r["flow"]:<18} {r["label"]:<14} {r["val_accuracy"]:>8.4f} {r["test_accuracy"]:>8.4f} '
              f'{r["ebops"]:>9.0f} {r["LUT"] or "-":>7} {r["da4ml_luts"] or "-":>7} {r["FF"] or "-":>6} '
              f'{r["latency_cycles"] or "-":>6} {v:>11} {hs:>12}')
    print()
    for r in ratios:
        print(f'{r["bits"]}-bit QKeras vs {r["flow"]} (epoch {r["epoch"]}): {r["lut_ratio"] or "-"}x fewer Yosys '
              f'LUTs ({r["da4ml_lut_ratio"] or "-"}x da4ml estimate), {r["ebops_ratio"]}x fewer EBOPs'
              + ('' if r['matched'] else f'; NOT matched: no checkpoint reaches its validation accuracy, this is '
                 f'the most accurate one, {r["val_accuracy_gap"]:+.4f} val. accuracy'))
    print(PAPER_CLAIM)


if __name__ == '__main__':
    main()
