"""Train to a budget: a callback that steers beta toward an EBOPs or a LUT budget instead of a schedule.

A user knows the LUTs a design may take, not the beta that gets there. `BudgetController` measures the
model's cost at each epoch end and moves beta in log space, each step at most a factor `max_step`.

mode='rate' (default, `rate_beta`) steers the *speed* of the cost: it wants the cost to fall (or rise)
by log(cost/budget)/horizon per epoch, at most `max_rate` (5%) per epoch, and to stay put within `deadband`
of the budget; beta goes up while the cost moves more slowly than that and down while it moves faster.
Why: bits are shed at the optimizer's pace (Adam normalizes the step), not at beta's, and once beta is
large they keep going. The first, proportional rule (mode='proportional', `next_beta`:
beta·(cost/budget)^gain) raised beta as long as the cost was over budget, however fast it was already
falling; measured on the jets data it wound beta up to its cap, shed the design from 17k to 1.2k LUTs in
12 epochs and, at a 1k budget, pruned the network dead (chance accuracy). The rate rule never asks for
more than a slow, steady descent, so the optimizer can move bits to where they matter on the way down.

The final model: with `restore_best`, at the end of training the controller puts back the weights of the
epoch with the best `monitor` (val_accuracy) among those whose cost was within budget (≤ budget·(1 +
`tolerance`)); the last epoch is kept when no epoch was. `best_epoch` says which (1-based; None: none).

The cost is a hook, `CostModel` (model → cost in the budget's unit). For EBOPs it is the training EBOPs;
for LUTs, by default `LUTEstimate`, the LUT cost of hgq.training.lut_cost (products, accumulation, live
terms, activation and saturation bits, fitted to Yosys LUTs by bench/lut_cost_fit.py; docs/ebops.md),
computed from the current bit-widths. `PowerLawLUTs` (LUTs from EBOPs alone, R² 0.88 in log) is the older
predictor; any other is passed as `cost=`. The controller steers on the budget's unit whatever
`training.cost` the loss uses.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import keras

from .ebops import total_ebops
from .lut_cost import LUTEstimate
from .schedules import _check_beta, set_beta

CostModel = Callable[[keras.layers.Layer], float]
UNITS = ('ebops', 'luts')
MODES = ('rate', 'proportional')


class TrainingEBOPs:
    """The model's EBOPs as the last training step recorded them (no forward pass)."""

    def __call__(self, model: keras.layers.Layer) -> float:
        return total_ebops(model)

    def __repr__(self) -> str:
        return 'TrainingEBOPs()'


class PowerLawLUTs:
    """Yosys LUTs ≈ scale·EBOPs^power; default: the fit of bench/ebops_vs_luts.py (docs/ebops.md,
    13 jets-sized MLPs, Yosys 0.23). Monotone, so a LUT budget is an EBOPs budget the controller reaches."""

    def __init__(self, scale: float = 10**0.7551, power: float = 0.7550) -> None:
        if not (scale > 0 and power > 0):
            raise ValueError(f'PowerLawLUTs: scale={scale!r} and power={power!r} must be > 0')
        self.scale, self.power = float(scale), float(power)

    def __call__(self, model: keras.layers.Layer) -> float:
        return self.luts(total_ebops(model))

    def luts(self, ebops: float) -> float:
        return self.scale * max(float(ebops), 0.0) ** self.power

    def __repr__(self) -> str:
        return f'PowerLawLUTs(scale={self.scale:.4g}, power={self.power:.4g})'


def default_cost(unit: str) -> CostModel:
    if unit not in UNITS:
        raise ValueError(f'budget unit {unit!r}: valid units: {", ".join(UNITS)}')
    return TrainingEBOPs() if unit == 'ebops' else LUTEstimate()


def next_beta(beta: float, cost: float, budget: float, gain: float = 0.5, max_step: float = 2.0,
              beta_min: float = 1e-10, beta_max: float = 1.0) -> float:
    """One proportional step (mode='proportional'): beta·(cost/budget)^gain, the factor clipped to
    [1/max_step, max_step] and the result to [beta_min, beta_max]. Pure, so the direction can be tested
    without training."""
    if cost <= 0 or not math.isfinite(cost):
        factor = 1 / max_step  # every bit pruned (or no reading): relax
    else:
        factor = math.exp(gain * math.log(cost / budget))
    factor = min(max(factor, 1 / max_step), max_step)
    return min(max(beta * factor, beta_min), beta_max)


def rate_beta(beta: float, cost: float, previous_cost: float | None, budget: float, horizon: float = 10.0,
              max_rate: float = 0.05, max_step: float = 2.0, deadband: float = 0.05, beta_min: float = 1e-10,
              beta_max: float = 1.0) -> float:
    """One rate step (mode='rate'): steer how fast the cost moves, not beta against the cost.

    The wanted fall per epoch (in log) is log(cost/budget)/horizon, clipped to ±max_rate, and 0 within
    `deadband` of the budget (hold the cost there); the measured fall is log(previous_cost/cost) (0 without a
    previous epoch). beta is multiplied by max_step^s, s = (wanted − measured)/max_rate clipped to [−1, 1]:
    falling too slowly pushes harder, falling faster than wanted (or rising too slowly) relaxes. Pure."""
    if cost <= 0 or not math.isfinite(cost):
        return min(max(beta / max_step, beta_min), beta_max)  # every bit pruned (or no reading): relax
    error = math.log(cost / budget)
    wanted = 0.0 if abs(cost / budget - 1) <= deadband else min(max(error / horizon, -max_rate), max_rate)
    measured = 0.0
    if previous_cost is not None and previous_cost > 0 and math.isfinite(previous_cost):
        measured = math.log(previous_cost / cost)
    s = min(max((wanted - measured) / max_rate, -1.0), 1.0)
    return min(max(beta * max_step**s, beta_min), beta_max)


