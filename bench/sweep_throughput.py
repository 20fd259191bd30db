"""Sweep throughput (trials per hour) of `hgq sweep` with the serial engine and with Ray on 1 and 2 local CPUs.

Each engine runs the same sweep (the toy project of the tests: 16-8-5 MLP on 4,000 toy jets, `--trials`
seeds, `--epochs` HGQ epochs + `--float-epochs` float epochs each) as a fresh `hgq sweep` subprocess into an
empty folder, so the wall time holds everything a user waits for: the driver's imports, Ray's start-up, one
worker process per trial (Keras/TensorFlow imported again in each) and the trials. Per trial, the seconds
from its train.log header to its done marker are the time inside a worker. The machine's load average is
recorded too: on a shared machine the numbers are only as good as the CPUs left free.

    .venv/bin/python bench/sweep_throughput.py --trials 4 --epochs 10
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
from pathlib import Path
from typing import Any

from common import REPO, format_table, machine_info, write_json

TOY = REPO / 'tests' / 'toy_project'
DEFAULT_JSON = REPO / 'bench' / 'results' / 'sweep_throughput.json'
ENGINES = {'serial': ['--serial'], 'ray-1cpu': ['--num-cpus', '1'], 'ray-2cpu': ['--num-cpus', '2']}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _trial_seconds(run_dir: Path) -> float | None:
    """Seconds from the (first) trial header in train.log (Ray engine) to the done marker."""
    log, done = run_dir / 'train.log', run_dir / 'trial_done.json'
    if not log.is_file() or not done.is_file():
        return None
    for line in log.read_text().splitlines():
        if line.startswith('=== hgq sweep trial'):
            stamp = line.split('(')[1].split(',')[0]
            return round(done.stat().st_mtime - time.mktime(time.strptime(stamp, '%Y-%m-%d %H:%M:%S')), 1)
    return None


def run_engine(engine: str, sweep_file: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, 'PYTHONPATH': f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}'}
    command = [sys.executable, '-m', 'hgq.cli', 'sweep', str(TOY), '--config', str(sweep_file), '--out', str(out),
               '--no-report', *ENGINES[engine]]
    load_before = _load()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f'{engine}: hgq sweep failed ({result.returncode}):\n{result.stderr[-3000:]}')
    folders = [p for p in out.iterdir() if (p / 'trial_done.json').is_file()]
    per_trial = [s for s in (_trial_seconds(p) for p in folders) if s is not None]
    return {'engine': engine, 'trials': len(folders), 'wall_s': round(wall, 1),
            'trials_per_hour': round(len(folders) / wall * 3600, 1),
            'mean_trial_s': round(statistics.mean(per_trial), 1) if per_trial else None,
            'load_before': load_before, 'load_after': _load(), 'command': ' '.join(command)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--trials', type=int, default=4)
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--float-epochs', type=int, default=2)
    parser.add_argument('--engines', default=','.join(ENGINES), help=f'comma-separated, of {", ".join(ENGINES)}')
    parser.add_argument('--json', type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    sweep = {'grid': {'training.seed': list(range(args.trials)), 'training.epochs': [args.epochs],
                      'training.float_epochs': [args.float_epochs]}, 'resources': {'cpus': 1}}
    rows = []
    with tempfile.TemporaryDirectory(prefix='hgq-sweep-bench-') as tmp:
        sweep_file = Path(tmp) / 'sweep.yaml'
        sweep_file.write_text(json.dumps(sweep))  # JSON is YAML
        for engine in args.engines.split(','):
            print(f'{engine}: {args.trials} trials ...', flush=True)
            rows.append(run_engine(engine, sweep_file, Path(tmp) / engine))
            print(f'  {rows[-1]["wall_s"]} s, {rows[-1]["trials_per_hour"]} trials/hour', flush=True)
    table = format_table(['engine', 'trials', 'wall s', 'trials/hour', 'mean s in a trial', 'load avg before/after'],
                         [[r['engine'], r['trials'], r['wall_s'], r['trials_per_hour'], r['mean_trial_s'],
                           f'{r["load_before"]}/{r["load_after"]}'] for r in rows])
    print(table)
    write_json(args.json, {'benchmark': 'sweep_throughput', 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                           'machine': machine_info(), 'sweep': sweep, 'argv': sys.argv, 'results': rows})
    print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
