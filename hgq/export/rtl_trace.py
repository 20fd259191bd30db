"""Trace a fixed-point Graph (`hgq.ir`) through da4ml's symbolic tracer, node by node.

Each IR op becomes the da4ml operations that compute the same integers (the semantics are those of
`hgq.ir.emulator`; the tracer keeps exact (low, high, step) intervals per element):

| IR op | da4ml |
|---|---|
| input | one input port per element, quantized to the *port format* (WRAP, TRN: what a port can do) |
| quantize | `x.quantize(k, i, f, overflow_mode, round_mode)` per element (TRN/RND; WRAP/SAT/SAT_SYM); |
| | RND_CONV (ties to even) as x + 2^(-f-1) - ulp + lsb·ulp, then TRN (`_ties_to_even_bias`) |
| dense | `x @ W` (da4ml's constant-matrix solver; W split into float32-exact parts) `+ b` |
| conv | zero padding, sliding windows, then as dense on every window |
| affine | `x * scale + offset` (shift-and-add constant multiplication) |
| relu | `x.relu()` |
| encode | `v >= t` per threshold the element can cross (da4ml's sign test), summed into the index |
| decode | `v.lookup(levels)`: a ROM per element over the indices it can take |
| encode→decode | folded when the index has no other user: one ROM over the input's values (at most
| | 2^FOLD_TABLE_BITS of them), else level_0 + Σ (x >= t_j)·(level_j+1 − level_j) |
| table | `v.lookup(entries)`: a ROM per element over the values it can take, holding the IR's own table |
| | entries after the IR's output quantizer (any rounding mode: entries are constants computed here) |
| max_pool | `np.amax` over windows ('valid' padding, as the emulator) |
| avg_pool | window sum, exact rounded division by the window size (a shift, or a reciprocal multiplication) |
| add, concat, reshape | `+`, `np.concatenate`, `reshape` |

Several graph inputs/outputs are flattened and concatenated, in the graph's order, into one input
vector and one output vector.

da4ml 0.6 departs from ap_fixed (and from our emulator) in four places; each is worked around here and
held by tests/test_export_rtl.py (random IR graphs):

1. a constant quantized with WRAP folds wrongly (Decimal's truncating `%`; modulus 2^(i+1) for unsigned
   formats): constants are quantized here with `quantize_np`;
2. WRAP of a possibly negative value into an unsigned format with i > i_x + 1 wraps modulo 2^(i_x+1)
   instead of 2^i (`_fix_unsigned_wrap`);
3. SAT_SYM of a 1-bit signed format clips to 0, where ap_fixed keeps -1 (done as SAT there);
4. constants can carry a negative scale factor, after which `max` picks the wrong operand, and the
   constant-matrix solver can drop non-zero constant inputs: constants are normalized after every node
   (`_normalize_constants`) and taken out of matrix products as an exact offset (`_matmul`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import prod
from typing import Any

import numpy as np

from ..ir.graph import Format, Graph, Node
from ..ir.intmath import round_divide
from ..ir.ports import input_port
from ..ir.windows import conv_windows, pool_windows
from ..quantizers.fixed_point import quantize_np
from ..quantizers.modes import check_overflow_mode, check_round_mode

DA4ML_ROUND_MODES = ('TRN', 'RND')
#: rounding modes the RTL backend implements: da4ml's own, plus RND_CONV built from da4ml primitives
RTL_ROUND_MODES = ('TRN', 'RND', 'RND_CONV')
#: da4ml represents constants with at most 32 fractional bits (`_const_f`) and the constant-matrix
#: solver reads float32 matrices; constants outside these bounds are refused rather than rounded
MAX_CONST_F = 31
MAX_TABLE_ENTRY_BITS = 31
#: encode+decode fold into one ROM when the element's input takes at most 2^8 values (a ROM of 256
#: entries is a few LUT6 per output bit); wider inputs compare against each threshold instead
FOLD_TABLE_BITS = 8


@dataclass(frozen=True)
class PortFormat:
    """The fixed-point format of one graph input's port: per element (k, i, f), signed words of k+i+f bits."""

    name: str
    shape: tuple[int, ...]
    fmt: Format
    #: how floats beyond the port's range become words (`predict(strict=False)`): see hgq.ir.ports
    overflow: str = 'WRAP'

    @property
    def width(self) -> int:
        return int(np.max(self.fmt.width, initial=0))

    def describe(self) -> str:
        k, i, f = (np.unique(a) for a in (self.fmt.k, self.fmt.i, self.fmt.f))
        if len(k) == len(i) == len(f) == 1:
            kk, ii, ff = int(k[0]), int(i[0]), int(f[0])
            return (f'{self.name}: {prod(self.shape)} x {"ap_fixed" if kk else "ap_ufixed"}<{kk + ii + ff},{kk + ii}> '
                    f'(k={kk}, i={ii}, f={ff}; step 2^-{ff}, range [{-kk * 2.0**ii}, {2.0**ii - 2.0**-ff}])')
        return f'{self.name}: per-element formats, widths {int(self.fmt.width.min())}..{self.width} bits'

    def representable(self, x: np.ndarray) -> np.ndarray:
        """Boolean mask (batch-shaped like x) of values that the port carries exactly."""
        k, i, f = (np.broadcast_to(a, self.shape) for a in (self.fmt.k, self.fmt.i, self.fmt.f))
        q = quantize_np(x, k, i, f, 'TRN', 'WRAP')
        return q == x


