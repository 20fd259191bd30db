"""Keep the Pareto-optimal checkpoints (e.g. accuracy vs. EBOPs) of one training run, crash-safely.

One training run with a rising beta sweeps the accuracy/cost trade-off; the checkpoints worth
exporting are those no other epoch beats on every metric. `ParetoFront` is the pure bookkeeping
(testable without Keras); `ParetoCheckpoint` saves models and an index `pareto.json`.

Crash safety: a model is written to a temporary file in the target directory and renamed into
place (`os.replace` is atomic on one file system); the index is replaced the same way, and only
then are dominated checkpoints deleted. So at any instant the index names complete files only.
Leftovers of a crash (temporary files, checkpoints the index does not name) are removed when the
next `ParetoCheckpoint` opens the directory, and the interrupted epoch is simply run again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import keras

from .files import TEMP_PREFIX, save_model_atomic, write_json_atomic

DIRECTIONS = ('max', 'min')
INDEX_NAME = 'pareto.json'
INDEX_FORMAT = 'hgq-pareto/1'
CHECKPOINT_PATTERN = re.compile(r'^epoch-(\d+)\.keras$')
DEFAULT_METRICS = {'val_accuracy': 'max', 'ebops': 'min'}


def checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint of a (1-based) epoch."""
    return f'epoch-{epoch:05d}.keras'


