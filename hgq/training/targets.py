"""Train to a budget: a callback that steers beta toward an EBOPs or a LUT budget instead of a schedule.

A user knows the LUTs a design may take, not the beta that gets there. `BudgetController` measures the
model's cost at each epoch end and moves beta in log space, in proportion to how far the cost is from
the budget: log β ← log β + gain·log(cost / budget), each step clipped to a factor `max_step`. Over
budget, beta grows (bits are shed faster); under budget, it shrinks (accuracy is bought back).

The cost is a hook, `CostModel` (model → cost in the budget's unit). For EBOPs it is the training EBOPs;
for LUTs, by default `LUTEstimate`, the LUT cost of hgq.training.lut_cost (products, accumulation, live
terms, activation and saturation bits, fitted to Yosys LUTs by bench/lut_cost_fit.py; docs/ebops.md),
computed from the current bit-widths. `PowerLawLUTs` (LUTs from EBOPs alone, R² 0.88 in log) is the older
predictor; any other is passed as `cost=`. The controller steers on the budget's unit whatever
`training.cost` the loss uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras

from .ebops import total_ebops
from .lut_cost import LUTEstimate
from .schedules import _check_beta, set_beta

CostModel = Callable[[keras.layers.Layer], float]
UNITS = ('ebops', 'luts')


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
    """One controller step: beta·(cost/budget)^gain, the factor clipped to [1/max_step, max_step] and
    the result to [beta_min, beta_max]. Pure, so the direction can be tested without training."""
    if cost <= 0 or not math.isfinite(cost):
        factor = 1 / max_step  # every bit pruned (or no reading): relax
    else:
        factor = math.exp(gain * math.log(cost / budget))
    factor = min(max(factor, 1 / max_step), max_step)
    return min(max(beta * factor, beta_min), beta_max)


class BudgetController(keras.callbacks.Callback):
    """Steer every QLayer's beta toward `budget` (in `unit`: 'ebops' or 'luts'), once per epoch.

    Logs `beta` (the value used in the epoch), `budget_cost` (the cost measured at its end) and
    `budget_ratio` (cost / budget). Use it instead of BetaScheduler (both set beta), before the
    callbacks that read `beta` (ParetoCheckpoint, ProgressBar).
    """

    def __init__(self, budget: float, unit: str = 'luts', beta_start: float = 1e-6, gain: float = 0.5,
                 max_step: float = 2.0, cost: CostModel | None = None, key: str = 'beta',
                 beta_max: float = 1e-2) -> None:
        super().__init__()
        if not (isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0
                and math.isfinite(budget)):
            raise ValueError(f'BudgetController: budget={budget!r} must be a finite number > 0')
        if not gain > 0 or not max_step > 1:
            raise ValueError(f'BudgetController: gain={gain!r} must be > 0 and max_step={max_step!r} > 1')
        self.cost = cost if cost is not None else default_cost(unit)
        self.unit, self.budget, self.gain, self.max_step, self.key = unit, float(budget), gain, max_step, key
        self.beta_max = float(beta_max)  # bits shed at the optimizer's pace: a larger beta only winds up
        self.beta = _check_beta(beta_start, 'BudgetController beta_start')
        self.history: list[tuple[float, float]] = []  # (beta used, cost measured) per epoch

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if set_beta(self.model, self.beta) == 0:
            raise ValueError('BudgetController: the model has no built hgq QLayer whose beta could be set')

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        cost = float(self.cost(self.model))
        self.history.append((self.beta, cost))
        if logs is not None:
            logs[self.key] = self.beta
            logs['budget_cost'] = cost
            logs['budget_ratio'] = cost / self.budget
        self.beta = next_beta(self.beta, cost, self.budget, self.gain, self.max_step, beta_max=self.beta_max)

    def __repr__(self) -> str:
        return f'BudgetController({self.budget:g} {self.unit}, cost={self.cost!r}, gain={self.gain}, ' \
               f'max_step={self.max_step})'