def _fail(node: Node, what: str) -> NotImplementedError:
    return NotImplementedError(f'layer {node.source or node.name!r} (IR node {node.name!r}, op {node.op!r}): {what}')


# ------------------------------------------------------------------------------------------- port formats
def _consumers(graph: Graph, name: str) -> list[Node]:
    return [n for n in graph.nodes if name in n.inputs]


def default_port_format(graph: Graph, name: str) -> Format:
    """The port of `hgq.ir.ports.input_port` (the one policy both backends share), as a per-element Format."""
    port = input_port(graph, name)
    return Format.of(1, port.i, port.f, graph.node(name).shape)


def port_formats(graph: Graph, input_format: Any = None) -> list[PortFormat]:
    """The port format of every graph input: `input_format` as given ((k, i, f) for all inputs, or a list of
    one per input; arrays broadcast per element), else `default_port_format`."""
    specs: Sequence[Any]
    if input_format is None:
        specs = [None] * len(graph.inputs)
    elif isinstance(input_format, Format) or (isinstance(input_format, tuple) and len(input_format) == 3
                                              and not isinstance(input_format[0], (tuple, Format))):
        specs = [input_format] * len(graph.inputs)
    else:
        specs = list(input_format)
        if len(specs) != len(graph.inputs):
            raise ValueError(f'input_format: {len(specs)} formats for {len(graph.inputs)} graph inputs')
    ports = []
    for name, spec in zip(graph.inputs, specs):
        shape = graph.node(name).shape
        overflow = 'WRAP'
        if spec is None:
            fmt = default_port_format(graph, name)
            overflow = input_port(graph, name).overflow
        elif isinstance(spec, Format):
            fmt = spec.broadcast(shape)
        else:
            fmt = Format.of(*spec, shape=shape)
        if np.any(fmt.k < 0) or np.any(fmt.k > 1):
            raise ValueError(f'input_format for {name!r}: k must be 0 or 1')
        if np.any(fmt.width <= 0):
            raise ValueError(f'input_format for {name!r}: every element needs k + i + f >= 1 bits')
        ports.append(PortFormat(name, shape, fmt, overflow))
    return ports


# ------------------------------------------------------------------------------------------- helpers
def _fva(vars_: np.ndarray, like: Any) -> Any:
    from da4ml.trace import FixedVariableArray

    return FixedVariableArray(vars_, like.solver_options, hwconf=like.hwconf)


def _raw(x: Any) -> np.ndarray:
    return x._vars


def _check_constant(node: Node, what: str, values: np.ndarray, f: np.ndarray) -> None:
    live = values != 0
    if live.any() and int(np.max(np.broadcast_to(f, values.shape)[live])) > MAX_CONST_F:
        raise _fail(node, f'{what} has more than {MAX_CONST_F} fractional bits, beyond what da4ml 0.6 represents '
                    'exactly; narrow its quantizer')


def _float32_parts(w: np.ndarray) -> list[np.ndarray]:
    """W as a sum of float32-exact matrices (da4ml's solver reads float32); one part for usual weights."""
    parts, rest = [], np.asarray(w, dtype=np.float64)
    while np.any(rest != 0):
        hi = rest.astype(np.float32).astype(np.float64)
        parts.append(hi)
        rest = rest - hi  # exact: hi is rest rounded to 24 bits
    return parts or [np.zeros_like(w)]


def _exact_const_matmul(c: np.ndarray, w: np.ndarray) -> np.ndarray:
    """c @ w for dyadic float64 arrays, computed on Python integers and checked to be exact in float64."""
    def scaled(a: np.ndarray) -> tuple[np.ndarray, int]:
        bits = max((v.as_integer_ratio()[1].bit_length() - 1 for v in a.ravel().tolist()), default=0)
        ints = np.array([int(v * 2**bits) for v in a.ravel().tolist()], dtype=object).reshape(a.shape)
        return ints, bits

    ci, cb = scaled(np.asarray(c, dtype=np.float64))
    wi, wb = scaled(np.asarray(w, dtype=np.float64))
    exact = ci @ wi
    out = np.array([float(v) / 2 ** (cb + wb) for v in exact.ravel().tolist()]).reshape(exact.shape)
    back = np.array([int(v * 2 ** (cb + wb)) for v in out.ravel().tolist()], dtype=object).reshape(exact.shape)
    if not np.all(back == exact):
        raise NotImplementedError('a constant product exceeds 53 bits; narrow the formats')
    return out


