"""Shared machinery of the interval schemes (PWLQ, AuGQ): a level table held in variables.

Why variables: the thresholds and levels are computed once, with keras.ops, from the data (a weight
tensor in each call; calibration or training statistics for activations) and written to two
non-trainable variables. The Keras forward pass and `describe()` both read those same float32
values, so export == training by construction; no second (numpy) derivation can drift from it.

Per element::

    q = cast(x)                  # round to the grid 2^-(F+1) (F = level_frac_bits), saturating
    y = levels[#(q >= thresholds)]

Levels are on the grid 2^-F and thresholds on 2^-(F+1) (midpoints of grid values, or grid values),
so the exported encode compares integer codes. Gradient: straight through to x (dy/dx = 1); nothing
is learned (the levels follow the data). A subclass supplies the statistics and the table builder.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from ..base import Quantizer
from ..fixed_point import FixedFormat, quantize_with
from ..indexed import IndexedFormat, indexed_format, indexed_quantize_with

TRAIN_INTEGER_BITS = 16.0  # the Keras cast: any width whose range covers every threshold gives the same index
MAX_LEVEL_CODE = 2**23  # levels must stay exact float32 integers times 2^-F in training


def snap(v: Any, frac_bits: int) -> Any:
    """Round to the grid 2^-frac_bits (keras.ops; ties to even)."""
    scale = float(2**frac_bits)
    return ops.round(v * scale) / scale


def check_int(owner: str, name: str, value: Any, lo: int, hi: int, why: str = '') -> int:
    """An integer argument in [lo, hi], or a ValueError naming the quantizer and the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value \
            or not lo <= int(value) <= hi:
        raise ValueError(f'{owner}: {name}={value!r} must be an integer in [{lo}, {hi}]{why}')
    return int(value)


