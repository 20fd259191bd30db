"""AuGQ interval quantization (Mujtaba et al. 2025, Applied Intelligence 55:589), our reading, exported exactly.

Only the abstract is public, so this is the reading written down in docs/quantizers.md "## AuGQ": the
range [lo, hi] = [min x, max x] is cut into K uniform intervals with edges e_k = lo + k·(hi - lo)/K;
interval k gets its own b-bit affine quantizer fitted to the values inside it (min a_k, max c_k;
levels a_k + j·(c_k - a_k)/(2^b - 1), j < 2^b); an empty interval uses its edges. A value goes to its
interval (x >= e_k), then to the nearest level there. Code = k·2^b + j, index bits ceil(log2 K) + b;
that code is exactly the rank of the level in the sorted table, i.e. our index.
Edges and levels are snapped to 2^-level_frac_bits and written to variables (interval_table.py).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from ..indexed import MAX_INDEX_BITS
from ..registry import register_scheme
from .interval_table import IntervalTableQuantizer, check_int, snap

BIG = 3.0e38  # "no value seen" sentinel of the per-interval min/max (finite: survives every backend)


@keras.saving.register_keras_serializable(package='hgq')
class AuGQQuantizer(IntervalTableQuantizer):
    """Per-tensor K-interval quantizer, b bits per interval, in weight and activation slots.

    Args:
        intervals: K >= 1 (K = 1 is a plain b-bit min/max affine quantizer).
        bits: b in [1, 8], the in-interval code width; ceil(log2 K) + b must be <= 16.
        level_frac_bits: F; levels and edges on the grid 2^-F, the input compared on 2^-(F+1).
    """

    scheme = 'augq'

    def __init__(self, role: str = 'activation', intervals: int = 4, bits: int = 3, level_frac_bits: int = 8,
                 **kwargs: Any) -> None:
        super().__init__(role=role, level_frac_bits=level_frac_bits, **kwargs)
        if isinstance(intervals, bool) or not isinstance(intervals, (int, float)) or int(intervals) != intervals \
                or intervals < 1:
            raise ValueError(f'{self.name}: intervals={intervals!r} must be an integer K >= 1')
        self.n_bits = check_int(self.name, 'bits', bits, 1, 8)
        self.intervals = int(intervals)
        if self.index_bits > MAX_INDEX_BITS:
            raise ValueError(f'{self.name}: intervals={self.intervals} with bits={self.n_bits} needs a '
                             f'{self.index_bits}-bit index (ceil(log2 K) + b); at most {MAX_INDEX_BITS} is valid')

    @property
    def n_levels(self) -> int:
        return self.intervals * 2**self.n_bits

    @property
    def index_bits(self) -> int:
        return math.ceil(math.log2(self.intervals)) + self.n_bits

    # --- activation statistics: global min/max and each interval's min/max --------------------
    def _build_stats(self) -> None:
        k = self.intervals
        self.lo = self.add_weight(name='lo', shape=(), initializer=keras.initializers.Constant(BIG), trainable=False)
        self.hi = self.add_weight(name='hi', shape=(), initializer=keras.initializers.Constant(-BIG), trainable=False)
        self.mins = self.add_weight(name='mins', shape=(k,), initializer=keras.initializers.Constant(BIG),
                                    trainable=False)
        self.maxs = self.add_weight(name='maxs', shape=(k,), initializer=keras.initializers.Constant(-BIG),
                                    trainable=False)
        self.count = self.add_weight(name='count', shape=(), initializer='zeros', trainable=False)

    def _stats_variables(self) -> list[keras.Variable]:
        return [self.lo, self.hi, self.mins, self.maxs, self.count]

    def _reset_stats(self) -> None:
        self.lo.assign(BIG)
        self.hi.assign(-BIG)
        self.mins.assign(ops.full((self.intervals,), BIG))
        self.maxs.assign(ops.full((self.intervals,), -BIG))
        self.count.assign(0.0)

    def _accumulate(self, x: Any) -> list[Any]:
        """Merge a batch: the earlier intervals' min/max are real data points, re-binned with the new edges.

        Exact when the range does not grow (always for one calibration batch); when a later batch widens
        it, the earlier batches are represented by their 2K extreme points only.
        """
        flat = ops.reshape(x, (-1,))
        lo = ops.minimum(self.lo.value, ops.min(flat))
        hi = ops.maximum(self.hi.value, ops.max(flat))
        old = ops.concatenate([self.mins.value, self.maxs.value])
        old = ops.where(ops.abs(old) < BIG, old, lo)  # unseen slots: a value already in the data (lo)
        mins, maxs = self._interval_extremes(ops.concatenate([flat, old]), lo, hi)
        return [lo, hi, mins, maxs, self.count.value + ops.cast(ops.size(flat), 'float32')]

    def _edges(self, lo: Any, hi: Any) -> tuple[Any, Any, Any]:
        """Snapped lo, hi and the K-1 inner edges."""
        frac = self.level_frac_bits
        lo, hi = snap(lo, frac), snap(hi, frac)
        k = ops.arange(1, self.intervals, dtype='float32')
        return lo, hi, snap(lo + k * (hi - lo) / float(self.intervals), frac)

    def _interval_extremes(self, v: Any, lo: Any, hi: Any) -> tuple[Any, Any]:
        """Per-interval min and max of the values v (BIG / -BIG where an interval holds none)."""
        _, _, inner = self._edges(lo, hi)
        index = ops.sum(ops.cast(ops.expand_dims(v, -1) >= inner, 'int32'), axis=-1)
        member = ops.equal(ops.expand_dims(index, -1), ops.arange(self.intervals, dtype='int32'))  # (N, K)
        vv = ops.expand_dims(v, -1)
        return (ops.min(ops.where(member, vv, BIG), axis=0), ops.max(ops.where(member, vv, -BIG), axis=0))

    def _tables_from_stats(self, stats: list[Any]) -> tuple[Any, Any]:
        lo, hi, mins, maxs, _ = stats
        return self._tables(lo, hi, mins, maxs)

    def _tables_from_data(self, x: Any) -> tuple[Any, Any]:
        flat = ops.reshape(x, (-1,))
        lo, hi = ops.min(flat), ops.max(flat)
        mins, maxs = self._interval_extremes(flat, lo, hi)
        return self._tables(lo, hi, mins, maxs)

    def _tables(self, lo: Any, hi: Any, mins: Any, maxs: Any) -> tuple[Any, Any]:
        """Snapped (thresholds, levels), ascending: every interval's levels lie between its edges."""
        frac = self.level_frac_bits
        lo = ops.where(lo <= hi, lo, 0.0)  # nothing observed: an all-zero table
        hi = ops.where(lo <= hi, hi, 0.0)
        lo, hi, inner = self._edges(lo, hi)
        starts = ops.concatenate([ops.reshape(lo, (1,)), inner])
        ends = ops.concatenate([inner, ops.reshape(hi, (1,))])
        seen = mins <= maxs
        a = ops.clip(snap(ops.where(seen, mins, starts), frac), starts, ends)
        c = ops.clip(snap(ops.where(seen, maxs, ends), frac), a, ends)
        j = ops.arange(2**self.n_bits, dtype='float32') / float(2**self.n_bits - 1)
        levels = snap(ops.expand_dims(a, -1) + ops.expand_dims(c - a, -1) * j, frac)  # (K, 2^b)
        levels = ops.clip(levels, ops.expand_dims(a, -1), ops.expand_dims(c, -1))
        mids = (levels[:, 1:] + levels[:, :-1]) / 2.0  # (K, 2^b - 1)
        thresholds = ops.concatenate([mids, ops.expand_dims(ends, -1)], axis=-1)  # interval end after its mids
        return ops.reshape(thresholds, (-1,))[:-1], ops.reshape(levels, (-1,))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'intervals': self.intervals, 'bits': self.n_bits}


register_scheme('augq', AuGQQuantizer)