def _matmul(x: Any, w: np.ndarray) -> Any:
    """x @ w. Constant elements of x are taken out of the constant-matrix solver and added back as an exact
    offset: da4ml 0.6's solver drops the contribution of non-zero constant inputs to an output column whose
    variable inputs all have zero weight (seen with a 'same'-padded convolution over pruned activations)."""
    from da4ml.trace import FixedVariable

    raw = _raw(x)
    const = np.vectorize(lambda v: v.low == v.high, otypes=[bool])(raw).reshape(raw.shape)
    offset = None
    if const.any():
        values = np.zeros(raw.shape)
        for idx in zip(*np.nonzero(const)):
            values[idx] = float(raw[idx].low)
            if values[idx] != raw[idx].low:
                raise NotImplementedError('a constant wider than 53 bits feeds a dense/conv layer')
        offset = _exact_const_matmul(values, w)
        raw = raw.copy()
        zero = FixedVariable.from_const(0.0, hwconf=x.hwconf, _factor=1)
        raw[const] = zero
        x = _fva(raw, x)
    parts = _float32_parts(w)
    y = x @ parts[0]
    for p in parts[1:]:
        y = y + x @ p
    if offset is not None and np.any(offset != 0):
        y = y + offset
    return y


def _quantize(x: Any, fmt: Format, shape: tuple[int, ...], round_mode: str, overflow_mode: str, node: Node) -> Any:
    rnd, ovf = check_round_mode(round_mode), check_overflow_mode(overflow_mode)
    if rnd not in RTL_ROUND_MODES:
        raise _fail(node, f'rounding mode {rnd} has no RTL implementation (supported: '
                    f'{", ".join(RTL_ROUND_MODES)}); use one of these in this layer\'s quantizer')
    k, i, f = (np.broadcast_to(a, shape) for a in (fmt.k, fmt.i, fmt.f))
    raw_x = _raw(x)
    const = np.vectorize(lambda v: v.low == v.high, otypes=[bool])(raw_x).reshape(raw_x.shape)
    if const.any():
        # da4ml 0.6 folds constants wrongly under WRAP (Decimal's truncating %, and modulus 2^(i+1) for
        # unsigned formats): quantize constant elements here, exactly, with the emulator's own function.
        y = _quantize_variables(x, k, i, f, rnd, ovf, ~const) if not const.all() else None
        out = np.empty(shape, dtype=object) if y is None else _raw(y).copy()
        for idx in zip(*np.nonzero(const)):
            value = float(raw_x[idx].low)
            if value != raw_x[idx].low:
                raise _fail(node, 'a constant wider than 53 bits reaches a quantizer')
            out[idx] = float(quantize_np(np.array(value), k[idx], i[idx], f[idx], rnd, ovf))
        return _fva(_with_zero_consts(out, x), x)
    return _quantize_variables(x, k, i, f, rnd, ovf, None)


def _quantize_variables(x: Any, k: np.ndarray, i: np.ndarray, f: np.ndarray, rnd: str, ovf: str,
                        mask: np.ndarray | None) -> Any:
    """da4ml's quantize (plus the fixes below) on the elements in `mask` (all if None); others pass through."""
    if mask is not None:
        # elements outside the mask are constants handled by the caller: quantize them in a harmless format
        k, i, f = (np.where(mask, a, d) for a, d in ((k, 1), (i, 40), (f, 40)))
    if rnd == 'RND_CONV':
        x, rnd = _ties_to_even_bias(x, k, i, f), 'TRN'
    if ovf == 'SAT_SYM':
        # A lone sign bit (k=1, i+f=0): the emulator (and ap_fixed) keep -1, i.e. saturate like SAT,
        # where da4ml's SAT_SYM would clip to 0.
        lone = (k == 1) & (i + f == 0)
        if lone.any():
            a = x.quantize(k, i, f, overflow_mode='SAT_SYM', round_mode=rnd)
            b = x.quantize(k, i, f, overflow_mode='SAT', round_mode=rnd)
            return _fva(np.where(lone, _raw(b), _raw(a)), x)
    y = x.quantize(k, i, f, overflow_mode=ovf, round_mode=rnd)
    if ovf == 'WRAP':
        y = _fix_unsigned_wrap(x, y, k, i, f, rnd)
    return y


def _grid_f(v: Any) -> int:
    """Fractional bits F >= 0 of a power-of-two grid 2^-F holding every value (low + j·step) of a traced
    element. Any such F serves `_ties_to_even_bias` (its proof needs x·2^F integer only)."""
    return max(Fraction(value).denominator.bit_length() - 1 for value in (v.low, v.step))