class IntervalTableQuantizer(Quantizer):
    """Base of PWLQ and AuGQ: a per-tensor table of n levels and n-1 thresholds in variables.

    Subclasses define `n_levels`, `index_bits`, `_build_stats`, `_stats_variables`, `_accumulate`
    (activations: new statistics from a batch), `_tables_from_stats` and `_tables_from_data`
    (weights), all with keras.ops.
    """

    scheme = 'interval'

    def __init__(self, role: str = 'activation', level_frac_bits: int = 8, **kwargs: Any) -> None:
        super().__init__(role=role, **kwargs)
        self.level_frac_bits = check_int(self.name, 'level_frac_bits', level_frac_bits, 0, 20)

    # --- subclass interface -------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        raise NotImplementedError

    @property
    def index_bits(self) -> int:
        raise NotImplementedError

    def _build_stats(self) -> None:
        """Create the activation statistics variables (calibration measures them)."""

    def _stats_variables(self) -> list[keras.Variable]:
        return []

    def _reset_stats(self) -> None:
        """Forget the statistics."""

    def _accumulate(self, x: Any) -> list[Any]:
        """New values of `_stats_variables()` after observing the batch x (keras.ops, graph-safe)."""
        raise NotImplementedError

    def _tables_from_stats(self, stats: list[Any]) -> tuple[Any, Any]:
        """(thresholds, levels) from statistics (keras.ops)."""
        raise NotImplementedError

    def _tables_from_data(self, x: Any) -> tuple[Any, Any]:
        """(thresholds, levels) fitted to a weight tensor (keras.ops)."""
        raise NotImplementedError

    # --- protocol -----------------------------------------------------------------------------
    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)[1:] if self.role == 'activation' else tuple(input_shape)
        if any(d is None for d in shape):
            raise ValueError(f'{self.name}: every axis but the batch must have a known size, got {input_shape}')
        self._shape = shape
        n = self.n_levels
        self.levels = self.add_weight(name='levels', shape=(n,), initializer='zeros', trainable=False)
        self.thresholds = self.add_weight(name='thresholds', shape=(n - 1,), initializer='zeros', trainable=False)
        # 1 once the table holds values derived from data (weights: after the first call)
        self.ready = self.add_weight(name='ready', shape=(), initializer='zeros', trainable=False)
        if self.role == 'activation':
            self._build_stats()
        super().build(input_shape)

    def _set_tables(self, t: Any, lv: Any) -> None:
        self.thresholds.assign(t)
        self.levels.assign(lv)
        self.ready.assign(1.0)

    def call(self, x: Any, training: bool | None = None) -> Any:
        xc = ops.stop_gradient(x)
        if self.role == 'weight':
            t, lv = self._tables_from_data(ops.cast(xc, 'float32'))
            self._set_tables(t, lv)
        elif self.calibrating or training:
            stats = self._accumulate(ops.cast(xc, 'float32'))
            for v, s in zip(self._stats_variables(), stats, strict=True):
                v.assign(s)
            t, lv = self._tables_from_stats(stats)
            if not self.calibrating:  # training tracks the data; calibration writes the table afterwards
                self._set_tables(t, lv)
        else:
            t, lv = self.thresholds.value, self.levels.value
        t = ops.stop_gradient(ops.cast(t, x.dtype))
        lv = ops.stop_gradient(ops.cast(lv, x.dtype))
        q = quantize_with(ops, xc, 1.0, TRAIN_INTEGER_BITS, float(self.level_frac_bits + 1), 'RND', 'SAT')
        y = indexed_quantize_with(ops, q, t, lv)
        return y + (x - xc)

    def bits(self, x: Any = None) -> Any:
        """Width of the stored (decoded) level: sign (if a level is negative) + bits of the largest code.

        ceil(log2(max|code| + 1)) + [min level < 0] with code = level·2^F: the two's-complement width of
        the table on its grid, an upper bound of `describe().level_format()` (which also drops trailing
        zero fraction bits). No gradient: the width is not trained.
        """
        lv = ops.stop_gradient(self.levels.value)
        code = ops.round(ops.max(ops.abs(lv)) * 2.0**self.level_frac_bits)
        sign = ops.cast(ops.min(lv) < 0, 'float32')
        w = ops.ceil(ops.log2(code + 1.0)) + sign
        return ops.broadcast_to(w, tuple(x.shape)) if x is not None else w

    def describe(self, values: np.ndarray | None = None) -> IndexedFormat:
        if self.role == 'weight' and values is not None:
            if not self.built:
                self.build(tuple(np.shape(values)))
            self.call(ops.convert_to_tensor(np.asarray(values, dtype=np.float32)))  # writes the table
        if not self.built:
            raise ValueError(f'{self.name}: not built; call the model once before export')
        t = np.asarray(ops.convert_to_numpy(self.thresholds), dtype=np.float64)
        lv = np.asarray(ops.convert_to_numpy(self.levels), dtype=np.float64)
        f = self.level_frac_bits + 1
        top = float(np.max(np.abs(lv)))
        if np.ldexp(top, self.level_frac_bits) >= MAX_LEVEL_CODE:
            raise ValueError(f'{self.name}: the level set does not fit: its largest level {top} needs more than '
                             f'{int(math.log2(MAX_LEVEL_CODE))} bits at level_frac_bits={self.level_frac_bits} '
                             '(float32 training would not be exact); lower level_frac_bits')
        one = np.ones((), dtype=np.int64)
        fmt = FixedFormat(one * 1, one * _cast_integer_bits(t, f), one * f, 'RND', 'SAT')
        return indexed_format(fmt, t, lv, self.index_bits, owner=self.name)

    def calibration_variables(self) -> list[keras.Variable]:
        return self._stats_variables() if self.role == 'activation' and self.built else []

    def after_calibration(self) -> None:
        """PTQ: derive the table from the calibrated statistics (the same keras.ops as training)."""
        if self.role != 'activation' or not self.built or self.unobserved():
            return
        t, lv = self._tables_from_stats([v.value for v in self._stats_variables()])
        self._set_tables(t, lv)

    def unobserved(self) -> bool:
        return self.role == 'activation' and self.built and float(self.count.value) == 0.0

    def reset_range(self) -> None:
        if self.role == 'activation' and self.built:
            self._reset_stats()

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'level_frac_bits': self.level_frac_bits}


def _cast_integer_bits(t: np.ndarray, f: int) -> int:
    """Smallest i with the signed SAT range [-2^i, 2^i - 2^-f] covering every threshold.

    Saturating beyond the outermost thresholds changes no index, so this narrow cast (what the
    hardware compares) and the wide one in training give the same result for every input.
    """
    lo, hi = float(np.min(t)), float(np.max(t))
    i = int(math.ceil(math.log2(max(abs(lo), hi + 2.0**-f, 2.0**-f))))
    while -(2.0**i) > lo or 2.0**i - 2.0**-f < hi:
        i += 1
    return max(i, 1 - f)
