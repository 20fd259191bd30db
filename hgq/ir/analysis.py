"""Exact value ranges and formats of every tensor of a Graph, and where float32 cannot be exact.

Ranges come from interval arithmetic over the quantizers' formats (the widest values the
hardware can ever see, not the calibration data). They give each node's output format — the
accumulator and result precisions that backends declare — and the float32 exactness check:
Keras computes in float32, which is exact for a sum of fixed-point products only while every
partial sum fits its 24-bit significand (docs/export.md states the bound).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..quantizers.fixed_point import ceil_log2_np, integer_bits_of_range
from .graph import Format, Graph, Node
from .windows import conv_windows, pool_windows

FLOAT32_SIGNIFICAND_BITS = 24


@dataclass
class TensorInfo:
    """Per-element bounds [lo, hi], the exact format, and the bound on any partial sum (bits)."""

    lo: np.ndarray
    hi: np.ndarray
    fmt: Format
    partial_sum_bits: int = 0  # width needed by the largest intermediate sum in float arithmetic


def _format_of_range(lo: np.ndarray, hi: np.ndarray, f: np.ndarray) -> Format:
    f = np.broadcast_to(np.asarray(f, dtype=np.float64), lo.shape)
    k, i = integer_bits_of_range(np, lo, hi, f, ceil_log2_np)
    return Format.of(k, i, f)


def _range_of_format(fmt: Format, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    k, i, f = (np.broadcast_to(a, shape).astype(np.float64) for a in (fmt.k, fmt.i, fmt.f))
    live = (k + i + f) > 0
    hi = np.where(live, 2.0**i - 2.0**-f, 0.0)
    lo = np.where(live, -k * 2.0**i, 0.0)
    return lo, hi


def _bits_for_magnitude(magnitude: np.ndarray, f: np.ndarray) -> int:
    """Width (sign included) of an integer code holding |value| <= magnitude at f fractional bits."""
    codes = np.ldexp(np.asarray(magnitude, dtype=np.float64), np.asarray(f, dtype=np.int64))
    top = float(np.max(codes, initial=0.0))
    return int(np.ceil(np.log2(top + 1.0))) + 1 if top > 0 else 0


def _info_quantize(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    fmt = node.attrs['fmt'].broadcast(node.shape)
    lo, hi = _range_of_format(fmt, node.shape)
    return TensorInfo(lo, hi, fmt)


def _linear_info(x: TensorInfo, weight: np.ndarray, wfmt: Format, bias: np.ndarray | None,
                 bfmt: Format | None, patches: Any) -> TensorInfo:
    """Interval of x·W (+b) term by term; f per output from the contributing (x, w) pairs."""
    wpos, wneg = np.maximum(weight, 0.0), np.minimum(weight, 0.0)
    xlo, xhi = patches(x.lo), patches(x.hi)
    axes = weight.ndim - 1

    def contract(a: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.tensordot(a, w, axes=axes)

    hi = contract(xhi, wpos) + contract(xlo, wneg)
    lo = contract(xlo, wpos) + contract(xhi, wneg)
    magnitude = contract(np.maximum(np.abs(xlo), np.abs(xhi)), np.abs(weight))
    wf = np.where(weight != 0, np.broadcast_to(wfmt.f, weight.shape), -(2**30))
    f = (wf.reshape(-1, weight.shape[-1]).max(axis=0) + int(np.max(x.fmt.f)))
    f = np.maximum(f, -(2**20))
    if bias is not None:
        lo, hi, magnitude = lo + bias, hi + bias, magnitude + np.abs(bias)
        f = np.maximum(f, np.broadcast_to(bfmt.f, bias.shape))
    f = np.broadcast_to(f, lo.shape)
    return TensorInfo(lo, hi, _format_of_range(lo, hi, f), _bits_for_magnitude(magnitude, f))


def _info_dense(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    a = node.attrs
    return _linear_info(ins[0], a['weight'], a['weight_fmt'], a.get('bias'), a.get('bias_fmt'), lambda v: v)


def _info_conv(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    a = node.attrs
    kernel = a['weight'].shape[:-2]
    return _linear_info(ins[0], a['weight'], a['weight_fmt'], a.get('bias'), a.get('bias_fmt'),
                        lambda v: conv_windows(v, kernel, a['strides'], a['padding']))


def _info_affine(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    a, x = node.attrs, ins[0]
    s, o = a['scale'], a['offset']
    c1, c2 = x.lo * s, x.hi * s
    lo, hi = np.minimum(c1, c2) + o, np.maximum(c1, c2) + o
    f = np.maximum(np.broadcast_to(x.fmt.f, node.shape) + a['scale_fmt'].f, a['offset_fmt'].f)
    magnitude = np.maximum(np.abs(c1), np.abs(c2)) + np.abs(o)
    return TensorInfo(lo, hi, _format_of_range(lo, hi, f), _bits_for_magnitude(magnitude, f))


def _info_relu(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    x = ins[0]
    lo, hi = np.maximum(x.lo, 0.0), np.maximum(x.hi, 0.0)
    return TensorInfo(lo, hi, _format_of_range(lo, hi, x.fmt.f))


def _info_table(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    fmt = node.attrs['out_fmt'].broadcast(node.shape)
    lo, hi = _range_of_format(fmt, node.shape)
    return TensorInfo(lo, hi, fmt)


def _info_encode(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    """Reachable indices from the input bounds: #(lo >= t) .. #(hi >= t)."""
    x, t = ins[0], node.attrs['thresholds']
    lo = np.sum(x.lo[..., None] >= t, axis=-1).astype(np.float64)
    hi = np.sum(x.hi[..., None] >= t, axis=-1).astype(np.float64)
    return TensorInfo(lo, hi, _format_of_range(lo, hi, np.zeros(node.shape)))


