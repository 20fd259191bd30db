"""Run a fixed-point Graph on integer codes: the exact reference every backend is held to.

Tensors travel as (codes, f): integer codes with a batch axis and fractional bits per element.
Products and sums are computed on integers after lifting operands to a common number of
fractional bits (exact; int64 while results fit 62 bits, Python ints beyond).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..quantizers.fixed_point import quantize_np
from ..quantizers.indexed import exact_fraction_bits
from .graph import Graph, Node
from .intmath import as_codes, max_bits, requantize, round_divide, shift_left, widen
from .windows import conv_windows, pool_windows


@dataclass
class FixedTensor:
    """codes·2^-f; codes has the batch axis, f broadcasts to codes.shape[1:]."""

    codes: np.ndarray
    f: np.ndarray

    def values(self) -> np.ndarray:
        """float64 values (exact while codes fit 53 bits; use `codes` for wider results)."""
        return np.ldexp(self.codes.astype(np.float64), -np.broadcast_to(self.f, self.codes.shape[1:]))

    def lifted(self, to_f: Any) -> np.ndarray:
        """Codes at `to_f` fractional bits (>= f everywhere)."""
        return shift_left(self.codes, np.broadcast_to(np.asarray(to_f) - self.f, self.codes.shape[1:]))


def _constant(values: np.ndarray, f: np.ndarray) -> np.ndarray:
    return as_codes(values, np.broadcast_to(f, values.shape))


def _linear(x: FixedTensor, weight: np.ndarray, wf: np.ndarray, bias: np.ndarray | None, bf: np.ndarray | None,
            contract: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FixedTensor:
    """Shared exact core of dense and conv: lift x to one f, weights to one f per output channel."""
    fx = int(np.max(x.f))
    xc = x.lifted(fx)
    wf = np.broadcast_to(wf, weight.shape)
    wfo = wf.reshape(-1, weight.shape[-1]).max(axis=0)  # per output channel
    wc = shift_left(_constant(weight, wf), wfo - wf)
    n_terms = int(np.prod(weight.shape[:-1]))
    bound = max_bits(xc) + max_bits(wc) + n_terms.bit_length() + 1
    xc, wc = widen(xc, bound), widen(wc, bound)
    acc = contract(xc, wc)
    f_out = fx + wfo
    if bias is not None:
        bf = np.broadcast_to(bf, bias.shape)
        f_out = np.maximum(f_out, bf)
        acc = shift_left(widen(acc, bound + 1), np.broadcast_to(f_out - fx - wfo, acc.shape[1:]))
        acc = acc + shift_left(_constant(bias, bf), f_out - bf)
    return FixedTensor(acc, f_out)


def _patches(codes: np.ndarray, node: Node, kernel: tuple[int, ...]) -> np.ndarray:
    """(batch, *out_spatial, *kernel, c) windows of channels-last codes, Keras padding and strides."""
    return conv_windows(codes, kernel, node.attrs['strides'], node.attrs['padding'], 0, lead=1)


def _op_input(node: Node, args: list[Any]) -> Any:
    return args[0]


def _op_quantize(node: Node, args: list[Any]) -> FixedTensor:
    fmt, rnd, ovf = node.attrs['fmt'], node.attrs['round_mode'], node.attrs['overflow_mode']
    shape = node.shape
    k, i, f = (np.broadcast_to(a, shape) for a in (fmt.k, fmt.i, fmt.f))
    src = args[0]
    if isinstance(src, FixedTensor):
        return FixedTensor(requantize(src.codes, src.f, k, i, f, rnd, ovf), f)
    values = quantize_np(src, k, i, f, rnd, ovf)  # float input: the exact float64 reference
    return FixedTensor(as_codes(values, np.broadcast_to(f, values.shape)), f)


def _op_dense(node: Node, args: list[Any]) -> FixedTensor:
    a = node.attrs
    return _linear(args[0], a['weight'], a['weight_fmt'].f, a.get('bias'), _bias_f(a), lambda x, w: x @ w)


def _bias_f(attrs: dict[str, Any]) -> np.ndarray | None:
    return None if attrs.get('bias') is None else attrs['bias_fmt'].f


def _op_conv(node: Node, args: list[Any]) -> FixedTensor:
    a = node.attrs
    weight = a['weight']
    kernel = weight.shape[:-2]
    x = args[0]
    fx = int(np.max(x.f))
    patches = _patches(x.lifted(fx), node, kernel)
    rank = len(kernel)

    def contract(p: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.tensordot(p, w, axes=(tuple(range(1 + rank, 2 + 2 * rank)), tuple(range(rank + 1))))

    return _linear(FixedTensor(patches, np.int64(fx)), weight, a['weight_fmt'].f, a.get('bias'), _bias_f(a),
                   contract)


def _op_affine(node: Node, args: list[Any]) -> FixedTensor:
    a = node.attrs
    x = args[0]
    sf, of = a['scale_fmt'].f, a['offset_fmt'].f
    prod_f = np.broadcast_to(x.f, node.shape) + np.broadcast_to(sf, node.shape)
    f_out = np.maximum(prod_f, np.broadcast_to(of, node.shape))
    scale = _constant(a['scale'], sf)
    bound = max_bits(x.codes) + max_bits(scale) + int(np.max(f_out - prod_f, initial=0)) + 2
    prod = widen(x.codes, bound) * widen(scale, bound)
    offset = shift_left(_constant(a['offset'], of), np.broadcast_to(f_out, node.shape) - of)
    return FixedTensor(shift_left(prod, f_out - prod_f) + offset, f_out)


def _op_relu(node: Node, args: list[Any]) -> FixedTensor:
    x = args[0]
    return FixedTensor(np.where(x.codes > 0, x.codes, 0), x.f)


def _op_table(node: Node, args: list[Any]) -> FixedTensor:
    """Look the (already quantized) input up in the table of fn over the union input domain."""
    a = node.attrs
    x = args[0]
    domain_f, lo = a['domain_f'], a['domain_min_code']
    # domain_f is the largest f of the live elements; pruned ones (code 0) may have a larger f
    lift = np.maximum(domain_f - np.broadcast_to(x.f, x.codes.shape[1:]), 0)
    index = shift_left(x.codes, lift) - lo
    values = np.asarray(a['table'])[index.astype(np.int64)]
    fmt = a['out_fmt']
    k, i, f = (np.broadcast_to(v, node.shape) for v in (fmt.k, fmt.i, fmt.f))
    q = quantize_np(values, k, i, f, a['round_mode'], a['overflow_mode'])
    return FixedTensor(as_codes(q, np.broadcast_to(f, q.shape)), f)


def _op_encode(node: Node, args: list[Any]) -> FixedTensor:
    """Index = number of thresholds at or below the input, compared exactly as integer codes."""
    x = args[0]
    f = np.broadcast_to(x.f, node.shape)
    thresholds = node.attrs['thresholds']
    t_codes = as_codes(thresholds, np.broadcast_to(f[..., None], thresholds.shape))
    index = np.sum(x.codes[..., None] >= t_codes, axis=-1).astype(np.int64)
    return FixedTensor(index, np.zeros(node.shape, dtype=np.int64))


def _op_scaled_encode(node: Node, args: list[Any]) -> FixedTensor:
    """code·2^e with code = offset + #{j : x >= c_j·β} (β per sample, shape (1,)): exact integer comparisons."""
    x, beta = args
    c = np.asarray(node.attrs['coefficients'], dtype=np.float64)
    fc = max(int(np.max(exact_fraction_bits(c))), 0)
    c_codes = as_codes(c, np.full(c.shape, fc))
    fx = np.broadcast_to(x.f, node.shape)
    fb = int(np.max(beta.f))
    F = max(int(fx.max(initial=0)), fc + fb)
    lhs = shift_left(x.codes, F - fx)
    b = beta.lifted(fb).reshape(len(x.codes), *(1,) * len(node.shape))
    bound = max(max_bits(lhs), max_bits(b) + max_bits(c_codes) + (F - fc - fb)) + 1
    lhs, b = widen(lhs, bound), widen(b, bound)
    thresholds = (b[..., None] * widen(c_codes, bound)) * (1 << (F - fc - fb))
    count = np.sum(lhs[..., None] >= thresholds, axis=-1).astype(np.int64)
    e = int(node.attrs['step_exponent'])
    return FixedTensor(count + int(node.attrs['offset']), np.full(node.shape, -e, dtype=np.int64))


