"""PWLQ: piecewise linear quantization (Fang et al., ECCV 2020, arXiv 2002.00104), exported exactly.

The authors' non-overlapping form (their default): on [-m, m] (m = max|x|) with breakpoint p, the
centre region (-p, p) gets a symmetric signed b-bit uniform quantizer with step 2p/(2^b - 1), and
each tail [p, m] (mirrored for [-m, -p]) an unsigned (b-1)-bit affine quantizer with offset p and
step (m - p)/(2^(b-1) - 1). A value goes to its region first (|x| >= p: tail), then to the nearest
level of that region. That is 2^b - 1 centre levels + 2·2^(b-1) tail levels = 2^(b+1) - 1 levels, a
(b+1)-bit index: b bits per region plus the region bit the paper counts separately.

Breakpoint: 'gaussian' uses the paper's fit p/σ = ln(0.8614·m/σ + 0.6079); 'search' a coarse-to-fine
grid over p/m minimizing the squared error (activations: on a histogram of |x| from calibration).
p, m and every level are snapped to 2^-level_frac_bits and written to variables (see
interval_table.py); docs/quantizers.md "## PWLQ".
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from ..registry import register_scheme
from .interval_table import IntervalTableQuantizer, check_int, snap

BREAKPOINTS = ('gaussian', 'search')
GAUSS_COEF, GAUSS_OFFSET = 0.86143114, 0.607901097496529  # the paper's linear fit for Gaussian data
COARSE = [0.05 * k for k in range(1, 20)]  # p/m candidates, then a finer pass around the best one
FINE = [0.005 * k for k in range(-9, 10)]
HIST_LOG2_LO, HIST_PER_OCTAVE, HIST_BINS = -12.0, 8, 8 * 24  # activations' |x| histogram: 2^-12 .. 2^12


def _float_pwlq(x: Any, p: Any, m: Any, bits: int) -> Any:
    """Unsnapped PWLQ of x for (broadcast) breakpoints p and ranges m: the search's error model."""
    s_c = 2.0 * p / (2.0**bits - 1.0)
    k = 2.0 ** (bits - 1) - 1.0
    centre = ops.clip(ops.round(x / s_c), -k, k) * s_c
    s_t = (m - p) / (2.0 ** (bits - 1) - 1.0)
    a = ops.minimum(ops.abs(x), m)
    tail = ops.sign(x) * (p + ops.round(ops.maximum(a - p, 0.0) / s_t) * s_t)
    return ops.where(ops.abs(x) < p, centre, tail)


