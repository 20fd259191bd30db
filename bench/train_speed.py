"""Training speed of hgq against the peer library HGQ2, on TensorFlow and on JAX.

Task: a 16-64-32-32-5 MLP (ReLU) with per-element bit-widths on every input, kernel and bias and
EBOPs regularization on (same beta for both libraries), trained with Adam (lr 1e-3), batch 1024,
on 100,000 synthetic samples (16 features, 5 classes, fixed seed: bench/common.py). Each epoch is
timed with a callback; "steady" is the median of the epochs after the first (the first one also
traces and compiles). Every (implementation, backend) runs in a fresh subprocess:

- ours:  this script's `--worker` mode with our venv's interpreter (default: the one running this);
- HGQ2:  bench/peers/hgq2_train_speed.py with the HGQ2 venv's interpreter (`--peer-python`), a venv
  kept outside the repository because HGQ2 also installs an import package named `hgq`.

    .venv/bin/python bench/train_speed.py --epochs 5 --backends tensorflow,jax --impls hgq,hgq2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from common import (
    PEER_PYTHON,
    REPO,
    format_table,
    machine_info,
    pip_version,
    summarize_epochs,
    write_dataset,
    write_json,
)

PEER_SCRIPT = REPO / 'bench' / 'peers' / 'hgq2_train_speed.py'
DEFAULT_PEER_PYTHON = str(PEER_PYTHON)
DEFAULT_JSON = REPO / 'bench' / 'results' / 'train_speed.json'
HIDDEN_SIZES = (64, 32, 32)
# model.compile(jit_compile=...): Keras' 'auto' means XLA on JAX, and no XLA for TensorFlow on a CPU-only machine
JIT_CHOICES = {'auto': 'auto', 'true': True, 'false': False}
# stderr lines worth keeping in the report (TF/XLA start-up chatter is dropped)
STDERR_KEYS = ('Warning', 'WARNING', 'Error', 'ERROR', 'Traceback', 'Exception')
STDERR_NOISE = (
    'oneDNN custom operations',
    'cpu_feature_guard',
    'TF-TRT',
    'rebuild TensorFlow with the appropriate',
    'Unable to register cu',
    'computation placer already registered',
    'All log messages before absl',
)


# ---------------------------------------------------------------------------------------------- worker (ours)
def run_worker(args: argparse.Namespace) -> None:
    """Train our model once in this process (KERAS_BACKEND comes from the environment) and write JSON."""
    import numpy as np

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import keras

    import hgq
    from hgq.layers import QDense

    if not Path(hgq.__file__).resolve().is_relative_to(REPO):
        sys.exit(f'imported hgq from {hgq.__file__}, not from {REPO}')

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.times.append(time.perf_counter() - self._t0)

    with np.load(args.data) as d:
        x, y = d['x'], d['y']
    keras.utils.set_random_seed(args.seed)
    caught: dict[str, int] = {}
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter('always')
        inp = keras.Input((x.shape[1],))
        h = inp
        for n, units in enumerate(HIDDEN_SIZES):
            h = QDense(units, activation='relu', beta=args.beta, name=f'dense{n}')(h)
        out = QDense(int(y.max()) + 1, beta=args.beta, name='logits')(h)
        model = keras.Model(inp, out)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=['accuracy'],
            jit_compile=JIT_CHOICES[args.jit_compile],
        )
        timer = EpochTimer()
        hist = model.fit(
            x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0, callbacks=[timer]
        )
        ebops = sum(float(np.asarray(layer.ebops)) for layer in model.layers if hasattr(layer, 'ebops'))
        for w in wlist:
            where = '/'.join(Path(w.filename).parts[-3:])
            key = f'{w.category.__name__}: {w.message} ({where}:{w.lineno})'
            caught[key] = caught.get(key, 0) + 1

    result = {
        'impl': 'hgq',
        'backend': keras.backend.backend(),
        'versions': {'keras': keras.__version__, 'numpy': np.__version__, 'python': sys.version.split()[0]},
        'n_samples': int(len(x)),
        'batch_size': args.batch_size,
        'beta': args.beta,
        'jit_compile': bool(model.jit_compile),
        **summarize_epochs(timer.times, len(x)),
        'final_loss': float(hist.history['loss'][-1]),
        'final_accuracy': float(hist.history['accuracy'][-1]),
        'final_ebops': ebops,
        'params': int(model.count_params()),
        'warnings': caught,
        'env': {k: os.environ.get(k) for k in ('KERAS_BACKEND', 'OMP_NUM_THREADS', 'XLA_FLAGS')},
    }
    args.out.write_text(json.dumps(result, indent=2) + '\n')


# ---------------------------------------------------------------------------------------------- driver
def filtered_stderr(text: str) -> list[str]:
    lines = text.splitlines()
    return [ln for ln in lines if any(k in ln for k in STDERR_KEYS) and not any(n in ln for n in STDERR_NOISE)]


def measure(impl: str, backend: str, python: str, data: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One training run in a fresh interpreter; returns the worker's JSON plus process facts."""
    out = tmp / f'{impl}-{backend}.json'
    out.unlink(missing_ok=True)
    options = {'data': data, 'epochs': args.epochs, 'batch-size': args.batch_size, 'beta': args.beta,
               'seed': args.seed, 'jit-compile': args.jit_compile, 'out': out}
    worker_args = [a for k, v in options.items() for a in (f'--{k}', str(v))]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['KERAS_BACKEND'] = backend
    if impl == 'hgq':
        cmd = [python, str(Path(__file__).resolve()), '--worker', *worker_args]
        env['PYTHONPATH'] = str(REPO)
    else:
        cmd = [python, str(PEER_SCRIPT), *worker_args]  # no PYTHONPATH: HGQ2's `hgq` must win
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        tail = '\n'.join(proc.stderr.splitlines()[-25:])
        print(f'FAILED (exit {proc.returncode}):\n{tail}', file=sys.stderr)
        return {'impl': impl, 'backend': backend, 'error': tail, 'returncode': proc.returncode}
    result = json.loads(out.read_text())
    result.update(process_wall_s=wall, loadavg_before=load_before, loadavg_after=os.getloadavg(),
                  stderr_warnings=filtered_stderr(proc.stderr), command=' '.join(cmd))
    return result


