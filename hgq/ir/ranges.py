"""Exact integer value ranges of every IR tensor: the one range analysis of hgq.

Every consumer that must know how large or how fine a tensor can get reads these ranges: the
float32 exactness check and the reports (through `analysis`), the hls4ml backend's container
types, and the RTL port policy. They are computed once, exactly, on Python integers:

- a `Range` is, per element, the smallest and largest integer code at one common scale 2^-F of
  the tensor, and the fractional bits f each element can need (NO_F where it is always 0);
- `partial_bits` bounds the width of any partial sum of the op in any order of summation, the
  quantity that decides whether float32 (24-bit significand) evaluates the op exactly.

Ranges are interval bounds: every reachable value lies inside (true bounds), not always tight
ones (interval arithmetic ignores correlations), which only ever costs bits, never exactness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .graph import Format, Graph, Node
from .intmath import as_codes, requantize
from .windows import conv_windows
from .windows import pool_windows as _pool_windows

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
class Range:
    """Per-element bounds: values lie in [lo·2^-F, hi·2^-F]; f: fractional bits each element may need."""

    lo: np.ndarray  # object array of ints
    hi: np.ndarray
    F: int
    f: np.ndarray  # int64, NO_F where the element is always 0
    partial_bits: int = 0  # width of the widest partial sum (sign included); 0 for ops without sums

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

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """float64 bounds (exact while the codes fit 53 bits; for reports and input generation)."""
        scale = 2.0 ** -self.F
        as_float = np.vectorize(lambda v: float(v) * scale, otypes=[np.float64])
        return as_float(self.lo), as_float(self.hi)


def at_scale(ranges: list[Range]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    F = max(r.F for r in ranges)
    return [r.bounds_at(F)[0] for r in ranges], [r.bounds_at(F)[1] for r in ranges], F


def container_kif(r: Range) -> tuple[int, int, int]:
    """The narrowest single (k, i, f) holding every element of the range (width >= 1)."""
    f = int(r.f.max(initial=NO_F))
    live = r.f > NO_F
    if f == NO_F:
        return 0, 1, 0  # all-zero tensor: any 1-bit type holds 0
    F = max(f, r.F)
    lo, hi = r.bounds_at(F)
    lo_min = min((int(v) for v in lo[live].ravel()), default=0)
    hi_max = max((int(v) for v in hi[live].ravel()), default=0)
    k = int(lo_min < 0)
    i = _integer_bits(lo_min, hi_max) - F
    if k + i + f < 1:
        i = 1 - k - f
    return k, i, f


def _integer_bits(lo: int, hi: int) -> int:
    """Bits m with hi < 2^m and lo >= -2^m (codes on any grid)."""
    return max(max(hi, 0).bit_length(), max(-lo - 1, 0).bit_length() if lo < 0 else 0)


def element_formats(r: Range) -> Format:
    """The narrowest (k, i, f) of each element on its own; width 0 where the element is always 0."""
    k = np.zeros(r.shape, np.int64)
    i = np.zeros(r.shape, np.int64)
    f = np.where(r.f > NO_F, r.f, 0).astype(np.int64)
    for idx in np.ndindex(r.shape):
        if r.f[idx] == NO_F:
            continue
        lo, hi = int(r.lo[idx]), int(r.hi[idx])
        k[idx] = int(lo < 0)
        i[idx] = _integer_bits(lo, hi) - r.F
        if lo or hi:
            i[idx] = max(i[idx], 1 - k[idx] - f[idx])  # a live element keeps at least one bit
    return Format(k, i, f)


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


def _partial_bits(magnitude: np.ndarray, F: int, f: np.ndarray) -> int:
    """Signed width of the largest |partial sum| <= magnitude·2^-F, on each element's own 2^-f grid."""
    top = 0
    for m, fe in zip(magnitude.ravel(), np.broadcast_to(f, magnitude.shape).ravel()):
        if fe == NO_F or not m:
            continue
        shift = F - int(fe)
        code = int(m) >> shift if shift >= 0 else int(m) << -shift
        top = max(top, code)
    return top.bit_length() + 1 if top else 0