def _ties_to_even_bias(x: Any, k: np.ndarray, i: np.ndarray, f: np.ndarray) -> Any:
    """x plus the bias after which truncation at 2^-f is RND_CONV (round half to even), per element.

    With x = u·2^-F (u integer, F = x's fractional bits) and d = F - f >= 1, write u = q·2^d + r
    (0 <= r < 2^d) and let b = q mod 2, the lowest kept bit. Then
        floor((u + 2^(d-1) - 1 + b) / 2^d) = q + [r >= 2^(d-1) + 1 - b],
    since 0 <= r + 2^(d-1) - 1 + b < 2^(d+1): q+1 exactly when r is above half, or at half with q odd;
    that is round(u / 2^d) with ties to even. The bias 2^(-f-1) - 2^-F is a constant, and b·2^-F is the
    bit of weight 2^-f shifted down by d: z = x wrapped to the 1-bit signed format (1, -f, f) is -b·2^-f
    (a bit selection, no logic). Elements already on the 2^-f grid (d <= 0), constants and pruned elements
    (k + i + f <= 0) are left as they are; the caller truncates everything afterwards."""
    raw = _raw(x)
    out, changed = raw.copy(), False
    for idx in np.ndindex(raw.shape):
        v, ff = raw[idx], int(f[idx])
        if v.low == v.high or int(k[idx] + i[idx]) + ff <= 0:
            continue
        big_f = _grid_f(v)
        if big_f <= ff:
            continue
        z = v.quantize(1, -ff, ff, 'WRAP', 'TRN')  # -b·2^-f
        out[idx] = v + (2.0 ** (-ff - 1) - 2.0 ** -big_f) - z * 2.0 ** (ff - big_f)
        changed = True
    return _fva(out, x) if changed else x


def _fix_unsigned_wrap(x: Any, y: Any, k: np.ndarray, i: np.ndarray, f: np.ndarray, rnd: str) -> Any:
    """da4ml 0.6 wraps a possibly negative value into an unsigned format (k=0) modulo 2^min(i, i_x + 1), with
    i_x the integer bits of x's range, where ap_fixed (and the emulator) wrap modulo 2^i: for i > i_x + 1 a
    negative x keeps too few of its sign-extension bits (ap_ufixed<4,3>(-1.5) = 6.5; da4ml gives 2.5).
    For those elements: z = x wrapped to the signed format of the same width (exact in da4ml), z ≡ x mod 2^i
    and z in [-2^(i-1), 2^(i-1)); then z + 2^i·[z < 0] is the unsigned result."""
    raw_x = _raw(x)
    negative = np.vectorize(lambda v: v.low < 0, otypes=[bool])(raw_x) if raw_x.size else np.zeros(0, bool)
    fix = (k == 0) & (i + f > 0) & negative.reshape(raw_x.shape)
    if not fix.any():
        return y
    out = _raw(y).copy()
    for idx in zip(*np.nonzero(fix)):
        ii, ff = int(i[idx]), int(f[idx])
        z = raw_x[idx].quantize(1, ii - 1, ff, 'WRAP', rnd)
        out[idx] = (z + z.is_negative() * 2.0**ii).quantize(0, ii, ff, 'WRAP', 'TRN')
    return _fva(out, y)


def _patches(raw: np.ndarray, node: Node, kernel: tuple[int, ...]) -> np.ndarray:
    """(*out_spatial, *kernel, c) windows of one sample (object array), Keras padding and strides."""
    strides, padding = node.attrs['strides'], node.attrs['padding']
    if padding not in ('same', 'valid'):
        raise _fail(node, f'padding={padding!r} is not supported')
    return conv_windows(raw, kernel, strides, padding, 0)


def _pool_windows(raw: np.ndarray, node: Node) -> np.ndarray:
    """(*out_spatial, c, window) of one sample; 'valid' padding only, as the emulator."""
    pool, strides, padding = node.attrs['pool_size'], node.attrs['strides'], node.attrs['padding']
    if padding != 'valid':
        raise _fail(node, f'pooling with padding={padding!r} is not supported (the emulator has "valid" only)')
    return pool_windows(raw, pool, strides)


def _with_zero_consts(raw: np.ndarray, like: Any) -> np.ndarray:
    """Object array whose plain-number entries (padding zeros, constant table outputs) become da4ml constants
    (`from_const`, whose step is the constant's own lsb; FixedVariableArray's own conversion uses step 1)."""
    from da4ml.trace import FixedVariable

    out = np.array(raw, dtype=object, copy=True)
    flat = out.reshape(-1)
    for n, v in enumerate(flat):
        if not isinstance(v, FixedVariable):
            flat[n] = FixedVariable.from_const(float(v), hwconf=like.hwconf, _factor=1)
    return out


def _normalize_constants(y: Any) -> Any:
    """Every constant element as a plain `from_const` (scale factor 1). da4ml 0.6 can leave a constant with a
    negative scale factor (e.g. SAT clipping a value whose range lies beyond the format returns the bound
    with the value's factor); `np.maximum`/`np.amax` over such a constant then picks the wrong operand."""
    from da4ml.trace import FixedVariable

    raw = _raw(y)
    out, changed = raw.copy(), False
    flat = out.reshape(-1)
    for n, v in enumerate(flat):
        if v.low == v.high and (v.opr != 'const' or v._factor != 1):
            value = float(v.low)
            if value != v.low:
                raise AssertionError('a constant wider than 53 bits')
            flat[n] = FixedVariable.from_const(value, hwconf=v.hwconf, _factor=1)
            changed = True
    return _fva(out, y) if changed else y