def _info_decode(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    """Bounds over the reachable levels; the format is the levels' own (what the hardware stores)."""
    x, levels = ins[0], node.attrs['levels']
    idx = np.arange(levels.shape[-1])
    reachable = (idx >= x.lo[..., None]) & (idx <= x.hi[..., None])
    lo = np.where(reachable, levels, np.inf).min(axis=-1)
    hi = np.where(reachable, levels, -np.inf).max(axis=-1)
    return TensorInfo(lo, hi, node.attrs['fmt'].broadcast(node.shape))


def _pooled(node: Node, v: np.ndarray, reduce: Any) -> np.ndarray:
    return reduce(pool_windows(v, node.attrs['pool_size'], node.attrs['strides']), axis=-1)


def _info_max_pool(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    x = ins[0]
    lo, hi = _pooled(node, x.lo, np.max), _pooled(node, x.hi, np.max)
    return TensorInfo(lo, hi, _format_of_range(lo, hi, np.full(lo.shape, int(np.max(x.fmt.f)))))


def _info_avg_pool(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    x = ins[0]
    fmt = node.attrs['fmt'].broadcast(node.shape)
    lo, hi = _range_of_format(fmt, node.shape)
    total = _pooled(node, np.maximum(np.abs(x.lo), np.abs(x.hi)), np.sum)
    # float32 divides the exact sum; no rounding boundary is crossed while the sum has spare bits
    f = np.maximum(int(np.max(x.fmt.f)), fmt.f + 1)
    return TensorInfo(lo, hi, fmt, _bits_for_magnitude(total, f) + 2)


def _info_add(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    lo, hi = sum(t.lo for t in ins), sum(t.hi for t in ins)
    f = np.maximum.reduce([np.broadcast_to(t.fmt.f, node.shape) for t in ins])
    magnitude = sum(np.maximum(np.abs(t.lo), np.abs(t.hi)) for t in ins)
    return TensorInfo(lo, hi, _format_of_range(lo, hi, f), _bits_for_magnitude(magnitude, f))


def _info_concat(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    axis = node.attrs['axis']
    lo = np.concatenate([t.lo for t in ins], axis=axis)
    hi = np.concatenate([t.hi for t in ins], axis=axis)
    f = np.concatenate([np.broadcast_to(t.fmt.f, t.lo.shape) for t in ins], axis=axis)
    return TensorInfo(lo, hi, _format_of_range(lo, hi, f))


def _info_reshape(node: Node, ins: list[TensorInfo | None]) -> TensorInfo:
    x = ins[0]
    f = np.broadcast_to(x.fmt.f, x.lo.shape).reshape(node.shape)
    lo, hi = x.lo.reshape(node.shape), x.hi.reshape(node.shape)
    return TensorInfo(lo, hi, _format_of_range(lo, hi, f))


INFO = {
    'quantize': _info_quantize, 'dense': _info_dense, 'conv': _info_conv, 'affine': _info_affine,
    'relu': _info_relu, 'encode': _info_encode, 'decode': _info_decode,
    'table': _info_table, 'max_pool': _info_max_pool, 'avg_pool': _info_avg_pool,
    'add': _info_add, 'concat': _info_concat, 'reshape': _info_reshape,
}


def analyze(graph: Graph) -> dict[str, TensorInfo | None]:
    """TensorInfo of every node's output (None for the float inputs)."""
    infos: dict[str, TensorInfo | None] = {}
    for node in graph.nodes:
        if node.op == 'input':
            infos[node.name] = None
            continue
        ins = [infos[n] for n in node.inputs]
        if node.op != 'quantize' and any(t is None for t in ins):
            raise ValueError(f'{node.source}: its input is not quantized; start the model with a quantizer '
                             '(every hgq weighted layer quantizes its own input)')
        infos[node.name] = INFO[node.op](node, ins)
    return infos


def float32_inexact_nodes(graph: Graph, infos: dict[str, TensorInfo | None] | None = None) -> list[tuple[str, int]]:
    """(node, bits) for every node whose float32 evaluation in Keras may round (bits > 24)."""
    infos = infos if infos is not None else analyze(graph)
    return [(n.name, infos[n.name].partial_sum_bits) for n in graph.nodes
            if infos[n.name] is not None and infos[n.name].partial_sum_bits > FLOAT32_SIGNIFICAND_BITS]


def warn_if_float32_inexact(graph: Graph) -> list[tuple[str, int]]:
    """Warn (and return) where the Keras model cannot equal the exact fixed-point result bit for bit."""
    bad = float32_inexact_nodes(graph)
    if bad:
        listing = ', '.join(f'{name} ({bits} bits)' for name, bits in bad)
        warnings.warn(f'float32 Keras inference may differ from the exact fixed-point result at: {listing}. Sums '
                      f'wider than {FLOAT32_SIGNIFICAND_BITS} bits round in float32; the exported hardware and '
                      'the emulator stay exact. Narrow these layers\' inputs or weights to make Keras exact too.',
                      stacklevel=2)
    return bad