@keras.saving.register_keras_serializable(package='hgq')
class PWLQQuantizer(IntervalTableQuantizer):
    """Per-tensor PWLQ, b bits per region ((b+1)-bit index), in weight and activation slots.

    Args:
        bits: b in [2, 8]: the centre's signed width; each tail has b-1 bits.
        breakpoint: 'gaussian' (the paper's closed form from m and σ) or 'search' (grid search on
            the weights; for activations on a log-spaced histogram of |x| kept by calibration).
        level_frac_bits: F; levels on the grid 2^-F, the input compared on 2^-(F+1).
    """

    scheme = 'pwlq'

    def __init__(self, role: str = 'activation', bits: int = 4, breakpoint: str = 'gaussian',
                 level_frac_bits: int = 8, **kwargs: Any) -> None:
        super().__init__(role=role, level_frac_bits=level_frac_bits, **kwargs)
        self.n_bits = check_int(self.name, 'bits', bits, 2, 8, ' (the tails need b-1 >= 1 bits)')
        if breakpoint not in BREAKPOINTS:
            raise ValueError(f'{self.name}: breakpoint={breakpoint!r} is not valid; use one of {BREAKPOINTS}')
        self.breakpoint = breakpoint

    @property
    def n_levels(self) -> int:
        return 2 ** (self.n_bits + 1) - 1

    @property
    def index_bits(self) -> int:
        return self.n_bits + 1

    # --- activation statistics: max|x|, Σx, Σx², count (mergeable across batches) -------------
    def _build_stats(self) -> None:
        self.abs_max = self.add_weight(name='abs_max', shape=(), initializer='zeros', trainable=False)
        self.total = self.add_weight(name='total', shape=(), initializer='zeros', trainable=False)
        self.total_sq = self.add_weight(name='total_sq', shape=(), initializer='zeros', trainable=False)
        self.count = self.add_weight(name='count', shape=(), initializer='zeros', trainable=False)
        if self.breakpoint == 'search':  # per-bin count and Σ|x| of |x| on log-spaced bins, for the search
            self.hist_count = self.add_weight(name='hist_count', shape=(HIST_BINS,), initializer='zeros',
                                              trainable=False)
            self.hist_sum = self.add_weight(name='hist_sum', shape=(HIST_BINS,), initializer='zeros',
                                            trainable=False)

    def _stats_variables(self) -> list[keras.Variable]:
        hist = [self.hist_count, self.hist_sum] if self.breakpoint == 'search' else []
        return [self.abs_max, self.total, self.total_sq, self.count, *hist]

    def _reset_stats(self) -> None:
        for v in self._stats_variables():
            v.assign(ops.zeros(v.shape))

    def _accumulate(self, x: Any) -> list[Any]:
        stats = [ops.maximum(self.abs_max.value, ops.max(ops.abs(x))), self.total.value + ops.sum(x),
                 self.total_sq.value + ops.sum(x * x), self.count.value + ops.cast(ops.size(x), 'float32')]
        if self.breakpoint == 'search':
            a = ops.reshape(ops.abs(x), (-1, 1))
            b = ops.floor((ops.log2(ops.maximum(a, 2.0**-40)) - HIST_LOG2_LO) * HIST_PER_OCTAVE)
            member = ops.cast(ops.equal(ops.clip(b, 0.0, HIST_BINS - 1.0), ops.arange(HIST_BINS, dtype='float32')),
                              'float32')
            stats += [self.hist_count.value + ops.sum(member, axis=0),
                      self.hist_sum.value + ops.sum(member * a, axis=0)]
        return stats

    def _tables_from_stats(self, stats: list[Any]) -> tuple[Any, Any]:
        abs_max, total, total_sq, count = stats[:4]
        if self.breakpoint == 'search':  # the search on the histogram: each bin's mean |x|, weighted by its count
            hist_count, hist_sum = stats[4:]
            centres = ops.reshape(hist_sum / ops.maximum(hist_count, 1.0), (1, -1))
            return self._search(centres, abs_max, ops.reshape(hist_count, (1, -1)))
        n = ops.maximum(count, 1.0)
        mean = total / n
        sigma = ops.sqrt(ops.maximum(total_sq / n - mean * mean, 0.0))
        return self._tables(self._gaussian_breakpoint(abs_max, sigma), abs_max)

    def _tables_from_data(self, x: Any) -> tuple[Any, Any]:
        m = ops.max(ops.abs(x))
        if self.breakpoint == 'gaussian':
            return self._tables(self._gaussian_breakpoint(m, ops.std(x)), m)
        return self._search(ops.reshape(x, (1, -1)), m, 1.0)

    def _search(self, values: Any, m: Any, weights: Any) -> tuple[Any, Any]:
        """Coarse-to-fine grid over p/m minimizing Σ weights·(x̂ - x)² of the unsnapped quantizer."""
        best = self._best_ratio(values, m, weights, ops.convert_to_tensor(COARSE))
        best = self._best_ratio(values, m, weights, ops.clip(best + ops.convert_to_tensor(FINE), 0.001, 0.999))
        return self._tables(best * m, m)

    def _best_ratio(self, values: Any, m: Any, weights: Any, ratios: Any) -> Any:
        p = ops.expand_dims(ratios * m, -1) + 1e-12
        err = ops.sum(weights * ops.square(_float_pwlq(values, p, m + 2e-12, self.n_bits) - values), axis=-1)
        return ops.take(ratios, ops.argmin(err))

    @staticmethod
    def _gaussian_breakpoint(m: Any, sigma: Any) -> Any:
        sigma = sigma + 1e-12
        return sigma * ops.log(GAUSS_COEF * m / sigma + GAUSS_OFFSET)

    def _tables(self, p: Any, m: Any) -> tuple[Any, Any]:
        """Snapped (thresholds, levels), strictly ascending for every p, m (see the floors below)."""
        b, frac = self.n_bits, self.level_frac_bits
        ulp = 2.0**-frac
        n_centre, n_tail = 2 ** (b - 1) - 1, 2 ** (b - 1)  # centre magnitudes, tail levels per side
        # floors: centre step 2p/(2^b-1) >= 2 ulp and tail step >= 1 ulp keep snapped levels distinct
        p_code = ops.maximum(ops.round(p / ulp), 2.0**b - 1.0)
        m_code = ops.maximum(ops.round(m / ulp), p_code + n_tail - 1.0)
        p, m = p_code * ulp, m_code * ulp
        s_c = 2.0 * p / (2.0**b - 1.0)
        centre_pos = snap(ops.arange(1, n_centre + 1, dtype='float32') * s_c, frac)
        centre = ops.concatenate([-ops.flip(centre_pos, 0), ops.zeros((1,)), centre_pos])
        s_t = (m - p) / (n_tail - 1.0)
        tail_pos = snap(p + ops.arange(0, n_tail, dtype='float32') * s_t, frac)
        tail_neg = -ops.flip(tail_pos, 0)
        levels = ops.concatenate([tail_neg, centre, tail_pos])
        mid = lambda v: (v[1:] + v[:-1]) / 2.0  # noqa: E731
        half = ops.full((1,), ulp / 2.0)
        thresholds = ops.concatenate([mid(tail_neg), -ops.reshape(p, (1,)) + half, mid(centre),
                                      ops.reshape(p, (1,)), mid(tail_pos)])
        return thresholds, levels

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'bits': self.n_bits, 'breakpoint': self.breakpoint}


register_scheme('pwlq', PWLQQuantizer)
