"""Beta schedules: how strongly the EBOPs cost weighs in the loss, epoch by epoch.

Schedules are small callables `epoch -> beta` (epoch 0-based, as Keras counts), so they can be
composed, tested without Keras and replaced by any plain function. Starting with a small beta and
raising it lets the network learn before it is pushed to shed bits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import keras

from ._walk import qlayers

Schedule = Callable[[int], float]


def _check_beta(value: Any, where: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f'{where}: beta={value!r} must be a finite non-negative number')
    return value


def _check_epochs(epochs: Any, where: str) -> int:
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ValueError(f'{where}: epochs={epochs!r} must be a positive integer')
    return int(epochs)


def _check_epoch(epoch: Any, where: str) -> int:
    if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
        raise ValueError(f'{where}: epoch={epoch!r} must be a non-negative integer')
    return int(epoch)


class Constant:
    """The same beta at every epoch."""

    def __init__(self, value: float) -> None:
        self.value = _check_beta(value, 'Constant')

    def __call__(self, epoch: int) -> float:
        _check_epoch(epoch, 'Constant')
        return self.value

    def __repr__(self) -> str:
        return f'Constant({self.value!r})'


class Linear:
    """Straight line from `start` (epoch 0) to `end` (epoch `epochs`), then held at `end`."""

    def __init__(self, start: float, end: float, epochs: int) -> None:
        self.start = _check_beta(start, 'Linear')
        self.end = _check_beta(end, 'Linear')
        self.epochs = _check_epochs(epochs, 'Linear')

    def __call__(self, epoch: int) -> float:
        t = min(_check_epoch(epoch, 'Linear'), self.epochs) / self.epochs
        return self.end if t == 1.0 else self.start + (self.end - self.start) * t

    def __repr__(self) -> str:
        return f'Linear({self.start!r}, {self.end!r}, {self.epochs!r})'


class Log:
    """Geometric interpolation from `start` (epoch 0) to `end` (epoch `epochs`), then held at `end`.

    Equal steps in log(beta): the natural choice when beta spans orders of magnitude.
    """

    def __init__(self, start: float, end: float, epochs: int) -> None:
        for name, v in (('start', start), ('end', end)):
            if not (math.isfinite(float(v)) and float(v) > 0.0):
                raise ValueError(f'Log: {name}={v!r} must be a finite positive number (a geometric schedule '
                                 'cannot reach or start from 0; use Piecewise with Constant(0.0) for a zero phase)')
        self.start, self.end = float(start), float(end)
        self.epochs = _check_epochs(epochs, 'Log')

    def __call__(self, epoch: int) -> float:
        t = min(_check_epoch(epoch, 'Log'), self.epochs) / self.epochs
        if t == 1.0:
            return self.end
        return math.exp(math.log(self.start) + (math.log(self.end) - math.log(self.start)) * t)

    def __repr__(self) -> str:
        return f'Log({self.start!r}, {self.end!r}, {self.epochs!r})'


class Piecewise:
    """Schedules one after another: `[(0, warmup), (10, ramp), ...]`; each piece counts epochs from its start."""

    def __init__(self, pieces: Sequence[tuple[int, Schedule]]) -> None:
        pieces = list(pieces)
        if not pieces:
            raise ValueError('Piecewise: needs at least one (start_epoch, schedule) piece')
        starts = []
        for piece in pieces:
            if not (isinstance(piece, tuple | list) and len(piece) == 2 and callable(piece[1])):
                raise ValueError(f'Piecewise: each piece must be (start_epoch, schedule), got {piece!r}')
            starts.append(_check_epoch(piece[0], 'Piecewise'))
        if starts[0] != 0:
            raise ValueError(f'Piecewise: the first piece must start at epoch 0, got {starts[0]}')
        if any(b <= a for a, b in itertools.pairwise(starts)):
            raise ValueError(f'Piecewise: piece start epochs must be strictly increasing, got {starts}')
        self.pieces = [(s, p[1]) for s, p in zip(starts, pieces, strict=True)]

    def __call__(self, epoch: int) -> float:
        epoch = _check_epoch(epoch, 'Piecewise')
        start, schedule = next((s, p) for s, p in reversed(self.pieces) if s <= epoch)
        return schedule(epoch - start)

    def __repr__(self) -> str:
        return f'Piecewise({self.pieces!r})'


def set_beta(model: keras.layers.Layer, value: float) -> int:
    """Assign beta to every cost-bearing layer; returns how many layers were set."""
    value = _check_beta(value, 'set_beta')
    layers = qlayers(model)
    for layer in layers:
        layer.beta.assign(value)
    return len(layers)


class BetaScheduler(keras.callbacks.Callback):
    """Set every QLayer's beta from `schedule(epoch)` at each epoch begin; report it as `logs['beta']`.

    Keras passes no logs to `on_epoch_begin`, so the value is written into the epoch-end logs, where
    History, progress bars and checkpoints see it (no batch hook: it would slow every step, see _hooks).
    """

    def __init__(self, schedule: Schedule | float, key: str = 'beta') -> None:
        super().__init__()
        if not callable(schedule):
            schedule = Constant(schedule)
        self.schedule = schedule
        self.key = key
        self.value: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = _check_beta(self.schedule(epoch), f'BetaScheduler (schedule {self.schedule!r} at epoch {epoch})')
        if set_beta(self.model, value) == 0:
            raise ValueError('BetaScheduler: the model has no built hgq QLayer whose beta could be set')
        self.value = value
        if logs is not None:
            logs[self.key] = value

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None and self.value is not None:
            logs[self.key] = self.value