def _op_decode(node: Node, args: list[Any]) -> FixedTensor:
    """Level per element: a gather from the element's own table of exact level codes."""
    index = args[0].codes.astype(np.int64)
    f = np.broadcast_to(node.attrs['fmt'].f, node.shape)
    levels = node.attrs['levels']
    codes = as_codes(levels, np.broadcast_to(f[..., None], levels.shape))
    table = np.broadcast_to(codes, (index.shape[0], *codes.shape))
    return FixedTensor(np.take_along_axis(table, index[..., None], axis=-1)[..., 0], f)


def _pool_windows(node: Node, x: FixedTensor) -> tuple[np.ndarray, int]:
    fx = int(np.max(x.f))
    codes = x.lifted(fx)
    pool = node.attrs['pool_size']
    strides, padding = node.attrs['strides'], node.attrs['padding']
    if padding != 'valid':
        raise ValueError(f'{node.source}: pooling with padding={padding!r} is not supported; use "valid"')
    return pool_windows(codes, pool, strides, lead=1), fx  # (batch, *spatial, c, window)


def _op_max_pool(node: Node, args: list[Any]) -> FixedTensor:
    windows, fx = _pool_windows(node, args[0])
    return FixedTensor(windows.max(axis=-1), np.int64(fx))


def _op_avg_pool(node: Node, args: list[Any]) -> FixedTensor:
    windows, fx = _pool_windows(node, args[0])
    total = windows.sum(axis=-1)
    count = windows.shape[-1]
    fmt, rnd, ovf = node.attrs['fmt'], node.attrs['round_mode'], node.attrs['overflow_mode']
    k, i, f = (np.broadcast_to(v, node.shape) for v in (fmt.k, fmt.i, fmt.f))
    # value = total·2^-fx / count, rounded at 2^-f: code = round(total·2^(f-fx) / count)
    up = np.maximum(f - fx, 0)
    down = np.maximum(fx - f, 0)
    numerator = shift_left(total, np.broadcast_to(up, total.shape[1:]))
    divisor = shift_left(np.full(down.shape, count, dtype=np.int64), down)
    codes = round_divide(numerator, divisor, rnd)
    return FixedTensor(requantize(codes, f, k, i, f, 'TRN', ovf), f)