def _abs_max(r: Range) -> np.ndarray:
    return np.maximum(np.abs(r.lo), np.abs(r.hi))


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
    magnitude = _ints(np.maximum(np.abs(a), np.abs(b)).sum(axis=1))
    # fractional bits: the most any contributing term (non-zero weight, live input) needs
    xf = x.f.reshape(-1, n_in)[:, :, None]
    wf = weight.f[None]
    f = np.where((wf > NO_F) & (xf > NO_F), xf + wf, NO_F).max(axis=1)
    out = Range(lo.reshape(*lead, n_out), hi.reshape(*lead, n_out), F, f.reshape(*lead, n_out).astype(np.int64))
    magnitude = magnitude.reshape(*lead, n_out)
    if bias is not None:
        out = add_constant(out, bias)
        (bias_abs, _), Fb = bias.bounds_at(out.F), out.F
        magnitude = _shift(magnitude, Fb - F) + np.abs(np.broadcast_to(bias_abs, out.shape))
        F = Fb
    out.partial_bits = _partial_bits(magnitude, F, out.f)
    return out


def add_constant(r: Range, c: Range) -> Range:
    """r + c for a constant c that broadcasts to r (a bias per output channel)."""
    F = max(r.F, c.F)
    (lo, hi), (cl, ch) = r.bounds_at(F), c.bounds_at(F)
    return Range(lo + cl, hi + ch, F, np.maximum(r.f, np.broadcast_to(c.f, r.shape)))


def add_ranges(ranges: list[Range]) -> Range:
    los, his, F = at_scale(ranges)
    out = Range(sum(los[1:], los[0]), sum(his[1:], his[0]), F, np.maximum.reduce([r.f for r in ranges]))
    magnitude = sum(np.maximum(np.abs(lo), np.abs(hi)) for lo, hi in zip(los, his))
    out.partial_bits = _partial_bits(magnitude, F, out.f)
    return out


def _broadcast_range(r: Range, shape: tuple[int, ...]) -> Range:
    pad = (1,) * (len(shape) - len(r.shape))
    def grow(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a.reshape(*pad, *a.shape), shape)
    return Range(grow(r.lo), grow(r.hi), r.F, grow(r.f))


def mul_ranges(ranges: list[Range], shape: tuple[int, ...]) -> Range:
    """Element-wise product of variables (numpy broadcasting to `shape`): the extreme corner products."""
    acc = _broadcast_range(ranges[0], shape)
    for r in ranges[1:]:
        b = _broadcast_range(r, shape)
        corners = [acc.lo * b.lo, acc.lo * b.hi, acc.hi * b.lo, acc.hi * b.hi]
        lo, hi = np.minimum.reduce(corners), np.maximum.reduce(corners)
        f = np.where((acc.f > NO_F) & (b.f > NO_F), acc.f + b.f, NO_F).astype(np.int64)
        acc = Range(np.asarray(lo, dtype=object), np.asarray(hi, dtype=object), acc.F + b.F, f)
    acc.partial_bits = _partial_bits(np.maximum(np.abs(acc.lo), np.abs(acc.hi)), acc.F, acc.f)
    return acc


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
    out = add_constant(prod, offset)
    (p_lo, p_hi), (o_abs, _) = prod.bounds_at(out.F), offset.bounds_at(out.F)
    magnitude = np.maximum(np.abs(p_lo), np.abs(p_hi)) + np.abs(np.broadcast_to(o_abs, out.shape))
    out.partial_bits = _partial_bits(magnitude, out.F, out.f)
    return out


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
    """(lo, hi, f) windows of a 'valid' pooling as (*out, n, c)."""
    out = []
    for a in (r.lo, r.hi, r.f):
        w = _pool_windows(a, pool, strides)  # (*out, c, n) -> (*out, n, c)
        out.append(np.swapaxes(w, -1, -2))
    return tuple(out)


def max_pool_range(r: Range, pool: tuple[int, ...], strides: tuple[int, ...]) -> Range:
    lo, hi, f = pool_windows(r, pool, strides)
    return Range(lo.max(axis=-2), hi.max(axis=-2), r.F, f.max(axis=-2))