class BudgetController(keras.callbacks.Callback):
    """Steer every QLayer's beta toward `budget` (in `unit`: 'ebops' or 'luts'), once per epoch.

    Logs `beta` (the value used in the epoch), `budget_cost` (the cost measured at its end) and
    `budget_ratio` (cost / budget). Use it instead of BetaScheduler (both set beta), before the
    callbacks that read `beta` (ParetoCheckpoint, ProgressBar). The step rule is `rate_beta` (mode='rate')
    or `next_beta` (mode='proportional', which uses `gain`); module docstring: why. `restore_best` picks
    the final weights.
    """

    def __init__(self, budget: float, unit: str = 'luts', beta_start: float = 1e-6, gain: float = 0.5,
                 max_step: float = 2.0, cost: CostModel | None = None, key: str = 'beta',
                 beta_max: float = 1e-2, mode: str = 'rate', horizon: float = 10.0, max_rate: float = 0.05,
                 deadband: float = 0.05, restore_best: bool = True, monitor: str = 'val_accuracy',
                 tolerance: float = 0.05) -> None:
        super().__init__()
        if not (isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0
                and math.isfinite(budget)):
            raise ValueError(f'BudgetController: budget={budget!r} must be a finite number > 0')
        if not gain > 0 or not max_step > 1:
            raise ValueError(f'BudgetController: gain={gain!r} must be > 0 and max_step={max_step!r} > 1')
        if mode not in MODES:
            raise ValueError(f'BudgetController: mode={mode!r}; valid modes: {", ".join(MODES)}')
        if not horizon > 0 or not max_rate > 0 or not 0 <= deadband < 1 or not tolerance >= 0:
            raise ValueError(f'BudgetController: horizon={horizon!r} and max_rate={max_rate!r} must be > 0, '
                             f'deadband={deadband!r} in [0, 1) and tolerance={tolerance!r} >= 0')
        self.cost = cost if cost is not None else default_cost(unit)
        self.unit, self.budget, self.gain, self.max_step, self.key = unit, float(budget), gain, max_step, key
        self.mode, self.horizon, self.max_rate, self.deadband = mode, float(horizon), float(max_rate), float(deadband)
        self.restore_best, self.monitor, self.tolerance = restore_best, monitor, float(tolerance)
        self.beta_max = float(beta_max)  # bits shed at the optimizer's pace: a larger beta only winds up
        self.beta = _check_beta(beta_start, 'BudgetController beta_start')
        self.history: list[tuple[float, float]] = []  # (beta used, cost measured) per epoch
        self.best_epoch: int | None = None  # 1-based epoch restore_best chose (None: none within budget)
        self.best_value: float | None = None
        self._best_weights: list[Any] | None = None
        self._best_beta = self.beta
        self._warned = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.best_epoch, self.best_value, self._best_weights = None, None, None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if set_beta(self.model, self.beta) == 0:
            raise ValueError('BudgetController: the model has no built hgq QLayer whose beta could be set')

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        cost = float(self.cost(self.model))
        previous = self.history[-1][1] if self.history else None
        self.history.append((self.beta, cost))
        if logs is not None:
            logs[self.key] = self.beta
            logs['budget_cost'] = cost
            logs['budget_ratio'] = cost / self.budget
        if self.restore_best:
            self._remember(epoch, cost, logs or {})
        if self.mode == 'rate':
            self.beta = rate_beta(self.beta, cost, previous, self.budget, self.horizon, self.max_rate,
                                  self.max_step, self.deadband, beta_max=self.beta_max)
        else:
            self.beta = next_beta(self.beta, cost, self.budget, self.gain, self.max_step, beta_max=self.beta_max)

    def _remember(self, epoch: int, cost: float, logs: dict[str, Any]) -> None:
        """Keep a copy of the weights of the best epoch within budget so far."""
        if self.monitor not in logs:
            if not self._warned:
                warnings.warn(f'BudgetController: restore_best monitors {self.monitor!r}, which the epoch logs '
                              f'lack (they have {sorted(logs)}); the last epoch is kept. Pass validation data '
                              f'or another monitor=', stacklevel=2)
                self._warned = True
            return
        value = float(logs[self.monitor])
        within = 0 < cost <= self.budget * (1 + self.tolerance)
        if within and (self.best_value is None or value > self.best_value):
            self.best_epoch, self.best_value = epoch + 1, value
            self._best_weights = [w.copy() for w in self.model.get_weights()]
            self._best_beta = self.beta

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_best and self._best_weights is not None:
            self.model.set_weights(self._best_weights)
            set_beta(self.model, self._best_beta)

    def __repr__(self) -> str:
        return f'BudgetController({self.budget:g} {self.unit}, cost={self.cost!r}, gain={self.gain}, ' \
               f'max_step={self.max_step}, mode={self.mode}, horizon={self.horizon}, max_rate={self.max_rate}, ' \
               f'deadband={self.deadband})'
