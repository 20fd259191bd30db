"""Generate the Monte-Carlo jet-tagging data set (see README.md): Pythia 8 + FastJet -> 16 features, 5 classes.

    python projects/jets/generate.py --jets-per-class 20000 --seed 0 --procs 2 --out projects/jets/data/jets_100k.npz

The work is split into fixed chunks (class, chunk index) with their own Pythia seeds, so the same --seed and
--jets-per-class (and --chunk-size) give the same file for any --procs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# one thread per worker: the machine's cores go to the worker processes, not to BLAS pools inside each of them
for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jets_mc  # noqa: E402


class Progress:
    """Prints jets done per class, the rate and an estimate of the time left after each finished chunk."""

    def __init__(self, jets_per_class: int) -> None:
        self.total = jets_per_class * len(jets_mc.CLASS_NAMES)
        self.done = dict.fromkeys(jets_mc.CLASS_NAMES, 0)
        self.start = time.perf_counter()

    def __call__(self, task: jets_mc.Task, x: np.ndarray, stats: dict) -> None:
        self.done[jets_mc.CLASS_NAMES[task.label]] += len(x)
        n = sum(self.done.values())
        dt = time.perf_counter() - self.start
        rate = n / dt
        left = (self.total - n) / rate if rate > 0 else float('nan')
        per_class = ' '.join(f'{c}={v}' for c, v in self.done.items())
        print(
            f'[{100 * n / self.total:5.1f}%] {per_class} | {rate:6.1f} jets/s | {dt:6.0f} s, ~{left:5.0f} s left',
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--jets-per-class', type=int, required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--procs', type=int, default=1, help='worker processes (one Pythia each)')
    ap.add_argument('--chunk-size', type=int, default=500, help='jets per (class, chunk) task; part of the recipe')
    ap.add_argument('--out', required=True, help='output .npz (written atomically)')
    args = ap.parse_args(argv)
    try:
        jets_mc._require_generators()
    except ImportError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    start = time.perf_counter()
    x, y, stats = jets_mc.generate(
        args.jets_per_class, args.seed, args.procs, args.chunk_size, progress=Progress(args.jets_per_class)
    )
    elapsed = time.perf_counter() - start
    settings = jets_mc.settings_record(args.seed, args.jets_per_class, args.chunk_size)
    settings['stats'] = stats
    jets_mc.save_npz(args.out, x, y, settings)
    size = os.path.getsize(args.out)
    print(f'wrote {args.out}: {len(y)} jets, {size / 1e6:.2f} MB, {elapsed:.0f} s ({len(y) / elapsed:.1f} jets/s)')
    for label, name in enumerate(jets_mc.CLASS_NAMES):
        m = x[y == label, jets_mc.FEATURE_NAMES.index('mass_mmdt')]
        print(f'  {name}: mass_mmdt median {np.median(m):6.1f} GeV, below 40 GeV {np.mean(m < 40):6.1%}, {stats[name]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
