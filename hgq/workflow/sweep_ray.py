"""The Ray engine of `hgq sweep`: one Ray task per trial, each an ordinary `hgq train` run folder.

Why Ray core tasks (not Ray Tune): a trial is already restartable on its own (its run folder keeps
last.keras, history.csv and the Pareto checkpoints, and `train` resumes after the last saved epoch), so
all a sweep needs is "run this function again when its process dies", which is what a task's
`max_retries` does. A worker that dies (killed, out of memory, a lost node) is retried, and the retry
resumes the same folder; an exception in the trial's own code is not retried (it would fail again), except
OSError (a file system hiccup). A finished trial leaves `trial_done.json` (written by the task itself), so
running the same command after the driver was interrupted starts only the missing trials.

Each trial's stdout/stderr go to RUN_DIR/train.log; the driver shows one live line per trial read from
the folders' history.csv (see sweep_progress.py), so run folders must be on storage the driver sees
(always true locally; on a cluster, a shared file system: docs/sweep.md).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from .config import ConfigError
from .sweep import Trial, is_done, mark_done, plan, resources

INSTALL_HINT = 'pip install "hgq[sweep]" (Ray), or run the trials one after another with --serial'
LOG_FILE = 'train.log'
FAULT_ENV = 'HGQ_SWEEP_FAULT'  # tests: "NAME_PART:EPOCH" makes a trial's worker die in that epoch, first attempt
FAULT_MARKER = 'fault_injected'
DEFAULT_RETRIES = 3


class SweepError(RuntimeError):
    """Trials that failed for good (after their retries); the message names each one and its log."""


def import_ray() -> Any:
    """Ray, imported only when the Ray engine runs; without it, a clear line on how to get it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f'the Ray engine needs the ray package, which is not installed: {INSTALL_HINT}') from None
    return ray


def _fault_callback(spec: str, run_dir: Path, name: str) -> tuple[Any, ...]:
    """The test hook of FAULT_ENV: a callback that kills this process in the middle of the given epoch."""
    if not spec or (run_dir / FAULT_MARKER).exists():
        return ()
    part, _, epoch = spec.rpartition(':')
    if part not in name:
        return ()
    import keras

    class DieMidEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, index: int, logs: dict[str, Any] | None = None) -> None:
            self.epoch = index + 1

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self.epoch == int(epoch) and batch >= 1:
                (run_dir / FAULT_MARKER).write_text(f'killed in epoch {self.epoch}, batch {batch}\n')
                print(f'{FAULT_ENV}: killing this worker in epoch {self.epoch}', flush=True)
                os._exit(3)

    return (DieMidEpoch(),)


def _limit_threads(threads: int) -> None:
    """As many compute threads as CPUs reserved, so that trials sharing a node do not oversubscribe it."""
    import keras

    if keras.backend.backend() == 'tensorflow':
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already ran an op in this process: keep its pools
            pass


def run_trial(project_dir: str, name: str, overrides: dict[str, Any], config: dict[str, Any],
              run_dir: str, threads: int = 1, fault: str = '') -> dict[str, Any]:
    """The body of one trial's Ray task: train (or resume) the run folder, then mark it done."""
    from hgq.training import read_index

    from .project import find_project
    from .train import train

    _limit_threads(threads)
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(folder / LOG_FILE, 'a', encoding='utf-8') as log:
        saved = os.dup(1), os.dup(2)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)  # the fds, so that TensorFlow's C++ logs land here too
        os.dup2(log.fileno(), 2)
        try:
            print(f'=== hgq sweep trial {name} ({time.strftime("%Y-%m-%d %H:%M:%S")}, pid {os.getpid()}, '
                  f'host {os.uname().nodename}) ===', flush=True)
            train(find_project(project_dir), config, folder, callbacks=_fault_callback(fault, folder, name))
            mark_done(folder, overrides)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    index = read_index(folder / 'checkpoints') or {'checkpoints': [], 'last_epoch': 0}
    return {'name': name, 'epochs': index['last_epoch'], 'checkpoints': len(index['checkpoints']),
            'seconds': round(time.perf_counter() - start, 1), 'host': os.uname().nodename}


def connect(ray: Any, address: str | None, local_cpus: int) -> bool:
    """Join the cluster at `address` (ray://..., host:port or auto), or start a local instance with
    `local_cpus` CPUs; returns True when this call started (and so must shut down) Ray."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {'include_dashboard': False, 'log_to_driver': False, 'logging_level': 'warning'}
    if address is None:
        ray.init(num_cpus=local_cpus, **options)
    else:
        if address.startswith('ray://'):  # Ray Client accepts fewer options; it needs ray[client]
            options = {'logging_level': 'warning'}
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f'--address {address}: cannot join a Ray cluster there ({e}); start one with '
                              '`ray start --head` (docs/sweep.md), or leave --address out to run locally') from None
    return True


def run_ray(project: Any, sweep: Mapping[str, Any], out_dir: str | Path, config_path: str | Path | None = None,
            address: str | None = None, local_cpus: int | None = None, retries: int = DEFAULT_RETRIES,
            stream: TextIO | None = None, refresh_s: float = 1.0) -> list[Path]:
    """Run the sweep's missing trials as Ray tasks (a local instance, or the cluster at `address`); returns
    every trial's folder. Raises SweepError naming the trials that failed after `retries` retries."""
    from .sweep_progress import Progress

    ray = import_ray()
    trials = plan(project, sweep, out_dir, config_path)
    need = resources(sweep)
    stream = sys.stderr if stream is None else stream
    todo = [t for t in trials if not is_done(t.run_dir)]
    progress = Progress(trials, stream)
    if not todo:
        progress.close()
        return [t.run_dir for t in trials]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    started = connect(ray, address, local_cpus or need.local_cpus)
    failed: list[tuple[Trial, str]] = []
    try:
        task = ray.remote(max_retries=retries, retry_exceptions=[OSError], max_calls=1)(run_trial)
        # A local instance's workers inherit this process's environment; a cluster's get the backend shipped.
        backend = os.environ.get('KERAS_BACKEND')
        runtime_env = {'env_vars': {'KERAS_BACKEND': backend}} if backend and address is not None else None
        threads, fault = max(1, int(need.cpus)), os.environ.get(FAULT_ENV, '')
        refs = {task.options(num_cpus=need.cpus, num_gpus=need.gpus, runtime_env=runtime_env,
                             name=f'hgq-trial-{t.name}').remote(str(project.directory), t.name, t.overrides,
                                                                t.config, str(t.run_dir), threads, fault): t
                for t in todo}
        progress.launched(todo)
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=refresh_s)
                for ref in ready:
                    trial = refs[ref]
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayError as e:
                        cause = getattr(e, 'cause', None) or e
                        line = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
                        failed.append((trial, line))
                        progress.failed(trial, line)
                    else:
                        progress.finished(trial)
                progress.refresh()
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            missing = sum(not is_done(t.run_dir) for t in trials)
            progress.close()
            print(f'hgq sweep: interrupted; {missing} trials are not done. Run the same command again to '
                  'finish only those (each resumes after its last saved epoch).', file=stream, flush=True)
            raise
    finally:
        progress.close()
        if started:
            ray.shutdown()
    if failed:
        raise SweepError(f'{len(failed)} of {len(trials)} trials failed after {retries} retries: ' + '; '.join(
            f'{t.name}: {line} (log: {t.run_dir / LOG_FILE})' for t, line in failed))
    return [t.run_dir for t in trials]
