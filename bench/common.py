"""Helpers shared by the benchmarks: synthetic data, machine description, epoch timing summary, tables.

Only numpy and the standard library are imported here, so that any interpreter (ours or a peer
library's venv) can use it without pulling in a Keras backend.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: HGQ2's own venv, made by `make peers` (git-ignored; HGQ2's import package is also called `hgq`, so run it
#: with a script path, never `-c`/`-m` from the repository root, where our `hgq` would shadow it)
PEER_PYTHON = REPO / '.peers' / 'hgq2' / 'bin' / 'python'


def _import_installed_quantizers() -> None:
    """Put the installed `quantizers` package (da4ml imports it) into sys.modules before anything needs it.

    Every bench script runs with bench/ as sys.path[0], where bench/quantizers.py would shadow that package
    ("'quantizers' is not a package" from da4ml.trace). Importing it once with bench/ off the path fixes the
    name for the process; scripts keep importing their bench/ neighbours normally."""
    here = Path(__file__).resolve().parent
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != here]
    try:
        import quantizers  # noqa: F401
    except ImportError:  # a venv without da4ml (a peer's) does not need it
        pass
    finally:
        sys.path[:] = saved


_import_installed_quantizers()


def make_classification(
    n_samples: int = 100_000, n_features: int = 16, n_classes: int = 5, seed: int = 20261123
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, learnable synthetic task: labels are the argmax of a random linear map of Gaussian features
    plus noise. float32 features, int32 labels; identical for a given seed on any machine (numpy PCG64)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, n_features)).astype(np.float32)
    w = rng.normal(size=(n_features, n_classes))
    logits = x.astype(np.float64) @ w + 0.5 * rng.normal(size=(n_samples, n_classes))
    return x, np.argmax(logits, axis=1).astype(np.int32)


def write_dataset(path: Path, **kwargs: Any) -> Path:
    """Write `make_classification(**kwargs)` to an .npz (arrays `x`, `y`) that every worker reads."""
    x, y = make_classification(**kwargs)
    np.savez(path, x=x, y=y)
    return path


def cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def pip_version(python: str, package: str) -> str | None:
    """Version of `package` installed for interpreter `python`, without importing it."""
    code = f'import importlib.metadata as m; print(m.version({package!r}))'
    try:
        out = subprocess.run([python, '-c', code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    mem_gib = None
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemTotal:'):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'nproc': os.cpu_count(),
        'sched_affinity': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
        'cpu_model': cpu_model(),
        'mem_total_gib': mem_gib,
        'platform': platform.platform(),
        'python': platform.python_version(),
    }


def summarize_epochs(epoch_s: list[float], n_samples: int) -> dict[str, Any]:
    """First epoch (includes tracing/compilation) and steady state (median of the later epochs)."""
    steady = statistics.median(epoch_s[1:]) if len(epoch_s) > 1 else None
    return {
        'epoch_s': epoch_s,
        'first_epoch_s': epoch_s[0] if epoch_s else None,
        'steady_epoch_s': steady,
        'samples_per_s': n_samples / steady if steady else None,
    }


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in headers]] + [['' if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + ' |' for r in cells]
    lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + '\n')
