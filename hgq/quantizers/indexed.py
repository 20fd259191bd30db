"""Values on a finite level set: a b-bit index into a table of exact fixed-point levels.

This is the second kind of exact description a quantizer can give (the first is a
:class:`FixedFormat`). Companding (μ-law), power-of-√2 weights, interval schemes (AuGQ, PWLQ) and
codebooks all compute, per element::

    q   = cast(x)                    # a fixed-point cast: `input_format` (round, then overflow)
    idx = #{j : q >= thresholds[j]}  # encode: exact comparisons, thresholds ascending
    y   = levels[idx]                # decode: a table of exact fixed-point numbers

The level axis is the LAST axis of `thresholds` (n-1 entries) and `levels` (n entries); the
leading axes broadcast to the tensor shape (no batch axis), so a level set may be per tensor,
per channel or per element. `indexed_quantize_with` is the one implementation of the forward
value, for numpy (the reference) and for keras.ops (training), as `quantize_with` is for
fixed point. Thresholds are stored on the grid of the input cast (a threshold t between grid
points is the same comparison as the next grid point up), so hardware compares integer codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .fixed_point import FixedFormat, ceil_log2_np, integer_bits_of_range

MAX_INDEX_BITS = 16
MAX_LEVEL_F = 31  # da4ml 0.6 holds constants with at most 31 fractional bits


def exact_fraction_bits(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Smallest f such that every value along `axis` is a multiple of 2^-f (0 for integers).

    Why frexp: a float64 v = m·2^e with odd integer m has exactly max(0, -e) fractional bits.
    """
    v = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(v)
    # m·2^53 is an integer; strip its trailing zero bits to find the true last set bit
    m = np.abs(np.ldexp(mantissa, 53)).astype(np.int64)
    m = np.where(m == 0, 1, m)
    trailing = np.log2(m & -m).astype(np.int64)  # exact: m & -m is a power of two
    f = np.where(v == 0, -(2**20), 53 - exponent - trailing)
    return np.maximum(np.max(f, axis=axis), 0).astype(np.int64)


@dataclass(frozen=True)
class IndexedFormat:
    """An exact indexed number type: input cast, thresholds (encode) and levels (decode).

    Build it with :func:`indexed_format`, which checks and normalizes the arrays.
    """

    input_format: FixedFormat
    thresholds: np.ndarray  # (*param_shape, n - 1), ascending, on the input grid
    levels: np.ndarray      # (*param_shape, n), exact fixed-point values
    index_bits: int         # b: n <= 2^b

    @property
    def n_levels(self) -> int:
        return int(self.levels.shape[-1])

    def level_format(self) -> FixedFormat:
        """The narrowest per-entry fixed-point format holding every level of its set (decode's output)."""
        f = exact_fraction_bits(self.levels)
        lo, hi = self.levels.min(axis=-1), self.levels.max(axis=-1)
        k, i = integer_bits_of_range(np, lo, hi, f.astype(np.float64), ceil_log2_np)
        k, i = k.astype(np.int64), i.astype(np.int64)
        return FixedFormat(k, i, f, 'TRN', 'WRAP')

    def encode(self, x: Any) -> np.ndarray:
        """Index per element (int64), exactly as the hardware computes it."""
        q = self.input_format.quantize(x)
        return np.sum(q[..., None] >= self.thresholds, axis=-1).astype(np.int64)

    def decode(self, index: np.ndarray) -> np.ndarray:
        """Level per element (float64, exact)."""
        index = np.asarray(index, dtype=np.int64)
        levels = np.broadcast_to(self.levels, (*index.shape, self.n_levels))
        return np.take_along_axis(levels, index[..., None], axis=-1)[..., 0]

    def quantize(self, x: Any) -> np.ndarray:
        """decode(encode(x)): the exact numpy reference of the whole quantizer."""
        return self.decode(self.encode(x))


def indexed_format(input_format: FixedFormat, thresholds: Any, levels: Any, index_bits: int,
                   owner: str = 'quantizer') -> IndexedFormat:
    """Check and normalize an indexed description; errors name `owner` and what would be valid."""
    t = np.asarray(thresholds, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    if isinstance(index_bits, bool) or int(index_bits) != index_bits or not 1 <= index_bits <= MAX_INDEX_BITS:
        raise ValueError(f'{owner}: index_bits={index_bits!r} must be an integer in [1, {MAX_INDEX_BITS}]')
    n = lv.shape[-1] if lv.ndim else 0
    if n < 1 or n > 2**index_bits:
        raise ValueError(f'{owner}: {n} levels do not fit a {index_bits}-bit index (at most {2**index_bits})')
    if t.shape[:-1] != lv.shape[:-1] or t.shape[-1] != n - 1:
        raise ValueError(f'{owner}: thresholds of shape {t.shape} do not match levels of shape {lv.shape}; '
                         'the last axis must hold n-1 thresholds for n levels, the leading axes must agree')
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(lv))):
        raise ValueError(f'{owner}: thresholds and levels must be finite numbers')
    if n > 1 and np.any(np.diff(t, axis=-1) < 0):
        raise ValueError(f'{owner}: thresholds must be ascending along the last axis')
    if np.any(exact_fraction_bits(lv) > MAX_LEVEL_F):
        raise ValueError(f'{owner}: levels must be exact fixed-point numbers with at most {MAX_LEVEL_F} fractional '
                         'bits (what the hardware backends store); snap them to a grid before describing them')
    # snap thresholds up to the input grid: q >= t  <=>  q >= ceil_grid(t) for q on the grid
    f = np.broadcast_to(input_format.f, np.broadcast_shapes(np.shape(input_format.f), t.shape[:-1]))[..., None]
    t = np.ceil(np.ldexp(t, f)) * 2.0 ** -f.astype(np.float64)
    return IndexedFormat(input_format, t, lv, int(index_bits))


def indexed_quantize_with(xp: Any, x: Any, thresholds: Any, levels: Any) -> Any:
    """Exact forward value levels[#(x >= thresholds)] for numpy or keras.ops (`xp`).

    x must already be cast to the input grid; thresholds and levels are arrays (or tensors of x's
    dtype) with the level axis last. Written as a sum of level steps instead of a gather: the
    comparisons are a prefix (thresholds ascend), so every partial sum is a difference of two
    levels, exact while levels fit the dtype's significand (24 bits in float32). Schemes add their
    own straight-through gradients around it.
    """
    above = xp.where(xp.greater_equal(xp.expand_dims(x, -1), thresholds), 1.0, 0.0)
    steps = levels[..., 1:] - levels[..., :-1]
    return levels[..., 0] + xp.sum(above * steps, axis=-1)


Description = FixedFormat | IndexedFormat