def _op_add(node: Node, args: list[Any]) -> FixedTensor:
    f_out = np.maximum.reduce([np.broadcast_to(t.f, node.shape) for t in args])
    bound = max(max_bits(t.codes) + int(np.max(f_out - t.f)) for t in args) + len(args)
    return FixedTensor(sum(widen(t.lifted(f_out), bound) for t in args), f_out)


def _aligned(t: FixedTensor, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes (batch first) and f of `t`, with unit axes after the batch so its rank matches `rank` (broadcast)."""
    shape = t.codes.shape[1:]
    pad = (1,) * (rank - len(shape))
    return t.codes.reshape(t.codes.shape[0], *pad, *shape), np.broadcast_to(t.f, shape).reshape(*pad, *shape)


def _op_mul(node: Node, args: list[Any]) -> FixedTensor:
    """Element-wise product of variables (numpy broadcasting): codes multiply, fractional bits add."""
    rank = len(node.shape)
    codes, f = _aligned(args[0], rank)
    for t in args[1:]:
        c, tf = _aligned(t, rank)
        bound = max_bits(codes) + max_bits(c)
        codes = widen(codes, bound) * widen(c, bound)
        f = f + tf
    return FixedTensor(np.broadcast_to(codes, (codes.shape[0], *node.shape)), np.broadcast_to(f, node.shape))


def _op_concat(node: Node, args: list[Any]) -> FixedTensor:
    axis = node.attrs['axis']
    fs = [np.broadcast_to(t.f, t.codes.shape[1:]) for t in args]
    codes = [t.codes.astype(object) if any(a.codes.dtype == object for a in args) else t.codes for t in args]
    return FixedTensor(np.concatenate(codes, axis=axis + 1), np.concatenate(fs, axis=axis))


def _op_reshape(node: Node, args: list[Any]) -> FixedTensor:
    x = args[0]
    f = np.broadcast_to(x.f, x.codes.shape[1:]).reshape(node.shape)
    return FixedTensor(x.codes.reshape(x.codes.shape[0], *node.shape), f)


OPS: dict[str, Callable[[Node, list[Any]], Any]] = {
    'input': _op_input, 'quantize': _op_quantize, 'dense': _op_dense, 'conv': _op_conv, 'affine': _op_affine,
    'relu': _op_relu, 'encode': _op_encode, 'decode': _op_decode,
    'table': _op_table, 'max_pool': _op_max_pool, 'avg_pool': _op_avg_pool, 'add': _op_add, 'mul': _op_mul,
    'scaled_encode': _op_scaled_encode,
    'concat': _op_concat, 'reshape': _op_reshape,
}


def run(graph: Graph, *inputs: np.ndarray, return_all: bool = False) -> Any:
    """Evaluate the graph exactly. Inputs are float arrays (batch first); outputs FixedTensors."""
    if len(inputs) != len(graph.inputs):
        raise ValueError(f'the graph has {len(graph.inputs)} inputs ({graph.inputs}), got {len(inputs)} arrays')
    env: dict[str, Any] = {}
    for name, x in zip(graph.inputs, inputs):
        x = np.asarray(x, dtype=np.float64)
        expected = graph.node(name).shape
        if tuple(x.shape[1:]) != tuple(expected):
            raise ValueError(f'input {name!r}: expected shape (batch, {", ".join(map(str, expected))}), '
                             f'got {x.shape}')
        if not np.all(np.isfinite(x)):
            raise ValueError(f'input {name!r} has {int((~np.isfinite(x)).sum())} NaN/Inf values')
        env[name] = x
    for node in graph.nodes:
        if node.op == 'input':
            continue
        if node.op not in OPS:
            raise ValueError(f'{node.source or node.name}: the emulator has no operation {node.op!r}')
        env[node.name] = OPS[node.op](node, [env[n] for n in node.inputs])
    if return_all:
        return env
    return [env[n] for n in graph.outputs]


def predict(graph: Graph, *inputs: np.ndarray) -> list[np.ndarray] | np.ndarray:
    """Output values as float64 arrays (exact for results up to 53 bits)."""
    outs = [t.values() for t in run(graph, *inputs)]
    return outs[0] if len(outs) == 1 else outs