def sum_pool_range(r: Range, pool: tuple[int, ...], strides: tuple[int, ...]) -> Range:
    lo, hi, f = pool_windows(r, pool, strides)
    out = Range(lo.sum(axis=-2), hi.sum(axis=-2), r.F, f.max(axis=-2))
    out.partial_bits = _partial_bits(np.maximum(np.abs(lo), np.abs(hi)).sum(axis=-2), r.F, out.f)
    return out


def float_range(values: np.ndarray, shape: tuple[int, ...]) -> Range:
    """[min, max] of arbitrary float64 values, exactly, for every element of `shape`."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        zero = np.zeros(shape, dtype=object)
        return Range(zero, zero.copy(), 0, np.full(shape, NO_F, np.int64))
    lo_v, hi_v = float(values.min()), float(values.max())
    F = max(_exact_fraction_bits(lo_v), _exact_fraction_bits(hi_v))
    lo, hi = int(np.ldexp(lo_v, F)), int(np.ldexp(hi_v, F))
    return Range(np.full(shape, lo, dtype=object), np.full(shape, hi, dtype=object), F,
                 np.full(shape, F if (lo or hi) else NO_F, np.int64))


def _exact_fraction_bits(v: float) -> int:
    if v == 0:
        return 0
    mantissa, exponent = np.frexp(v)
    m = int(np.ldexp(mantissa, 53))
    return 53 - int(exponent) - ((m & -m).bit_length() - 1)


# ------------------------------------------------------------------------------------ per-op handlers
def _r_quantize(node: Node, ins: list[Range | None]) -> Range:
    a = node.attrs
    return quantize_range(ins[0], a['fmt'], node.shape, a['round_mode'], a['overflow_mode'])


def _linear_constants(node: Node) -> tuple[Range, Range | None]:
    a = node.attrs
    w = constant_range(a['weight'], a['weight_fmt'].f)
    b = None if a.get('bias') is None else constant_range(a['bias'], a['bias_fmt'].f)
    return w, b


def _r_dense(node: Node, ins: list[Range | None]) -> Range:
    w, b = _linear_constants(node)
    return linear_range(ins[0], w, b)


def _r_conv(node: Node, ins: list[Range | None]) -> Range:
    w, b = _linear_constants(node)
    return conv_range(ins[0], w, b, tuple(node.attrs['strides']), node.attrs['padding'])


def _r_affine(node: Node, ins: list[Range | None]) -> Range:
    a = node.attrs
    return affine_range(ins[0], constant_range(a['scale'], a['scale_fmt'].f),
                        constant_range(a['offset'], a['offset_fmt'].f))


def _r_relu(node: Node, ins: list[Range | None]) -> Range:
    return relu_range(ins[0])


def _r_encode(node: Node, ins: list[Range | None]) -> Range:
    """Reachable indices from the input bounds: #(lo >= t) .. #(hi >= t), compared exactly."""
    x, t = ins[0], np.asarray(node.attrs['thresholds'], np.float64)
    lo_v, hi_v = x.values()
    idx_lo = np.sum(lo_v[..., None] >= t, axis=-1)
    idx_hi = np.sum(hi_v[..., None] >= t, axis=-1)
    return Range(_ints(idx_lo), _ints(idx_hi), 0, np.where(idx_hi > 0, 0, NO_F).astype(np.int64))


def _r_scaled_encode(node: Node, ins: list[Range | None]) -> Range:
    """code·2^e for code in [offset, offset + n] (any β: the count of thresholds passed is all it bounds)."""
    e, offset, n = int(node.attrs['step_exponent']), int(node.attrs['offset']), len(node.attrs['coefficients'])
    F = max(-e, 0)
    lo = np.full(node.shape, offset * _pow2(F + e), dtype=object)
    hi = np.full(node.shape, (offset + n) * _pow2(F + e), dtype=object)
    return Range(lo, hi, F, np.full(node.shape, -e, dtype=np.int64))