def aggregate(runs: list[dict[str, Any]], n_samples: int) -> dict[str, Any]:
    """Combine repeats: medians of first-epoch and steady times; best = fastest epoch after the first."""
    steady = statistics.median(r['steady_epoch_s'] for r in runs)
    return {
        'repeats': len(runs),
        'first_epoch_s': statistics.median(r['first_epoch_s'] for r in runs),
        'steady_epoch_s': steady,
        'samples_per_s': n_samples / steady,
        'best_epoch_s': min(t for r in runs for t in r['epoch_s'][1:]),
        'final_accuracy': statistics.median(r['final_accuracy'] for r in runs),
        'final_ebops': statistics.median(r['final_ebops'] for r in runs),
    }


def fmt(v: float | None, spec: str) -> str | None:
    return None if v is None else format(v, spec)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Training speed: hgq vs HGQ2 on TensorFlow and JAX.')
    parser.add_argument('--epochs', type=int, default=5, help='epochs per run (>= 2; default 5)')
    parser.add_argument('--backends', default='tensorflow,jax', help='comma-separated Keras backends')
    parser.add_argument('--impls', default='hgq,hgq2', help='comma-separated: hgq (ours), hgq2 (peer)')
    parser.add_argument('--json', type=Path, default=DEFAULT_JSON, help='result file (default: %(default)s)')
    parser.add_argument('--peer-python', default=DEFAULT_PEER_PYTHON,
                        help='interpreter of the venv with hgq2 installed (default: %(default)s)')
    parser.add_argument('--python', default=sys.executable, help='interpreter for ours (default: this one)')
    parser.add_argument('--repeats', type=int, default=1,
                        help='runs per (impl, backend), interleaved; medians are reported (default 1)')
    parser.add_argument('--samples', type=int, default=100_000)
    parser.add_argument('--batch-size', type=int, default=1024)
    parser.add_argument('--beta', type=float, default=1e-6)
    parser.add_argument('--seed', type=int, default=0, help='Keras seed (weights, shuffling); data seed is fixed')
    parser.add_argument('--jit-compile', choices=sorted(JIT_CHOICES), default='auto',
                        help="model.compile(jit_compile=...) for both libraries (default 'auto': Keras' choice)")
    parser.add_argument('--timeout', type=float, default=1800, help='seconds allowed per subprocess')
    # internal: one measurement in this process
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--data', type=Path, help=argparse.SUPPRESS)
    parser.add_argument('--out', type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.worker:
        if args.epochs < 2:
            parser.error('--epochs must be at least 2 (the first epoch includes compilation)')
        if args.repeats < 1:
            parser.error('--repeats must be at least 1')
        args.backends = [b.strip() for b in args.backends.split(',') if b.strip()]
        args.impls = [i.strip() for i in args.impls.split(',') if i.strip()]
        for impl in args.impls:
            if impl not in ('hgq', 'hgq2'):
                parser.error(f'unknown implementation {impl!r}; use hgq and/or hgq2')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    impls = list(args.impls)
    if 'hgq2' in impls and not Path(args.peer_python).exists():
        print(f'SKIPPING HGQ2: peer interpreter {args.peer_python} not found. Create it with `make peers` '
              '(.peers/hgq2, git-ignored) or pass --peer-python.',
              file=sys.stderr)
        impls.remove('hgq2')

    pythons = {'hgq': args.python, 'hgq2': args.peer_python}
    info = machine_info()
    versions: dict[str, dict[str, str | None]] = {}
    for impl in impls:
        names = ['keras', 'tensorflow-cpu', 'jax', 'jaxlib', 'numpy']
        names += ['hgq2', 'quantizers'] if impl == 'hgq2' else []
        versions[impl] = {n: pip_version(pythons[impl], n) for n in names}
    if 'hgq' in versions:
        git = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True)
        versions['hgq']['git_commit'] = git.stdout.strip() or None

    print(f'{info["cpu_model"]}, {info["nproc"]} CPUs; {args.samples} samples, batch {args.batch_size}, '
          f'{args.epochs} epochs, beta {args.beta}, {args.repeats} repeat(s)', flush=True)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix='hgq-train-speed-') as tmpdir:
        tmp = Path(tmpdir)
        data = write_dataset(tmp / 'data.npz', n_samples=args.samples)
        for rep in range(args.repeats):  # interleaved, so that a burst of load hits every cell alike
            for backend in args.backends:
                for impl in impls:
                    print(f'  [{rep + 1}/{args.repeats}] {impl} on {backend} ...', end=' ', flush=True)
                    r = measure(impl, backend, pythons[impl], data, args, tmp)
                    r['repeat'] = rep
                    if 'error' not in r:
                        print(f'first {r["first_epoch_s"]:.2f} s, steady {r["steady_epoch_s"]:.3f} s/epoch '
                              f'(load {r["loadavg_before"][0]:.1f})', flush=True)
                    runs.append(r)

    summary: dict[str, dict[str, Any]] = {}
    for backend in args.backends:
        for impl in impls:
            ok = [r for r in runs if r['impl'] == impl and r['backend'] == backend and 'error' not in r]
            if ok:
                summary[f'{impl}/{backend}'] = aggregate(ok, args.samples)
    rows = []
    for backend in args.backends:
        peer = summary.get(f'hgq2/{backend}')
        for impl in impls:
            s = summary.get(f'{impl}/{backend}')
            if s is None:
                rows.append([impl, backend, 'failed'] + [None] * 6)
                continue
            if impl == 'hgq' and peer is not None:
                s['speed_ratio_vs_hgq2'] = s['samples_per_s'] / peer['samples_per_s']
            rows.append([impl, backend, fmt(s['first_epoch_s'], '.2f'), fmt(s['steady_epoch_s'], '.3f'),
                         fmt(s['samples_per_s'], ',.0f'), fmt(s.get('speed_ratio_vs_hgq2'), '.2f'),
                         fmt(s['best_epoch_s'], '.3f'), fmt(s['final_accuracy'], '.3f'), fmt(s['final_ebops'], ',.0f')])
    headers = ['impl', 'backend', 'first epoch s', 'steady s/epoch', 'samples/s', 'ours/HGQ2 speed',
               'best epoch s', 'train acc', 'EBOPs']
    print()
    print(format_table(headers, rows))
    for r in runs:
        for msg, count in r.get('warnings', {}).items():
            print(f'  [{r["impl"]}/{r["backend"]}] Python warning x{count}: {msg[:300]}')
        for line in r.get('stderr_warnings', []):
            print(f'  [{r["impl"]}/{r["backend"]}] stderr: {line[:300]}')

    payload = {
        'benchmark': 'train_speed',
        'task': {'model': '16-' + '-'.join(map(str, HIDDEN_SIZES)) + '-5 MLP, ReLU, per-element quantizers, EBOPs on',
                 'samples': args.samples, 'features': 16, 'classes': 5, 'batch_size': args.batch_size,
                 'epochs': args.epochs, 'optimizer': 'Adam(1e-3)', 'beta': args.beta, 'repeats': args.repeats,
                 'jit_compile': args.jit_compile,
                 'steady': 'median over repeats of (median of epochs 2..E)'},
        'machine': info,
        'versions': versions,
        'command': ' '.join(sys.argv if argv is None else ['train_speed.py', *argv]),
        'summary': summary,
        'runs': runs,
    }
    write_json(args.json, payload)
    print(f'\nwrote {args.json}')


if __name__ == '__main__':
    main()
