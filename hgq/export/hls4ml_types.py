"""Exact value ranges of IR tensors, and the fixed-point container types that hold them.

Backends need, for every tensor, a type wide enough that no value the IR can produce is rounded
or overflows: accumulators of dense/conv layers, results of add/relu/affine, the index type of a
lookup table. This module derives those from the graph alone, exactly (integers, no floats):

- a `Range` is, per element, the smallest and largest integer code (at one common scale 2^-F per
  tensor) the element can take, plus the number of fractional bits the element can need;
- `container(r)` is the narrowest single `(k, i, f)` that holds every element of the tensor.

Ranges are interval bounds: they are true bounds (every reachable value lies inside), not always
tight ones (interval arithmetic ignores correlations), which only costs bits, never exactness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.graph import Format, Node
from ..ir.intmath import as_codes, requantize
from ..ir.windows import conv_windows
from ..ir.windows import pool_windows as ir_pool_windows

NO_F = -(1 << 20)  # "no fractional bits needed": the element is the exact constant 0


def _ints(a: np.ndarray) -> np.ndarray:
    """An object array of Python ints (exact at any width)."""
    return np.asarray(a).astype(object)


def _pow2(e: int) -> int:
    return 1 << e


def _shift(codes: np.ndarray, by: int) -> np.ndarray:
    if by < 0:
        raise ValueError('internal: negative shift')
    return codes * _pow2(by)


@dataclass
class FixedType:
    """One ap_fixed type: k sign bit, i integer bits (without sign), f fractional bits."""

    k: int
    i: int
    f: int
    round_mode: str = 'TRN'
    overflow_mode: str = 'WRAP'

    @property
    def width(self) -> int:
        return self.k + self.i + self.f

    def hls(self) -> str:
        """The C++ type, e.g. `ap_fixed<8,3,AP_RND,AP_SAT>`."""
        if self.width < 1:
            raise ValueError(f'internal: type of width {self.width} ({self})')
        modes = ''
        if (self.round_mode, self.overflow_mode) != ('TRN', 'WRAP'):
            modes = f',AP_{self.round_mode},AP_{self.overflow_mode}'
        if self.k:
            return f'ap_fixed<{self.width},{self.k + self.i}{modes}>'
        return f'ap_ufixed<{self.width},{self.i}{modes}>'


@dataclass
class Range:
    """Per-element bounds: values lie in [lo·2^-F, hi·2^-F]; f: fractional bits each element may need."""

    lo: np.ndarray  # object array of ints
    hi: np.ndarray
    F: int
    f: np.ndarray  # int64, NO_F where the element is always 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lo.shape

    def bounds_at(self, F: int) -> tuple[np.ndarray, np.ndarray]:
        """Bounds as codes at scale 2^-F (floor for lo, ceil for hi when F < self.F)."""
        if F >= self.F:
            return _shift(self.lo, F - self.F), _shift(self.hi, F - self.F)
        d = _pow2(self.F - F)
        return self.lo // d, -((-self.hi) // d)

    def reshape(self, shape: tuple[int, ...]) -> Range:
        return Range(self.lo.reshape(shape), self.hi.reshape(shape), self.F, self.f.reshape(shape))


def at_scale(ranges: list[Range]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    F = max(r.F for r in ranges)
    return [r.bounds_at(F)[0] for r in ranges], [r.bounds_at(F)[1] for r in ranges], F


def container(r: Range) -> FixedType:
    """The narrowest (k, i, f) holding every element of the range (width >= 1)."""
    f = int(r.f.max(initial=NO_F))
    live = r.f > NO_F
    if f == NO_F:
        return FixedType(0, 1, 0)  # all-zero tensor: any 1-bit type holds 0
    lo, hi = r.bounds_at(max(f, r.F))
    F = max(f, r.F)
    lo_min = min((int(v) for v in lo[live].ravel()), default=0)
    hi_max = max((int(v) for v in hi[live].ravel()), default=0)
    k = int(lo_min < 0)
    # i: smallest with hi < 2^(i+F) and -lo <= 2^(i+F)
    m = max(max(hi_max, 0).bit_length(), max(-lo_min - 1, 0).bit_length() if lo_min < 0 else 0)
    i = m - F
    if k + i + f < 1:
        i = 1 - k - f
    return FixedType(k, i, f)


def constant_range(values: np.ndarray, fmt_f: np.ndarray) -> Range:
    """Range of a constant array (weights, biases): each element is its own exact bound."""
    values = np.asarray(values, dtype=np.float64)
    fmt_f = np.broadcast_to(np.asarray(fmt_f, dtype=np.int64), values.shape)
    nonzero = values != 0
    F = int(fmt_f[nonzero].max(initial=0))
    codes = _ints(as_codes(values, np.full(values.shape, F)))
    f = np.where(nonzero, fmt_f, NO_F).astype(np.int64)
    return Range(codes, codes.copy(), F, f)


def format_range(fmt: Format, shape: tuple[int, ...]) -> Range:
    """Every value a per-element format can hold."""
    fmt = fmt.broadcast(shape)
    b = fmt.k + fmt.i + fmt.f
    live = b > 0
    F = int(fmt.f[live].max(initial=0))
    hi = np.empty(shape, dtype=object)
    lo = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        if not live[idx]:
            lo[idx] = hi[idx] = 0
            continue
        span = _pow2(int(fmt.i[idx]) + F)  # 2^i at scale F
        step = _pow2(F - int(fmt.f[idx]))
        hi[idx] = span - step
        lo[idx] = -span if fmt.k[idx] else 0
    f = np.where(live, fmt.f, NO_F).astype(np.int64)
    return Range(lo, hi, F, f)


def quantize_range(src: Range | None, fmt: Format, shape: tuple[int, ...], round_mode: str,
                   overflow_mode: str) -> Range:
    """Range after an ap_fixed cast: the format's range, tightened by the input's where that is exact.

    Rounding and saturation are monotone, so [q(lo), q(hi)] bounds the output; WRAP is monotone
    only while nothing overflows, which is checked.
    """
    full = format_range(fmt, shape)
    if src is None:
        return full
    fmt = fmt.broadcast(shape)
    k, i, f = fmt.k, fmt.i, fmt.f
    # the rounded bounds at f, without overflow (a signed 200-bit integer part never overflows)
    wide = np.full(shape, 200)
    one = np.ones(shape, dtype=np.int64)
    codes_lo = requantize(src.lo.reshape(1, *shape), np.int64(src.F), one, wide, f, round_mode, 'SAT')[0]
    codes_hi = requantize(src.hi.reshape(1, *shape), np.int64(src.F), one, wide, f, round_mode, 'SAT')[0]
    F = full.F
    live = (k + i + f) > 0
    rlo = np.empty(shape, dtype=object)
    rhi = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        if not live[idx]:
            rlo[idx] = rhi[idx] = 0
            continue
        s = _pow2(F - int(f[idx]))
        qlo, qhi = int(codes_lo[idx]) * s, int(codes_hi[idx]) * s
        flo, fhi = int(full.lo[idx]), int(full.hi[idx])
        if overflow_mode == 'WRAP' and (qlo < flo or qhi > fhi):
            rlo[idx], rhi[idx] = flo, fhi
        else:
            rlo[idx], rhi[idx] = min(max(qlo, flo), fhi), max(min(qhi, fhi), flo)
    return Range(rlo, rhi, F, full.f)


def _max_bits(a: np.ndarray) -> int:
    return max((abs(int(v)).bit_length() for v in a.ravel()), default=0)


def linear_range(x: Range, weight: Range, bias: Range | None) -> Range:
    """Range of x @ W + b for x (..., n_in), W (n_in, n_out): interval arithmetic, exact integers."""
    n_in, n_out = weight.shape
    lead = x.shape[:-1]
    F = x.F + weight.F
    xl, xh = x.lo.reshape(-1, n_in), x.hi.reshape(-1, n_in)
    w = weight.lo  # constants: lo == hi
    if max(_max_bits(xl), _max_bits(xh)) + _max_bits(w) + n_in.bit_length() < 62:  # int64 is exact
        xl, xh, w = xl.astype(np.int64), xh.astype(np.int64), w.astype(np.int64)
    pos = w > 0
    a = xl[:, :, None] * w[None]  # (rows, n_in, n_out)
    b = xh[:, :, None] * w[None]
    lo = _ints(np.where(pos, a, b).sum(axis=1))
    hi = _ints(np.where(pos, b, a).sum(axis=1))
    # fractional bits: the most any contributing term (non-zero weight, live input) needs
    xf = x.f.reshape(-1, n_in)[:, :, None]
    wf = weight.f[None]
    f = np.where((wf > NO_F) & (xf > NO_F), xf + wf, NO_F).max(axis=1)
    out = Range(lo.reshape(*lead, n_out), hi.reshape(*lead, n_out), F, f.reshape(*lead, n_out).astype(np.int64))
    return add_constant(out, bias) if bias is not None else out


def add_constant(r: Range, c: Range) -> Range:
    """r + c for a constant c that broadcasts to r (a bias per output channel)."""
    F = max(r.F, c.F)
    (lo, hi), (cl, ch) = r.bounds_at(F), c.bounds_at(F)
    return Range(lo + cl, hi + ch, F, np.maximum(r.f, np.broadcast_to(c.f, r.shape)))


def add_ranges(ranges: list[Range]) -> Range:
    los, his, F = at_scale(ranges)
    return Range(sum(los[1:], los[0]), sum(his[1:], his[0]), F, np.maximum.reduce([r.f for r in ranges]))


def relu_range(r: Range) -> Range:
    zero = np.zeros(r.shape, dtype=object)
    lo = np.where(r.lo > 0, r.lo, zero)
    hi = np.where(r.hi > 0, r.hi, zero)
    f = np.where(hi > 0, r.f, NO_F).astype(np.int64)
    return Range(lo, hi, r.F, f)


def affine_range(x: Range, scale: Range, offset: Range) -> Range:
    """x·s + o per element of the last axis."""
    s = np.broadcast_to(scale.lo, x.shape)
    pos = np.vectorize(lambda v: v > 0, otypes=[bool])(s)
    a, b = x.lo * s, x.hi * s
    prod_f = np.where((np.broadcast_to(scale.f, x.shape) > NO_F) & (x.f > NO_F),
                      x.f + np.broadcast_to(scale.f, x.shape), NO_F).astype(np.int64)
    prod = Range(np.where(pos, a, b), np.where(pos, b, a), x.F + scale.F, prod_f)
    return add_constant(prod, offset)


def concat_range(ranges: list[Range], axis: int) -> Range:
    los, his, F = at_scale(ranges)
    return Range(np.concatenate(los, axis=axis), np.concatenate(his, axis=axis), F,
                 np.concatenate([r.f for r in ranges], axis=axis))


def conv_range(x: Range, weight: Range, bias: Range | None, strides: tuple[int, ...], padding: str) -> Range:
    kernel = weight.shape[:-2]
    rank = len(kernel)
    lo = conv_windows(x.lo, kernel, strides, padding, 0)
    hi = conv_windows(x.hi, kernel, strides, padding, 0)
    f = conv_windows(x.f, kernel, strides, padding, NO_F)
    out_spatial = lo.shape[:rank]
    n_in = int(np.prod(weight.shape[:-1]))
    patches = Range(lo.reshape(*out_spatial, n_in), hi.reshape(*out_spatial, n_in), x.F, f.reshape(*out_spatial, n_in))
    w2 = Range(weight.lo.reshape(n_in, -1), weight.hi.reshape(n_in, -1), weight.F, weight.f.reshape(n_in, -1))
    return linear_range(patches, w2, bias)


def pool_windows(r: Range, pool: tuple[int, ...], strides: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    out = []
    for a in (r.lo, r.hi, r.f):
        w = ir_pool_windows(a, pool, strides)  # (*out, c, n) -> (*out, n, c)
        out.append(np.swapaxes(w, -1, -2))
    return tuple(out)


def max_pool_range(r: Range, pool: tuple[int, ...], strides: tuple[int, ...]) -> Range:
    lo, hi, f = pool_windows(r, pool, strides)
    return Range(lo.max(axis=-2), hi.max(axis=-2), r.F, f.max(axis=-2))


def sum_pool_range(r: Range, pool: tuple[int, ...], strides: tuple[int, ...]) -> Range:
    lo, hi, f = pool_windows(r, pool, strides)
    return Range(lo.sum(axis=-2), hi.sum(axis=-2), r.F, f.max(axis=-2))


def node_format_type(fmt: Format, shape: tuple[int, ...], round_mode: str, overflow_mode: str) -> FixedType | None:
    """The single ap_fixed type of a per-element format when all elements share it (and none is pruned)."""
    fmt = fmt.broadcast(shape)
    ks, is_, fs = (np.unique(a) for a in (fmt.k, fmt.i, fmt.f))
    if len(ks) == len(is_) == len(fs) == 1 and int(ks[0] + is_[0] + fs[0]) > 0:
        return FixedType(int(ks[0]), int(is_[0]), int(fs[0]), round_mode, overflow_mode)
    return None


def node_source(node: Node) -> str:
    return node.source or node.name