# ------------------------------------------------------------------------------------------- division
def _floor_div_magic(lo: int, hi: int, d: int) -> tuple[int, int, int]:
    """(q0, m, n) with floor(u/d) == q0 + ((u - q0·d)·m >> n) for every integer u in [lo, hi]."""
    q0 = lo // d
    top = hi - q0 * d  # u - q0·d in [0, top]
    n = max(top, 1).bit_length() + (d - 1).bit_length()
    m = -(-(1 << n) // d)  # ceil(2^n / d): error < 1/d over [0, 2^bits) (Granlund & Montgomery)
    if top < 1 << 22 and top * m < 1 << 62:  # exhaustive check of the identity on the reachable range
        u = np.arange(top + 1, dtype=np.int64)
        if not np.array_equal((u * m) >> n, u // d):
            raise AssertionError('magic-number division failed its check')
    return q0, m, n


def _divide_round(total: Any, count: int, f_out: np.ndarray, rnd: str, node: Node) -> Any:
    """round(total / count) at 2^-f_out per element, exactly as `round_divide` (TRN: floor, RND: half up).

    total is an exact da4ml array. With F = f_out + 1 and u = floor(total·2^F) (a truncation: dropping bits),
    floor((u + [RND]·count) / (2·count)) is the result's code: floor(x / n) == floor(floor(x) / n) for an
    integer n, so the bits of total below 2^-F cannot change it. That quotient is a constant multiplication
    by a rounded-up reciprocal and a right shift (exact over the reachable range, see `_floor_div_magic`).
    Truncating first keeps the reciprocal and the product narrow: lifted to total's own grid instead, a
    6x6 window's quotient needed a 22-bit reciprocal and da4ml computed it wrongly (0.5 off on 4,030 of
    32,000 pooled values of a small CNN's ASQ adapter)."""
    out = np.empty(total.shape, dtype=object)
    flat_t, flat_f, flat_o = _raw(total).ravel(), f_out.ravel(), out.ravel()
    for idx, (v, fo) in enumerate(zip(flat_t, flat_f)):
        fo = int(fo)
        if v.low == v.high:  # a constant sum: divide here, exactly as the emulator
            num, den = float(v.low).as_integer_ratio()  # value = num / den, den a power of two
            q = round_divide(np.array([num << max(fo, 0)], dtype=object),
                             np.array([den * count << max(-fo, 0)], dtype=object), rnd)[0]
            flat_o[idx] = float(q) * 2.0**-fo
            continue
        big_f = fo + 1
        if _grid_f(v) > big_f:
            bound = max(abs(Fraction(v.low)), abs(Fraction(v.high)))
            v = v.quantize(int(v.low < 0), int(np.ceil(np.log2(float(bound) + 1))) + 1, big_f, 'WRAP', 'TRN')
        lo_code, hi_code = (int(Fraction(b) * 2**big_f) for b in (v.low, v.high))  # integers: v is on 2^-F
        d = 2 * count
        bias = count if rnd == 'RND' else 0
        q0, m, n = _floor_div_magic(lo_code + bias, hi_code + bias, d)
        # shifted = u'·2^-big_f with u' = u + bias - q0·d >= 0; scaled = u'·m·2^-n; its integer part
        # floor(u'·m / 2^n) = floor(u' / d); add q0 back and read the integer q as the code at 2^-fo
        shifted = v + float((bias - q0 * d) * 2.0**-big_f)
        prod_ = shifted * float(m) if m > 1 else shifted
        scaled = prod_ * float(2.0 ** (big_f - n))
        q_int = scaled.quantize(1, max(int(np.ceil(np.log2(abs(float(scaled.high)) + 2))), 1) + 1, 0,
                                overflow_mode='WRAP', round_mode='TRN')
        flat_o[idx] = (q_int + float(q0)) * float(2.0**-fo)
    return _fva(_with_zero_consts(out, total), total)


# ------------------------------------------------------------------------------------------- ops
def _op_quantize(node: Node, args: list[Any]) -> Any:
    a = node.attrs
    return _quantize(args[0], a['fmt'], node.shape, a['round_mode'], a['overflow_mode'], node)


def _op_dense(node: Node, args: list[Any]) -> Any:
    a = node.attrs
    _check_constant(node, 'its weight', a['weight'], a['weight_fmt'].f)
    y = _matmul(args[0], a['weight'])
    if a.get('bias') is not None:
        _check_constant(node, 'its bias', a['bias'], a['bias_fmt'].f)
        y = y + a['bias']
    return y


def _op_conv(node: Node, args: list[Any]) -> Any:
    a = node.attrs
    weight = a['weight']
    _check_constant(node, 'its weight', weight, a['weight_fmt'].f)
    kernel = weight.shape[:-2]
    x = args[0]
    patches = _patches(_raw(x), node, kernel)
    out_spatial = patches.shape[: len(kernel)]
    flat = _fva(_with_zero_consts(patches.reshape(*out_spatial, -1), x), x)
    y = _matmul(flat, weight.reshape(-1, weight.shape[-1]))
    if a.get('bias') is not None:
        _check_constant(node, 'its bias', a['bias'], a['bias_fmt'].f)
        y = y + a['bias']
    return y


def _op_affine(node: Node, args: list[Any]) -> Any:
    a = node.attrs
    _check_constant(node, 'its scale', a['scale'], a['scale_fmt'].f)
    _check_constant(node, 'its offset', a['offset'], a['offset_fmt'].f)
    x = args[0]
    scale = np.broadcast_to(a['scale'], node.shape)
    offset = np.broadcast_to(a['offset'], node.shape)
    out = np.empty(node.shape, dtype=object)
    for idx in np.ndindex(node.shape):
        out[idx] = _raw(x)[idx] * float(scale[idx]) + float(offset[idx])
    return _fva(_with_zero_consts(out, x), x)


def _op_relu(node: Node, args: list[Any]) -> Any:
    return args[0].relu()


def _element_values(v: Any) -> np.ndarray:
    """Every value a traced element can take, in order (da4ml keeps exact (low, high, step) intervals)."""
    low, step = float(v.low), float(v.step)
    n = int(round((float(v.high) - low) / step)) + 1
    return low + np.arange(n, dtype=np.float64) * step


def _rom(node: Node, v: Any, entries: np.ndarray, out_f: int) -> Any:
    """A ROM over the element's values holding `entries` (a constant when they are all equal)."""
    if np.all(entries == entries[0]):  # constant (also: a constant or pruned input)
        return float(entries[0])
    top = float(np.max(np.abs(entries))) * 2.0 ** max(int(out_f), 0)
    if top >= 2.0**MAX_TABLE_ENTRY_BITS:
        raise _fail(node, f'a table entry needs more than {MAX_TABLE_ENTRY_BITS} bits (da4ml ROMs hold int32 '
                    'words); narrow the output quantizer')
    return v.lookup(entries)  # numpy table over [low, high] in steps of `step` (da4ml orders by sign)


def _op_table(node: Node, args: list[Any]) -> Any:
    a = node.attrs
    x = args[0]
    table = np.asarray(a['table'], dtype=np.float64)
    domain_f, lo = int(a['domain_f']), int(a['domain_min_code'])
    fmt = a['out_fmt']
    k, i, f = (np.broadcast_to(v, node.shape) for v in (fmt.k, fmt.i, fmt.f))
    rnd, ovf = check_round_mode(a['round_mode']), check_overflow_mode(a['overflow_mode'])
    out = np.empty(node.shape, dtype=object)
    raw = _raw(x)
    for idx in np.ndindex(node.shape):
        values = _element_values(raw[idx])
        codes = np.ldexp(values, domain_f)
        if not np.all(codes == np.round(codes)):
            raise AssertionError(f'{node.source}: table input off the 2^-{domain_f} grid')
        index = codes.astype(np.int64) - lo
        if index.min() < 0 or index.max() >= len(table):
            raise AssertionError(f'{node.source}: table input outside the traced domain')
        entries = quantize_np(table[index], k[idx], i[idx], f[idx], rnd, ovf)  # the IR's own output quantizer
        out[idx] = _rom(node, raw[idx], entries, f[idx])
    return _fva(_with_zero_consts(out, x), x)


def _thermometer(v: Any, thresholds: np.ndarray) -> tuple[int, list[tuple[Any, int]]]:
    """(constant part of the index, [(bit, j)]): one comparison per threshold inside the element's range."""
    low, high = float(v.low), float(v.high)
    base = int(np.sum(thresholds <= low))
    bits = [(v >= float(t), j) for j, t in enumerate(thresholds) if low < t <= high]
    return base, bits


def _op_encode(node: Node, args: list[Any]) -> Any:
    """Index = #(x >= t): a comparison (sign of x - t) per threshold the element can cross, summed."""
    x = args[0]
    raw = _raw(x)
    thresholds = node.attrs['thresholds']
    out = np.empty(node.shape, dtype=object)
    for idx in np.ndindex(node.shape):
        base, bits = _thermometer(raw[idx], thresholds[idx])
        y: Any = float(base)
        for bit, _ in bits:
            y = bit + y
        out[idx] = y
    return _fva(_with_zero_consts(out, x), x)


def _op_scaled_encode(node: Node, args: list[Any]) -> Any:
    """code·2^e, code = offset + #{j : x >= c_j·β}: n constant products of the one β, then a comparison per
    element and threshold (the sign of x - c_j·β), summed; the power of two is a free shift. The codes leave
    in da4ml's frame 1 (`_unit_frame`)."""
    x, beta = _raw(args[0]), _raw(args[1]).ravel()[0]
    scale = 2.0 ** int(node.attrs['step_exponent'])
    thresholds = [beta * float(c) for c in node.attrs['coefficients']]
    out = np.empty(node.shape, dtype=object)
    for idx in np.ndindex(node.shape):
        y: Any = float(node.attrs['offset'])
        for t in thresholds:
            y = (x[idx] >= t) + y
        out[idx] = y * scale
    # in frame 1 here, not only where a `mul` consumes it: option b (hgq.ir.rewrite.factor_sample_scale)
    # feeds the codes to a dense layer first, whose outputs (> 2^8 values) _unit_frame cannot reframe
    return _unit_frame(node, _fva(_with_zero_consts(out, args[0]), args[0]))


def _op_decode(node: Node, args: list[Any]) -> Any:
    """Level per element: a ROM over the indices the element can take."""
    x = args[0]
    raw = _raw(x)
    levels = node.attrs['levels']
    f = np.broadcast_to(node.attrs['fmt'].f, node.shape)
    out = np.empty(node.shape, dtype=object)
    for idx in np.ndindex(node.shape):
        index = _element_values(raw[idx]).astype(np.int64)
        out[idx] = _rom(node, raw[idx], levels[idx][index], f[idx])
    return _fva(_with_zero_consts(out, x), x)


def _op_encode_decode(encode: Node, node: Node, args: list[Any]) -> Any:
    """encode then decode, folded: one ROM from the input's values to levels when the element takes at most
    2^FOLD_TABLE_BITS values, else the thermometer sum level_0 + sum_j (x >= t_j)·(level_j+1 - level_j)."""
    x = args[0]
    raw = _raw(x)
    thresholds, levels = encode.attrs['thresholds'], node.attrs['levels']
    f = np.broadcast_to(node.attrs['fmt'].f, node.shape)
    out = np.empty(node.shape, dtype=object)
    for idx in np.ndindex(node.shape):
        v = raw[idx]
        values = _element_values(v)
        if len(values) <= 2**FOLD_TABLE_BITS:
            index = np.sum(values[:, None] >= thresholds[idx][None, :], axis=-1)
            out[idx] = _rom(node, v, levels[idx][index], f[idx])
            continue
        base, bits = _thermometer(v, thresholds[idx])
        y: Any = float(levels[idx][base])
        for bit, j in bits:
            y = bit * float(levels[idx][j + 1] - levels[idx][j]) + y
        out[idx] = y
    return _fva(_with_zero_consts(out, x), x)


def _op_max_pool(node: Node, args: list[Any]) -> Any:
    x = args[0]
    windows = _fva(_pool_windows(_raw(x), node), x)
    return np.amax(windows, axis=-1)


def _op_avg_pool(node: Node, args: list[Any]) -> Any:
    a = node.attrs
    x = args[0]
    windows = _fva(_pool_windows(_raw(x), node), x)
    count = windows.shape[-1]
    total = np.sum(windows, axis=-1)
    fmt = a['fmt']
    k, i, f = (np.broadcast_to(v, node.shape) for v in (fmt.k, fmt.i, fmt.f))
    rnd, ovf = check_round_mode(a['round_mode']), check_overflow_mode(a['overflow_mode'])
    if count & (count - 1) == 0:  # a power of two: the division is a shift, then the usual quantizer
        mean = total * (1.0 / count)
        return _quantize(mean, fmt, node.shape, rnd, ovf, node)
    if rnd not in DA4ML_ROUND_MODES:
        raise _fail(node, f'rounding mode {rnd} is not supported for a pooling window of {count} elements '
                    '(TRN, RND are; any of TRN, RND, RND_CONV for power-of-two windows)')
    mean = _divide_round(total, count, f, rnd, node)  # exact codes at f, then overflow only (as the emulator)
    return _quantize(mean, fmt, node.shape, 'TRN', ovf, node)


def _op_add(node: Node, args: list[Any]) -> Any:
    y = args[0]
    for t in args[1:]:
        y = y + t
    return y


def _unit_frame(node: Node, x: Any) -> Any:
    """The same values with da4ml's lazy power-of-two factor 1, through an identity ROM per element.

    da4ml keeps each variable's bits in a frame 2^e (`_factor`) and a product's frame is the product of its
    operands' frames, so chained variable products (ASQ slots in a row: β and the code both inherit their
    input's frame) double e at every slot. In frames beyond 2^-32, da4ml writes constants (SAT bounds,
    thresholds) with up to 2^32 times too fine a step: intermediates past 64 bits, where its Verilog and
    interpreter are no longer exact. A ROM's output has frame 1; an identity ROM over at most
    2^FOLD_TABLE_BITS values is a few LUTs (β: one scalar per sample; an ASQ code: 2^b values)."""
    from da4ml.trace import FixedVariable

    raw = _raw(x)
    out = np.empty(raw.shape, dtype=object)
    for idx in np.ndindex(raw.shape):
        v = raw[idx]
        if not isinstance(v, FixedVariable) or abs(v._factor) == 1 or v.low == v.high:
            out[idx] = v
            continue
        values, f = _element_values(v), _grid_f(v)
        if len(values) > 2**FOLD_TABLE_BITS or np.max(np.abs(values)) * 2.0**f >= 2.0**MAX_TABLE_ENTRY_BITS:
            out[idx] = v  # too wide for a ROM: left as is (write_rtl still refuses intermediates past 64 bits)
            continue
        out[idx] = _rom(node, v, values, f)
    return _fva(_with_zero_consts(out, x), x)


def _op_mul(node: Node, args: list[Any]) -> Any:
    """Variable × variable: da4ml's exact multiplier (`vmul`), with numpy broadcasting as the emulator; each
    operand first in frame 1 (`_unit_frame`)."""
    rank = len(node.shape)
    args = [_unit_frame(node, a) for a in args]
    y = args[0].reshape((1,) * (rank - len(args[0].shape)) + tuple(args[0].shape))
    for t in args[1:]:
        y = y * t.reshape((1,) * (rank - len(t.shape)) + tuple(t.shape))
    return y


def _op_concat(node: Node, args: list[Any]) -> Any:
    return np.concatenate(args, axis=node.attrs['axis'])


def _op_reshape(node: Node, args: list[Any]) -> Any:
    return args[0].reshape(node.shape)


OPS: dict[str, Callable[[Node, list[Any]], Any]] = {
    'quantize': _op_quantize, 'dense': _op_dense, 'conv': _op_conv, 'affine': _op_affine, 'relu': _op_relu,
    'encode': _op_encode, 'decode': _op_decode,
    'table': _op_table, 'max_pool': _op_max_pool, 'avg_pool': _op_avg_pool, 'add': _op_add, 'mul': _op_mul,
    'scaled_encode': _op_scaled_encode, 'concat': _op_concat,
    'reshape': _op_reshape,
}


# ------------------------------------------------------------------------------------------- driver
def _foldable_encodes(graph: Graph) -> dict[str, Node]:
    """Encodes whose index feeds only one decode (and is no output): traced together as one function."""
    found = {}
    for node in graph.nodes:
        if node.op == 'encode' and node.name not in graph.outputs:
            users = _consumers(graph, node.name)
            if len(users) == 1 and users[0].op == 'decode':
                found[node.name] = node
    return found


@dataclass
class Traced:
    """da4ml's combinational logic of a graph, with how its flat input/output vectors map to the graph."""

    comb: Any  # da4ml.types.CombLogic
    ports: list[PortFormat]
    output_names: list[str]
    output_shapes: list[tuple[int, ...]]
    dummy_input: bool = False  # every input pruned: a 1-bit port that no logic reads (constant outputs)


def _keep_an_input_bit(comb: Any) -> Any:
    """Give a design whose quantizers prune every input a 1-bit dummy input (element 0), which no logic reads.

    Without any live input bit, da4ml writes `input [-1:0]` and Verilator fails with a bare "Compilation
    failed!!". The dummy bit keeps the port legal; the outputs stay the constants the emulator computes
    (any value on the port grid of a pruned input is 0, and `predict(strict=False)` wraps others to 0)."""
    from da4ml.types import Op, QInterval

    if comb.shape[0] == 0 or any(op.opcode == -1 for op in comb.ops):
        return comb
    dummy = Op(0, -1, -1, 0, QInterval(0.0, 1.0, 1.0), 0.0, 0.0)  # appended: no buffer index moves
    return comb._replace(ops=[*comb.ops, dummy])


def trace(graph: Graph, input_format: Any = None) -> Traced:
    """Feed `graph` to da4ml's tracer; see the module docstring for the op mapping."""
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace

    if not isinstance(graph, Graph):
        raise TypeError(f'need an hgq.ir.Graph (from hgq.ir.from_model), got {type(graph).__name__}')
    ports = port_formats(graph, input_format)
    n_in = sum(prod(p.shape) for p in ports)
    inp = FixedVariableArrayInput((n_in,), hwconf=HWConfig(1, -1, -1))
    env: dict[str, Any] = {}
    offset = 0
    for port in ports:
        n = prod(port.shape)
        segment = inp[offset: offset + n].reshape(port.shape)
        env[port.name] = segment.quantize(port.fmt.k, port.fmt.i, port.fmt.f)  # ports: WRAP, TRN only
        offset += n
    inputs = set(graph.inputs)
    folded = _foldable_encodes(graph)
    for node in graph.nodes:
        if node.op == 'input' or node.name in folded:
            continue
        if node.op == 'decode' and node.inputs[0] in folded:
            encode = folded[node.inputs[0]]
            env[node.name] = _normalize_constants(_op_encode_decode(encode, node, [env[encode.inputs[0]]]))
            continue
        if node.op not in OPS:
            raise _fail(node, f'the RTL backend has no operation {node.op!r}; supported: {", ".join(OPS)}')
        if node.op != 'quantize' and any(n in inputs for n in node.inputs):
            raise ValueError(f'{node.source or node.name}: its input is the raw graph input; start the model with a '
                             'quantizer')
        y = _normalize_constants(OPS[node.op](node, [env[n] for n in node.inputs]))
        if tuple(y.shape) != tuple(node.shape):
            raise AssertionError(f'{node.name}: traced shape {y.shape} != IR shape {node.shape}')
        env[node.name] = y
    outs = [env[n] for n in graph.outputs]
    flat = np.concatenate([_raw(o).ravel() for o in outs]) if outs else np.empty(0, dtype=object)
    comb = comb_trace(_raw(inp).ravel(), flat)
    kept = _keep_an_input_bit(comb)
    return Traced(kept, ports, list(graph.outputs), [tuple(graph.node(n).shape) for n in graph.outputs],
                  dummy_input=kept is not comb)