def _r_decode(node: Node, ins: list[Range | None]) -> Range:
    """Bounds over the reachable levels, at the levels' own fractional bits."""
    x, levels = ins[0], np.asarray(node.attrs['levels'], np.float64)
    fmt_f = np.broadcast_to(node.attrs['fmt'].f, node.shape)
    idx = np.arange(levels.shape[-1])
    lo_i = np.vectorize(int, otypes=[np.int64])(x.lo)[..., None]
    hi_i = np.vectorize(int, otypes=[np.int64])(x.hi)[..., None]
    reachable = (idx >= lo_i) & (idx <= hi_i)
    lo = np.where(reachable, levels, np.inf).min(axis=-1)
    hi = np.where(reachable, levels, -np.inf).max(axis=-1)
    los, his, F = at_scale([constant_range(lo, fmt_f), constant_range(hi, fmt_f)])
    live = (lo != 0) | (hi != 0)
    return Range(los[0], his[1], F, np.where(live, fmt_f, NO_F).astype(np.int64))


def _r_table(node: Node, ins: list[Range | None]) -> Range:
    """The output quantizer applied to [min, max] of the table (rounding and saturation are monotone)."""
    a = node.attrs
    return quantize_range(float_range(a['table'], node.shape), a['out_fmt'], node.shape, a['round_mode'],
                          a['overflow_mode'])


def _pool_args(node: Node) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(int(p) for p in node.attrs['pool_size']), tuple(int(s) for s in node.attrs['strides'])


def _r_max_pool(node: Node, ins: list[Range | None]) -> Range:
    return max_pool_range(ins[0], *_pool_args(node))


def _r_avg_pool(node: Node, ins: list[Range | None]) -> Range:
    """sum / count bounded by floor/ceil at count's bits below the sum's scale, then the output cast."""
    pool, strides = _pool_args(node)
    total = sum_pool_range(ins[0], pool, strides)
    count = int(np.prod(pool))
    extra = count.bit_length()
    lo, hi = total.bounds_at(total.F + extra)
    floor_div = np.vectorize(lambda v: int(v) // count, otypes=[object])
    mean = Range(floor_div(lo), -floor_div(-hi), total.F + extra,
                 np.where(total.f > NO_F, total.F + extra, NO_F).astype(np.int64))
    a = node.attrs
    out = quantize_range(mean, a['fmt'], node.shape, a['round_mode'], a['overflow_mode'])
    # float32 divides the exact sum; no rounding boundary is crossed while the sum has spare bits
    out.partial_bits = total.partial_bits + 2 if total.partial_bits else 0
    return out


def _r_add(node: Node, ins: list[Range | None]) -> Range:
    return add_ranges(list(ins))


def _r_mul(node: Node, ins: list[Range | None]) -> Range:
    return mul_ranges(list(ins), node.shape)


def _r_concat(node: Node, ins: list[Range | None]) -> Range:
    return concat_range(list(ins), int(node.attrs['axis']))


def _r_reshape(node: Node, ins: list[Range | None]) -> Range:
    return ins[0].reshape(node.shape)


RANGES: dict[str, Callable[[Node, list[Range | None]], Range]] = {
    'quantize': _r_quantize, 'dense': _r_dense, 'conv': _r_conv, 'affine': _r_affine, 'relu': _r_relu,
    'encode': _r_encode, 'decode': _r_decode, 'table': _r_table, 'max_pool': _r_max_pool,
    'avg_pool': _r_avg_pool, 'add': _r_add, 'mul': _r_mul,
    'scaled_encode': _r_scaled_encode, 'concat': _r_concat, 'reshape': _r_reshape,
}


def exact_ranges(graph: Graph) -> dict[str, Range | None]:
    """The exact Range of every node's output (None for the float model inputs)."""
    ranges: dict[str, Range | None] = {}
    for node in graph.nodes:
        if node.op == 'input':
            ranges[node.name] = None
            continue
        ins = [ranges[n] for n in node.inputs]
        if node.op != 'quantize' and any(r is None for r in ins):
            raise ValueError(f'{node.source or node.name}: its input is not quantized; start the model with a '
                             'quantizer (every hgq weighted layer quantizes its own input)')
        if node.op not in RANGES:
            raise ValueError(f'{node.source or node.name}: no range handler for IR op {node.op!r}; known: '
                             f'{sorted(RANGES)}')
        ranges[node.name] = RANGES[node.op](node, ins)
    return ranges