class ParetoFront:
    """The set of points not weakly dominated by any other point.

    A point weakly dominates another when it is at least as good on every metric; a new point that
    any kept point weakly dominates is rejected (so an exact tie keeps the older point), and a new
    point that is kept removes the kept points it dominates.
    """

    def __init__(self, objectives: Mapping[str, str]) -> None:
        if not objectives:
            raise ValueError('ParetoFront: needs at least one metric, e.g. {"val_accuracy": "max", "ebops": "min"}')
        for name, direction in objectives.items():
            if direction not in DIRECTIONS:
                raise ValueError(f'ParetoFront: metric {name!r} has direction {direction!r}; use "max" or "min"')
        self.objectives = dict(objectives)
        self._points: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._points)

    def __contains__(self, point_id: object) -> bool:
        return point_id in self._points

    def __iter__(self) -> Iterator[tuple[str, dict[str, float]]]:
        return iter([(i, dict(m)) for i, m in self._points.items()])

    def ids(self) -> list[str]:
        return list(self._points)

    def _gains(self, metrics: Mapping[str, float]) -> list[float]:
        """Metric values oriented so that larger is better."""
        return [metrics[n] if d == 'max' else -metrics[n] for n, d in self.objectives.items()]

    def _clean(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        missing = [n for n in self.objectives if n not in metrics]
        if missing:
            raise KeyError(f'ParetoFront: metrics {missing} missing; got {sorted(metrics)}')
        return {n: float(metrics[n]) for n in self.objectives}

    def is_dominated(self, metrics: Mapping[str, Any]) -> bool:
        """True if some kept point is at least as good on every metric (ties count as dominated)."""
        gains = self._gains(self._clean(metrics))
        return any(all(k >= g for k, g in zip(self._gains(kept), gains, strict=True)) for kept in self._points.values())

    def add(self, point_id: str, metrics: Mapping[str, Any]) -> tuple[bool, list[str]]:
        """Offer a point; returns (kept, ids of kept points it removed). Non-finite metrics are never kept."""
        if point_id in self._points:
            raise ValueError(f'ParetoFront: point {point_id!r} is already in the front')
        clean = self._clean(metrics)
        if not all(math.isfinite(v) for v in clean.values()) or self.is_dominated(clean):
            return False, []
        gains = self._gains(clean)
        removed = [i for i, kept in self._points.items()
                   if all(g >= k for g, k in zip(gains, self._gains(kept), strict=True))]
        for i in removed:
            del self._points[i]
        self._points[point_id] = clean
        return True, removed


def read_index(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed `pareto.json` of a directory, or None when there is none."""
    path = os.path.join(directory, INDEX_NAME)
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as f:
        index = json.load(f)
    if not isinstance(index, dict) or index.get('format') != INDEX_FORMAT:
        raise ValueError(f'{path}: not an hgq Pareto index (expected "format": "{INDEX_FORMAT}")')
    return index


def resume_epoch(directory: str | os.PathLike) -> int:
    """Number of epochs recorded as completed: pass it to `model.fit(initial_epoch=...)` to continue."""
    index = read_index(directory)
    return 0 if index is None else int(index['last_epoch'])


class ParetoCheckpoint(keras.callbacks.Callback):
    """Save the model whenever an epoch's metrics are not dominated by a kept checkpoint.

    Args:
        directory: where checkpoints `epoch-NNNNN.keras` (1-based epoch) and `pareto.json` live.
            If it already holds a `pareto.json`, the front is reloaded and the run continues it
            (start fit at `initial_epoch=resume_epoch(directory)`).
        metrics: metric name -> 'max' or 'min'; names are keys of the epoch-end logs (put
            EBOPsLogger before this callback for 'ebops'; 'val_*' needs validation data).
        overwrite: discard a previous run in `directory` (its index and checkpoints) instead.

    `pareto.json` holds the metric directions, `last_epoch` (epochs completed) and, per kept
    checkpoint, its file, epoch and metric values.
    """

    def __init__(self, directory: str | os.PathLike, metrics: Mapping[str, str] | None = None,
                 overwrite: bool = False) -> None:
        super().__init__()
        self.directory = os.fspath(directory)
        self.front = ParetoFront(DEFAULT_METRICS if metrics is None else metrics)
        self.last_epoch = 0
        self._epochs: dict[str, int] = {}
        os.makedirs(self.directory, exist_ok=True)
        if overwrite:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.directory, INDEX_NAME))
        else:
            self._load()
        self._remove_leftovers()

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        """Kept checkpoints, oldest first: file (path), epoch, metrics."""
        return [{'file': os.path.join(self.directory, i), 'epoch': self._epochs[i], 'metrics': m}
                for i, m in self.front]

    def _load(self) -> None:
        index = read_index(self.directory)
        if index is None:
            return
        if index['metrics'] != self.front.objectives:
            raise ValueError(f'ParetoCheckpoint: {self.directory} holds a front over {index["metrics"]}, '
                             f'not {self.front.objectives}; use another directory or the same metrics')
        self.last_epoch = int(index['last_epoch'])
        for entry in index['checkpoints']:
            if not os.path.exists(os.path.join(self.directory, entry['file'])):
                raise FileNotFoundError(f'ParetoCheckpoint: {INDEX_NAME} in {self.directory} names '
                                        f'{entry["file"]}, which is missing')
            kept, _ = self.front.add(entry['file'], entry['metrics'])
            if not kept:
                raise ValueError(f'ParetoCheckpoint: {INDEX_NAME} in {self.directory} is inconsistent: '
                                 f'{entry["file"]} is dominated by another entry')
            self._epochs[entry['file']] = int(entry['epoch'])

    def _remove_leftovers(self) -> None:
        """Delete temporary files and checkpoints the index does not name (both left by a crash)."""
        for name in os.listdir(self.directory):
            stale_temp = name.startswith(TEMP_PREFIX) and name.endswith(('.keras', '.json', '.txt'))
            orphan = CHECKPOINT_PATTERN.match(name) is not None and name not in self.front
            if stale_temp or orphan:
                os.remove(os.path.join(self.directory, name))

    def _write_index(self, last_epoch: int) -> None:
        entries = [{'file': i, 'epoch': self._epochs[i], 'metrics': m} for i, m in self.front]
        index = {'format': INDEX_FORMAT, 'metrics': self.front.objectives, 'last_epoch': last_epoch,
                 'checkpoints': entries}
        write_json_atomic(os.path.join(self.directory, INDEX_NAME), index)

    def _metrics_from(self, logs: Mapping[str, Any] | None) -> dict[str, float]:
        logs = logs or {}
        for name in self.front.objectives:
            if name not in logs:
                hint = ''
                if name == 'ebops':
                    hint = ' (add hgq.training.EBOPsLogger before ParetoCheckpoint in the callbacks list)'
                elif name.startswith('val_'):
                    hint = ' (pass validation data to fit)'
                raise ValueError(f'ParetoCheckpoint: metric {name!r} is not in the epoch logs{hint}; '
                                 f'available keys: {sorted(logs)}')
        return {name: float(logs[name]) for name in self.front.objectives}

    def _check_new(self, number: int) -> None:
        if number <= self.last_epoch:
            raise ValueError(f'ParetoCheckpoint: epoch {number} is already recorded in {self.directory} '
                             f'(last completed epoch {self.last_epoch}); continue with '
                             f'model.fit(..., initial_epoch=hgq.training.resume_epoch({self.directory!r})), '
                             'or pass overwrite=True to start afresh')

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._check_new(int(epoch) + 1)  # fail before training an epoch whose result could not be recorded

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        number = int(epoch) + 1
        self._check_new(number)
        metrics = self._metrics_from(logs)
        name = checkpoint_name(number)
        kept, removed = self.front.add(name, metrics)
        if not kept and not all(math.isfinite(v) for v in metrics.values()):
            warnings.warn(f'ParetoCheckpoint: epoch {number} has non-finite metrics {metrics}; not kept',
                          stacklevel=2)
        path = os.path.join(self.directory, name)
        try:
            if kept:
                self._epochs[name] = number
                save_model_atomic(self.model, path)
            self._write_index(number)
        except BaseException:
            # Back to the state on disk: the old index still names the old front, whose files are intact.
            if kept:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            self._reload_front()
            raise
        self.last_epoch = number
        for old in removed:
            del self._epochs[old]
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.directory, old))

    def _reload_front(self) -> None:
        self.front = ParetoFront(self.front.objectives)
        self._epochs = {}
        self._load()
