"""The Ray engine of `hgq sweep` on a real local Ray cluster (one per module): a trial whose worker is killed
mid-epoch is retried and resumes without losing an epoch or a Pareto checkpoint; a driver killed mid-sweep
is rerun and trains only the trials it had not finished.

Needs ray (requirements.txt, the hgq[sweep] extra); the import fails rather than skips, so CI runs these.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from hgq.training import ParetoFront, read_index
from hgq.workflow.project import find_project
from hgq.workflow.sweep import is_done, plan
from hgq.workflow.sweep_ray import FAULT_ENV, FAULT_MARKER, LOG_FILE, run_ray
from hgq.workflow.sweep_report import write_sweep_report

TOY = Path(__file__).parent / 'toy_project'
ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3


@pytest.fixture(scope='module')
def cluster():
    """A local Ray instance of 2 CPUs, shared by this module's tests (and joined by the subprocess driver)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level='warning')
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope='module')
def project():
    return find_project(TOY)


def _sweep(seeds: list[int], cpus: float) -> dict:
    return {'grid': {'training.seed': seeds, 'training.epochs': [EPOCHS], 'training.float_epochs': [0]},
            'resources': {'cpus': cpus}}


def _epochs_and_front(run_dir: Path) -> tuple[list[int], list[int]]:
    """(0-based epochs in history.csv, the epochs a Pareto front over all its rows keeps)."""
    with open(run_dir / 'history.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    front = ParetoFront({'val_accuracy': 'max', 'ebops': 'min'})
    for row in rows:
        front.add(int(row['epoch']) + 1, {'val_accuracy': float(row['val_accuracy']), 'ebops': float(row['ebops'])})
    return [int(r['epoch']) for r in rows], sorted(front.ids())


def _headers(run_dir: Path) -> list[str]:
    return [line for line in (run_dir / LOG_FILE).read_text().splitlines() if line.startswith('=== hgq sweep trial')]


def test_killed_worker_is_retried_and_resumes(cluster, project, tmp_path, monkeypatch):
    sweep = _sweep([0, 1], cpus=1)
    trials = plan(project, sweep, tmp_path)
    victim = next(t for t in trials if t.overrides['training.seed'] == 0)
    monkeypatch.setenv(FAULT_ENV, f'{victim.name}:2')  # its worker calls os._exit in epoch 2, first attempt only
    log = io.StringIO()
    run_ray(project, sweep, tmp_path, stream=log, refresh_s=0.5)

    assert (victim.run_dir / FAULT_MARKER).is_file(), 'the fault hook did not fire'
    assert len(_headers(victim.run_dir)) == 2  # the attempt that died and its retry
    assert 'resuming' in (victim.run_dir / LOG_FILE).read_text() and 'after epoch 1' in (
        victim.run_dir / LOG_FILE).read_text()
    for t in trials:
        assert is_done(t.run_dir)
        epochs, expected_front = _epochs_and_front(t.run_dir)
        assert epochs == list(range(EPOCHS)), f'{t.name}: epochs lost or repeated: {epochs}'
        index = read_index(t.run_dir / 'checkpoints')
        assert index['last_epoch'] == EPOCHS
        assert sorted(c['epoch'] for c in index['checkpoints']) == expected_front, 'a Pareto checkpoint was lost'
        assert all((t.run_dir / 'checkpoints' / c['file']).is_file() for c in index['checkpoints'])
    text = log.getvalue()
    assert f'{victim.name[:44]}' in text and '2/2 trials done' in text  # one line per trial and the overall bar

    report = write_sweep_report(trials, tmp_path, title='toy')
    points = {(p['trial'], p['epoch']) for p in report['points']}
    assert len(points) == sum(len(read_index(t.run_dir / 'checkpoints')['checkpoints']) for t in trials)
    front = report['front']
    assert front and {(p['trial'], p['epoch']) for p in front} <= points
    for p in report['points']:  # every point is on the front or beaten (weakly, on both) by a front point
        assert any(f['val_accuracy'] >= p['val_accuracy'] and f['ebops'] <= p['ebops'] for f in front)
    md = (tmp_path / 'report' / 'sweep.md').read_text()
    assert all(p['trial'] in md for p in front)
    assert (tmp_path / 'report' / 'sweep_pareto.png').stat().st_size > 10_000


def test_interrupted_driver_rerun_finishes_only_the_missing(cluster, project, tmp_path):
    sweep_file = tmp_path / 'sweep.yaml'
    sweep_file.write_text(f'grid: {{training.seed: [3, 4], training.epochs: [{EPOCHS}], training.float_epochs: [0]}}\n'
                          'resources: {cpus: 2}\n')  # 2 of the cluster's 2 CPUs: one trial at a time
    out = tmp_path / 'sweep'
    sweep = {'grid': {'training.seed': [3, 4], 'training.epochs': [EPOCHS], 'training.float_epochs': [0]},
             'resources': {'cpus': 2}}
    trials = plan(project, sweep, out)
    env = {**os.environ, 'PYTHONPATH': f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}'}
    driver = subprocess.Popen([sys.executable, '-m', 'hgq.cli', 'sweep', str(TOY), '--config', str(sweep_file),
                               '--out', str(out), '--address', cluster, '--no-report'], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not any(is_done(t.run_dir) for t in trials):
        assert driver.poll() is None, f'the driver exited early: {driver.stderr.read().decode()[-2000:]}'
        assert time.monotonic() < deadline, 'no trial finished in time'
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    driver.stderr.close()
    finished = [t for t in trials if is_done(t.run_dir)]
    missing = [t for t in trials if not is_done(t.run_dir)]
    assert len(finished) == 1 and len(missing) == 1
    # Ray ends the dead driver's workers; wait for them so that no orphan writes into the folder we resume.
    for t in missing:
        pids = [int(h.split('pid ')[1].split(',')[0]) for h in _headers(t.run_dir)] if (
            t.run_dir / LOG_FILE).is_file() else []
        for pid in pids:
            while time.monotonic() < deadline + 30:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
    done_files = sorted(p for p in finished[0].run_dir.rglob('*') if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in done_files}

    log = io.StringIO()
    run_ray(project, sweep, out, stream=log, refresh_s=0.5)
    assert all(is_done(t.run_dir) for t in trials)
    assert {p: p.stat().st_mtime_ns for p in done_files} == before, 'the finished trial was touched'
    assert len(_headers(finished[0].run_dir)) == 1  # trained once
    assert 'done before this run' in log.getvalue()
    for t in trials:
        epochs, expected_front = _epochs_and_front(t.run_dir)
        assert epochs == list(range(EPOCHS))
        assert sorted(c['epoch'] for c in read_index(t.run_dir / 'checkpoints')['checkpoints']) == expected_front
