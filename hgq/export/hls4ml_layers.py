"""IR nodes → hls4ml layer dictionaries, with every precision set from exact ranges.

The dictionaries carry the keys hls4ml's own Keras 3 converter produces for the same layer type
(`hls4ml/converters/keras_v3/*.py`); `ModelGraph.from_layer_list` turns them into a model. hls4ml's
BitExact pass is switched off: each layer's types come from `hls4ml_types` (exact integer interval
arithmetic on the IR), so accumulators never round or overflow, and quantization happens only where
the IR has a `quantize` node:

- a quantizer whose elements all share one format is a cast into `ap_fixed<W,I,AP_Q,AP_O>`: folded into
  the result type of the layer before it when that layer computes exact values and casts them once
  (dense, conv, relu, pooling, batch norm, add, concat, a table), else a linear `Activation` (a cast
  layer); one-format quantizers are first moved above reshapes (they commute), because hls4ml's
  io_stream flatten is an alias that a cast layer after it would read with the wrong packing;
- a per-element quantizer → hls4ml's `FixedPointQuantizer` (one ap_fixed cast per element, zero for
  pruned elements), io_parallel only (hls4ml refuses it with io_stream);
- `encode` / `decode` (indexed number types) → our `HGQEncode` / `HGQDecode` layers (hls4ml_indexed.py,
  C++ in hls_templates/): per-element threshold comparisons into an unsigned index, and a per-element
  table of exact levels; io_parallel only;
- a lookup table → hls4ml's `UnaryLUT` (indexed by the raw bits of its input type) holding the IR's
  table values: quantized to the output format when the tensor has one, else truncated one bit below
  the finest output format (TRN/RND: the per-element quantizer that follows then rounds exactly as if
  once) or kept exact (other rounding modes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import ranges as R
from ..ir.graph import Format, Graph, Node
from ..ir.ports import input_port
from ..ir.ranges import Range, exact_ranges
from ..quantizers.fixed_point import quantize_np
from ..quantizers.indexed import exact_fraction_bits
from . import hls4ml_types as T
from .hls4ml_types import FixedType

MAX_TABLE_INDEX_BITS = 20
EXACT_TABLE_MAX_WIDTH = 64

SUPPORTED_OPS = ('input', 'quantize', 'dense', 'conv', 'affine', 'relu', 'encode', 'decode', 'table', 'max_pool',
                 'avg_pool', 'add', 'mul', 'scaled_encode', 'concat', 'reshape')


@dataclass
class Tensor:
    """An IR tensor as it exists in the hls4ml model: the layer that produces it, its type, its range."""

    layer: str
    type: FixedType | None  # None: the raw float input
    range: Range | None
    foldable: bool = False  # the layer computes exact values and casts them into its result type


@dataclass
class Built:
    layers: list[dict[str, Any]] = field(default_factory=list)
    precision: dict[str, dict[str, str]] = field(default_factory=dict)  # layer name → {var: type}
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _plain(t: FixedType) -> FixedType:
    return FixedType(t.k, t.i, t.f)


def _mask_kbi(fmt: Format, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """hls4ml's FixedPointQuantizer mask: (k, B, I) per element, shape (1, *shape); B = 0 prunes."""
    fmt = fmt.broadcast(shape)
    b = fmt.k + fmt.i + fmt.f
    live = b > 0
    k = np.where(live, fmt.k, 0)
    B = np.where(live, b, 0)
    I = np.where(live, fmt.k + fmt.i, 0)  # noqa: E741
    return tuple(a.astype(np.int16)[None] for a in (k, B, I))  # type: ignore[return-value]


def _conv_geometry(in_shape: tuple[int, ...], out_shape: tuple[int, ...], kernel: tuple[int, ...],
                   strides: tuple[int, ...], padding: str) -> dict[str, int]:
    """The size/stride/padding keys of hls4ml's conv and pooling layers (channels last)."""
    px_in, px_out = in_shape[:-1], out_shape[:-1]
    if padding == 'same':
        total = [max(-(-n // s) * s - n + k - s, 0) for n, k, s in zip(px_in, kernel, strides)]
        before = [t // 2 for t in total]
        after = [t - b for t, b in zip(total, before)]
    else:
        before = after = [0] * len(px_in)
    if len(kernel) == 1:
        return {'filt_width': kernel[0], 'stride_width': strides[0], 'pad_left': before[0], 'pad_right': after[0],
                'in_width': px_in[0], 'out_width': px_out[0], 'n_chan': in_shape[-1], 'n_filt': out_shape[-1]}
    return {'filt_height': kernel[0], 'filt_width': kernel[1], 'stride_height': strides[0], 'stride_width': strides[1],
            'pad_top': before[0], 'pad_bottom': after[0], 'pad_left': before[1], 'pad_right': after[1],
            'in_height': px_in[0], 'in_width': px_in[1], 'out_height': px_out[0], 'out_width': px_out[1],
            'n_chan': in_shape[-1], 'n_filt': out_shape[-1]}


class Converter:
    """Walks the graph in order and emits hls4ml layer dictionaries and their precisions."""

    def __init__(self, graph: Graph, io_type: str, input_precision: str | None = None) -> None:
        self.io_type = io_type
        self.input_precision = input_precision
        self.out = Built()
        self.tensors: dict[str, Tensor] = {}
        self.used: set[str] = set()
        self.graph = Graph(_hoist_quantizers(graph), list(graph.inputs), list(graph.outputs))
        self.consumers = _consumers(self.graph)
        self.ranges: dict[str, Range | None] = {}

    # ------------------------------------------------------------------ helpers
    def name(self, base: str) -> str:
        """A unique, C++-safe, lower-case layer name (hls4ml looks precisions up by lower-case name)."""
        s = re.sub(r'\W', '_', base).lower()
        if not s or s[0].isdigit():
            s = f'l_{s}'
        unique, n = s, 0
        while unique in self.used:
            n += 1
            unique = f'{s}_{n}'
        self.used.add(unique)
        return unique

    def emit(self, layer: dict[str, Any], **precision: FixedType) -> str:
        self.out.layers.append(layer)
        self.out.precision[layer['name']] = {var: t.hls() for var, t in precision.items()}
        return layer['name']

    def arg(self, node: Node, index: int = 0) -> Tensor:
        return self.tensors[node.inputs[index]]

    def require_parallel(self, node: Node, what: str) -> None:
        if self.io_type != 'io_parallel':
            raise ValueError(
                f'{T.node_source(node)}: {what} needs io_type="io_parallel": hls4ml refuses heterogeneous '
                f'(per-element) quantization with io_type={self.io_type!r}. Export with io_type="io_parallel", or '
                f"train this layer's quantizers with granularity='tensor' so that one format covers the tensor")

    # ------------------------------------------------------------------ walk
    def run(self) -> Built:
        for node in self.graph.nodes:
            if getattr(self, f'op_{node.op}', None) is None:
                raise ValueError(f'{T.node_source(node)}: operation {node.op!r} has no hls4ml counterpart here; '
                                 f'supported operations: {", ".join(SUPPORTED_OPS)}')
            if node.op == 'input':
                self.input_type(node)  # refuses an unquantized input with the hls4ml-specific advice
        self.ranges = exact_ranges(self.graph)  # the IR's one exact range analysis sizes every result type
        for node in self.graph.nodes:
            self.tensors[node.name] = getattr(self, f'op_{node.op}')(node)
        self.out.outputs = [self.tensors[n].layer for n in self.graph.outputs]
        return self.out

    # ------------------------------------------------------------------ ops
    def op_input(self, node: Node) -> Tensor:
        t = self.input_type(node)
        name = self.name(node.name)
        self.out.inputs.append(name)
        self.emit({'name': name, 'class_name': 'InputLayer', 'input_shape': list(node.shape), 'inputs': []},
                  result=t)
        return Tensor(name, t, None)

    def input_type(self, node: Node) -> FixedType:
        """Input port type: wide enough that the first quantizer alone decides every output (see module doc)."""
        consumers = self.consumers[node.name]
        bad = [c for c in consumers if c.op != 'quantize']
        if bad:
            raise ValueError(f'{T.node_source(bad[0])}: the model input {node.name!r} feeds a {bad[0].op!r} '
                             'directly; its float values have no fixed-point format. Quantize the input first '
                             '(hgq.layers.QQuantize, or a layer with an input quantizer)')
        if self.input_precision is not None:
            return _parse_type(self.input_precision, f'input_precision for {node.name!r}')
        port = input_port(self.graph, node.name)
        return FixedType(1, port.i, port.f, 'TRN', port.overflow)

    def op_quantize(self, node: Node) -> Tensor:
        src = self.arg(node)
        a = node.attrs
        rng = self.ranges[node.name]
        uniform = T.node_format_type(a['fmt'], node.shape, a['round_mode'], a['overflow_mode'])
        producer = node.inputs[0]
        if (uniform is not None and src.foldable and len(self.consumers[producer]) == 1
                and producer not in self.graph.outputs):
            # fold the cast into the producer's result type: it computes exact values and casts them once
            self.out.precision[src.layer]['result'] = uniform.hls()
            return Tensor(src.layer, uniform, rng)
        return self.quantize(node, src, a['fmt'], a['round_mode'], a['overflow_mode'], rng, node.name)

    def quantize(self, node: Node, src: Tensor, fmt: Format, round_mode: str, overflow_mode: str, rng: Range,
                 base: str) -> Tensor:
        uniform = T.node_format_type(fmt, node.shape, round_mode, overflow_mode)
        size = int(np.prod(node.shape))
        if uniform is not None:  # a cast layer
            name = self.emit({'name': self.name(base), 'class_name': 'Activation', 'activation': 'linear',
                              'inputs': [src.layer], 'n_in': size}, result=uniform)
            return Tensor(name, uniform, rng)
        self.require_parallel(node, 'a per-element quantizer')
        out_t = T.container(rng)
        if not base.endswith(('_iq', '_oq', '_q')):
            base = f'{base}_q'  # hls4ml names the cast function nnet::<layer name>: keep clear of nnet::relu & co.
        name = self.emit({'name': self.name(base), 'class_name': 'FixedPointQuantizer', 'inputs': [src.layer],
                          'mask_kbi': _mask_kbi(fmt, node.shape), 'SAT': overflow_mode, 'RND': round_mode,
                          'fusible': False, 'overrides': {}, 'n_in': size}, result=out_t)
        return Tensor(name, out_t, rng)

    def linear_constants(self, node: Node) -> tuple[Range, Range | None, np.ndarray, np.ndarray]:
        a = node.attrs
        weight = np.asarray(a['weight'], dtype=np.float64)
        w_rng = R.constant_range(weight, a['weight_fmt'].f)
        n_out = weight.shape[-1]
        if a.get('bias') is None:
            bias = np.zeros(n_out)
            b_rng = None
        else:
            bias = np.asarray(a['bias'], dtype=np.float64)
            b_rng = R.constant_range(bias, a['bias_fmt'].f)
        return w_rng, b_rng, weight, bias

    def op_dense(self, node: Node) -> Tensor:
        x = self.arg(node)
        w_rng, b_rng, weight, bias = self.linear_constants(node)
        in_shape = x.range.shape
        if len(in_shape) > 1:  # x @ W on the last axis: a pointwise convolution
            kernel = (1,) * (len(in_shape) - 1)
            wf = node.attrs['weight_fmt'].broadcast(weight.shape)
            conv_fmt = Format(*(np.asarray(v).reshape(*kernel, *weight.shape) for v in (wf.k, wf.i, wf.f)))
            conv_node = Node(node.name, 'conv', node.inputs, node.shape,
                             {**node.attrs, 'weight': weight.reshape(*kernel, *weight.shape), 'weight_fmt': conv_fmt,
                              'strides': kernel, 'padding': 'valid'}, node.source)
            return self.op_conv(conv_node)
        rng = self.ranges[node.name]
        acc = T.container(rng)
        name = self.emit({'name': self.name(node.name), 'class_name': 'Dense', 'inputs': [x.layer],
                          'n_in': weight.shape[0], 'n_out': weight.shape[1], 'weight_data': weight,
                          'bias_data': bias, 'use_bias': True, 'data_format': 'channels_last',
                          'input_shape': [list(in_shape)]},
                         weight=T.container(w_rng), bias=T.container(b_rng or R.constant_range(bias, 0)),
                         accum=acc, result=acc)
        return Tensor(name, acc, rng, True)

    def op_conv(self, node: Node) -> Tensor:
        x = self.arg(node)
        w_rng, b_rng, weight, bias = self.linear_constants(node)
        kernel = tuple(weight.shape[:-2])
        strides = tuple(int(s) for s in node.attrs['strides'])
        padding = node.attrs['padding']
        if len(kernel) not in (1, 2):
            raise ValueError(f'{T.node_source(node)}: {len(kernel)}-D convolution is not supported by hls4ml; '
                             'use QConv1D or QConv2D')
        if padding not in ('valid', 'same'):
            raise ValueError(f'{T.node_source(node)}: padding={padding!r} is not supported; use "valid" or "same"')
        rng = self.ranges[node.name]
        acc = T.container(rng)
        layer = {'name': self.name(node.name), 'class_name': f'Conv{len(kernel)}D', 'inputs': [x.layer],
                 'weight_data': weight, 'bias_data': bias, 'use_bias': True, 'data_format': 'channels_last',
                 'input_shape': [list(x.range.shape)],
                 **_conv_geometry(x.range.shape, node.shape, kernel, strides, padding)}
        name = self.emit(layer, weight=T.container(w_rng), bias=T.container(b_rng or R.constant_range(bias, 0)),
                         accum=acc, result=acc)
        return Tensor(name, acc, rng, True)

    def op_affine(self, node: Node) -> Tensor:
        x = self.arg(node)
        a = node.attrs
        scale = np.asarray(a['scale'], dtype=np.float64)
        offset = np.asarray(a['offset'], dtype=np.float64)
        s_rng = R.constant_range(scale, a['scale_fmt'].f)
        o_rng = R.constant_range(offset, a['offset_fmt'].f)
        rng = self.ranges[node.name]
        out_t = T.container(rng)
        name = self.emit({'name': self.name(node.name), 'class_name': 'BatchNormalization', 'inputs': [x.layer],
                          'n_in': int(np.prod(node.shape)), 'n_filt': int(node.shape[-1]), 'scale_data': scale,
                          'bias_data': offset, 'use_gamma': True, 'use_beta': True, 'data_format': 'channels_last'},
                         scale=T.container(s_rng), bias=T.container(o_rng), result=out_t)
        return Tensor(name, out_t, rng, True)

    def op_relu(self, node: Node) -> Tensor:
        x = self.arg(node)
        rng = self.ranges[node.name]
        out_t = T.container(rng)
        name = self.emit({'name': self.name(node.name), 'class_name': 'Activation', 'activation': 'relu',
                          'inputs': [x.layer], 'n_in': int(np.prod(node.shape))}, result=out_t)
        return Tensor(name, out_t, rng, True)

    def op_max_pool(self, node: Node) -> Tensor:
        x = self.arg(node)
        pool, strides = self.pool_args(node)
        rng = self.ranges[node.name]
        t = _plain(x.type)
        name = self.emit(self.pool_layer(node, x, pool, strides, 'Max'), accum=t, result=t)
        return Tensor(name, t, rng, True)

    def op_avg_pool(self, node: Node) -> Tensor:
        """hls4ml sums in accum_t, then divides with ap_fixed's division, which truncates toward zero at
        accum_t's fractional bits. That equals the IR's rounded division when the quotient is exact (a
        power-of-two window), or when truncation is a floor (non-negative input) followed by TRN/RND at
        fewer bits, or when the IR rounds TRN_ZERO itself."""
        x = self.arg(node)
        a = node.attrs
        fmt, rnd, ovf = a['fmt'], a['round_mode'], a['overflow_mode']
        pool, strides = self.pool_args(node)
        count = int(np.prod(pool))
        total = R.sum_pool_range(x.range, pool, strides)
        s = T.container(total)
        live = fmt.broadcast(node.shape)
        f_out = int(live.f[(live.k + live.i + live.f) > 0].max(initial=0))
        nonnegative = all(int(v) >= 0 for v in x.range.lo.ravel())
        if count & (count - 1) == 0:
            acc_f = s.f + count.bit_length() - 1  # the quotient sum / 2^n is exact
        elif (nonnegative and rnd in ('TRN', 'RND')) or rnd == 'TRN_ZERO':
            acc_f = max(s.f, f_out + (1 if rnd == 'RND' else 0))  # truncation below the rounding bit
        else:
            raise NotImplementedError(
                f'{T.node_source(node)}: average pooling over {count} elements {pool} of a signed input with '
                f'round_mode={rnd!r} cannot be exported exactly: hls4ml divides with ap_fixed division, which '
                'truncates toward zero. Use a power-of-two window (2, 4, 2x2), a non-negative input (after relu), '
                "or round_mode='TRN_ZERO' in the pooling's output quantizer")
        acc = FixedType(s.k, s.i, acc_f)  # holds the sum and the truncated quotient
        lo, hi = total.bounds_at(acc_f)
        quotient = Range(_floor_div(lo, count), -_floor_div(-hi, count), acc_f,
                         np.where(total.f > R.NO_F, acc_f, R.NO_F))
        rng = self.ranges[node.name]
        uniform = T.node_format_type(fmt, node.shape, rnd, ovf)
        layer = self.pool_layer(node, x, pool, strides, 'Average')
        if uniform is not None:  # the cast into the result type is the quantizer
            name = self.emit(layer, accum=acc, result=uniform)
            return Tensor(name, uniform, rng)
        name = self.emit(layer, accum=acc, result=acc)
        return self.quantize(node, Tensor(name, acc, quotient), fmt, rnd, ovf, rng, node.name)

    def pool_args(self, node: Node) -> tuple[tuple[int, ...], tuple[int, ...]]:
        a = node.attrs
        pool = tuple(int(p) for p in a['pool_size'])
        strides = tuple(int(s) for s in a['strides'])
        if a['padding'] != 'valid':
            raise ValueError(f'{T.node_source(node)}: pooling with padding={a["padding"]!r} is not supported; '
                             'use padding="valid"')
        if len(pool) not in (1, 2):
            raise ValueError(f'{T.node_source(node)}: {len(pool)}-D pooling is not supported; use 1-D or 2-D')
        return pool, strides

    def pool_layer(self, node: Node, x: Tensor, pool: tuple[int, ...], strides: tuple[int, ...],
                   kind: str) -> dict[str, Any]:
        geo = _conv_geometry(x.range.shape, node.shape, pool, strides, 'valid')
        geo['pool_width'] = geo.pop('filt_width')
        if 'filt_height' in geo:
            geo['pool_height'] = geo.pop('filt_height')
        else:
            geo['n_in'], geo['n_out'] = geo['in_width'], geo['out_width']
        return {'name': self.name(node.name), 'class_name': f'{kind}Pooling{len(pool)}D', 'inputs': [x.layer],
                'data_format': 'channels_last', 'input_shape': [list(x.range.shape)], **geo}

    def fold_pairwise(self, node: Node, combine_range: Any, layer: dict[str, Any]) -> Tensor:
        """Fold >2 inputs into a chain of 2-input hls4ml layers (its Merge/Concatenate take two), each part's
        result type holding its exact range; the last part carries the node's name."""
        args = [self.tensors[n] for n in node.inputs]
        acc = args[0]
        for j, b in enumerate(args[1:]):
            rng = combine_range(acc.range, b.range)
            t = T.container(rng)
            base = node.name if j == len(args) - 2 else f'{node.name}_part{j}'
            name = self.emit({'name': self.name(base), **layer, 'inputs': [acc.layer, b.layer],
                              'output_shape': list(rng.shape)}, result=t)
            acc = Tensor(name, t, rng, True)
        return acc

    def op_add(self, node: Node) -> Tensor:
        return self.fold_pairwise(node, lambda a, b: R.add_ranges([a, b]), {'class_name': 'Merge', 'op': 'add'})

    def op_mul(self, node: Node) -> Tensor:
        """Variable × variable: hls4ml's Merge multiply, its result type holding the exact product."""
        args = [self.tensors[n] for n in node.inputs]
        if len(args) == 2 and args[0].range.shape == tuple(node.shape) and int(np.prod(args[1].range.shape)) == 1:
            return self.scale_by_scalar(node, args[0], args[1])
        if any(a.range.shape != tuple(node.shape) for a in args):
            raise NotImplementedError(f'{T.node_source(node)}: hls4ml multiplies tensors of one shape only; got '
                                      f'{[a.range.shape for a in args]} for {tuple(node.shape)} (broadcasting is '
                                      'exact in the emulator and the RTL backend)')
        return self.fold_pairwise(node, lambda a, b: R.mul_ranges([a, b], tuple(node.shape)),
                                  {'class_name': 'Merge', 'op': 'multiply'})

    def scale_by_scalar(self, node: Node, x: Tensor, beta: Tensor) -> Tensor:
        """x·β with one β per sample (ASQ's step): our HGQScale layer, its result type holding the exact product."""
        self.require_parallel(node, 'a product with a per-sample scalar')
        rng = self.ranges[node.name]
        out_t = T.container(rng)
        name = self.emit({'name': self.name(node.name), 'class_name': 'HGQScale', 'inputs': [x.layer, beta.layer],
                          'n_in': int(np.prod(node.shape))}, result=out_t)
        return Tensor(name, out_t, rng, True)

    def op_scaled_encode(self, node: Node) -> Tensor:
        """code·2^e, code = offset + #{j : x >= c_j·β}: our HGQScaledEncode layer (exact ap_fixed products)."""
        self.require_parallel(node, 'an adaptive-step quantizer (ASQ)')
        x, beta = self.arg(node, 0), self.arg(node, 1)
        c = np.asarray(node.attrs['coefficients'], np.float64)
        c_type = T.container(R.constant_range(c, np.full(c.shape, max(int(exact_fraction_bits(c)), 0))))
        rng = self.ranges[node.name]
        out_t = T.container(rng)
        offset, n = int(node.attrs['offset']), len(c)
        code_bits = max(abs(offset), abs(offset + n)).bit_length() + 2
        name = self.emit({'name': self.name(node.name), 'class_name': 'HGQScaledEncode',
                          'inputs': [x.layer, beta.layer], 'n_in': int(np.prod(node.shape)), 'n_thresholds': n,
                          'offset': offset, 'step_exponent': int(node.attrs['step_exponent']),
                          'code_bits': code_bits, 'coefficients_data': c}, coefficients=c_type, result=out_t)
        return Tensor(name, out_t, rng)

    def op_concat(self, node: Node) -> Tensor:
        rank = len(node.shape)
        axis = int(node.attrs['axis'])
        axis = axis - rank if axis >= 0 else axis  # negative: hls4ml's kernels and shape logic accept it as is
        return self.fold_pairwise(node, lambda a, b: R.concat_range([a, b], axis),
                                  {'class_name': 'Concatenate', 'op': f'concatenate{rank}d', 'axis': axis})

    def op_reshape(self, node: Node) -> Tensor:
        x = self.arg(node)
        rng = x.range.reshape(node.shape)
        name = self.emit({'name': self.name(node.name), 'class_name': 'Reshape', 'inputs': [x.layer],
                          'target_shape': list(node.shape)}, result=x.type)
        return Tensor(name, x.type, rng)

    def op_encode(self, node: Node) -> Tensor:
        """Index per element; thresholds clipped to what the input type can hold (the comparisons are unchanged)."""
        self.require_parallel(node, 'an indexed quantizer (encode)')
        x = self.arg(node)
        t_in = x.type
        lowest = -float(t_in.k) * 2.0 ** t_in.i
        thresholds = np.clip(np.asarray(node.attrs['thresholds'], np.float64), lowest, 2.0 ** t_in.i)
        if thresholds.shape[-1] == 0:  # one level: a threshold no input reaches keeps the C++ arrays non-empty
            thresholds = np.full((*node.shape, 1), 2.0 ** t_in.i)
        t_type = T.container(R.constant_range(thresholds, np.full(thresholds.shape, max(t_in.f, 0))))
        rng = self.ranges[node.name]
        out_t = T.container(rng)
        name = self.emit({'name': self.name(node.name), 'class_name': 'HGQEncode', 'inputs': [x.layer],
                          'n_in': int(np.prod(node.shape)), 'n_thresholds': int(thresholds.shape[-1]),
                          'thresholds_data': thresholds.reshape(-1)}, thresholds=t_type, result=out_t)
        return Tensor(name, out_t, rng)

    def op_decode(self, node: Node) -> Tensor:
        """Level per element from its own table; the result type holds every reachable level exactly."""
        self.require_parallel(node, 'an indexed quantizer (decode)')
        x = self.arg(node)
        levels = np.asarray(node.attrs['levels'], np.float64)
        fmt_f = np.broadcast_to(node.attrs['fmt'].f, node.shape)
        level_t = T.container(R.constant_range(levels, np.broadcast_to(fmt_f[..., None], levels.shape)))
        rng = self.ranges[node.name]
        out_t = T.container(rng)
        name = self.emit({'name': self.name(node.name), 'class_name': 'HGQDecode', 'inputs': [x.layer],
                          'n_in': int(np.prod(node.shape)), 'n_levels': int(levels.shape[-1]),
                          'levels_data': levels.reshape(-1)}, levels=level_t, result=out_t)
        return Tensor(name, out_t, rng, True)

    def op_table(self, node: Node) -> Tensor:
        """hls4ml's UnaryLUT indexes its table with the raw bits of the input type, so the IR's table over
        the union domain is laid out by those bits; the per-element output quantizer follows."""
        x = self.arg(node)
        a = node.attrs
        t_in = x.type
        width = t_in.width
        if width > MAX_TABLE_INDEX_BITS:
            raise ValueError(f'{T.node_source(node)}: the lookup table would be indexed by {width} bits (input type '
                             f'{t_in.hls()}); at most {MAX_TABLE_INDEX_BITS} are supported. Narrow its input quantizer')
        domain_f, lo, table = int(a['domain_f']), int(a['domain_min_code']), np.asarray(a['table'], np.float64)
        if t_in.f > domain_f:
            raise ValueError(f'{T.node_source(node)}: internal: table input has {t_in.f} fractional bits, its '
                             f'domain only {domain_f}')
        raw = np.arange(1 << width, dtype=np.int64)
        code = np.where((t_in.k == 1) & (raw >= (1 << (width - 1))), raw - (1 << width), raw)
        index = code * (1 << (domain_f - t_in.f)) - lo
        reachable = (index >= 0) & (index < len(table))
        values = np.where(reachable, table[np.clip(index, 0, len(table) - 1)], 0.0)

        fmt, rnd, ovf = a['out_fmt'], a['round_mode'], a['overflow_mode']
        uniform = T.node_format_type(fmt, node.shape, rnd, ovf)
        if uniform is not None:  # quantize the table itself: one format for every element
            stored = quantize_np(values, uniform.k, uniform.i, uniform.f, rnd, ovf)
            stored_f = uniform.f
        else:
            self.require_parallel(node, 'a lookup table with a per-element output quantizer')
            live = fmt.broadcast(node.shape)
            f_max = int(live.f[(live.k + live.i + live.f) > 0].max(initial=0))
            if rnd in ('TRN', 'RND'):
                # floor at f_max (+1 for RND) then the element's own rounding: equal to rounding once
                stored_f = f_max + (1 if rnd == 'RND' else 0)
                stored = np.floor(np.ldexp(values, stored_f)) * 2.0**-stored_f
            else:
                stored_f = _exact_fraction_bits(values)
                stored = values
        s_rng = R.constant_range(stored, stored_f)
        table_t = T.container(s_rng)
        if table_t.width > EXACT_TABLE_MAX_WIDTH:
            raise NotImplementedError(
                f'{T.node_source(node)}: the table of {a.get("function", "the function")!r} with rounding {rnd!r} and '
                f'a per-element output format would need {table_t.width}-bit entries to stay exact; use '
                "round_mode='RND' or 'TRN', or one output format for the whole tensor (granularity='tensor')")
        from hls4ml.model.types import FixedPrecisionType

        lut_rng = Range(np.full(node.shape, min(s_rng.lo.ravel().tolist()), dtype=object),
                        np.full(node.shape, max(s_rng.hi.ravel().tolist()), dtype=object), s_rng.F,
                        np.full(node.shape, table_t.f, dtype=np.int64))
        name = self.emit({'name': self.name(node.name if uniform is not None else f'{node.name}_lut'),
                          'class_name': 'UnaryLUT', 'activation': 'unary_lut', 'inputs': [x.layer],
                          'n_in': int(np.prod(node.shape)), 'table_data': stored,
                          'table_t': FixedPrecisionType(table_t.width, table_t.k + table_t.i, bool(table_t.k))},
                         table=table_t, result=table_t)
        lut = Tensor(name, table_t, lut_rng)
        if uniform is not None:  # the stored values are quantized already; the result type is a plain container
            return Tensor(name, table_t, self.ranges[node.name], True)
        rng = self.ranges[node.name]
        return self.quantize(node, lut, fmt, rnd, ovf, rng, node.name)


def _floor_div(a: np.ndarray, d: int) -> np.ndarray:
    return np.vectorize(lambda v: int(v) // d, otypes=[object])(a)


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    found: dict[str, list[Node]] = {n.name: [] for n in graph.nodes}
    for n in graph.nodes:
        for src in n.inputs:
            found[src].append(n)
    return found


def _hoist_quantizers(graph: Graph) -> list[Node]:
    """Move one-format quantizers above the reshapes that feed them (they commute): reshape → quantize
    becomes quantize → reshape, so that the cast can fold into the layer before the reshape; hls4ml's
    io_stream flatten is an alias that a cast layer after it would read with the wrong packing."""
    nodes = list(graph.nodes)
    changed = True
    while changed:
        changed = False
        consumers = _consumers(Graph(nodes, graph.inputs, graph.outputs))
        for pos, q in enumerate(nodes):
            if q.op != 'quantize':
                continue
            r_pos = next(j for j, n in enumerate(nodes) if n.name == q.inputs[0])
            r = nodes[r_pos]
            if r.op != 'reshape' or len(consumers[r.name]) != 1 or r.name in graph.outputs:
                continue
            a = q.attrs
            uniform = T.node_format_type(a['fmt'], q.shape, a['round_mode'], a['overflow_mode'])
            if uniform is None:
                continue
            src_shape = next(n.shape for n in nodes if n.name == r.inputs[0])
            fmt = Format.of(uniform.k, uniform.i, uniform.f, src_shape)
            nodes[r_pos] = Node(r.name, 'quantize', list(r.inputs), src_shape, {**a, 'fmt': fmt}, q.source)
            nodes[pos] = Node(q.name, 'reshape', [r.name], q.shape, dict(r.attrs), r.source)
            changed = True
            break
    return nodes


def _exact_fraction_bits(values: np.ndarray) -> int:
    """Fractional bits that represent every float64 value exactly."""
    f = 0
    for v in np.asarray(values, dtype=np.float64).ravel():
        if v == 0:
            continue
        mantissa, exponent = np.frexp(v)
        m = int(np.ldexp(mantissa, 53))
        tz = (m & -m).bit_length() - 1
        f = max(f, 53 - exponent - tz)
    return f


_TYPE_RE = re.compile(r'^\s*(?:ap_)?(u?)fixed<\s*(-?\d+)\s*,\s*(-?\d+)\s*'
                      r'(?:,\s*(?:AP_)?(\w+)\s*)?(?:,\s*(?:AP_)?(\w+)\s*)?>\s*$')


def _parse_type(text: str, what: str) -> FixedType:
    m = _TYPE_RE.match(text)
    if not m:
        raise ValueError(f'{what}: {text!r} is not an ap_fixed/ap_ufixed type, e.g. "ap_fixed<32,16>"')
    unsigned, w, i = m.group(1) == 'u', int(m.group(2)), int(m.group(3))
    k = 0 if unsigned else 1
    return FixedType(k, i - k, w - i, m.group(4) or 'TRN', m.group(5) or 'WRAP')


def convert(graph: Graph, io_type: str, input_precision: str | None = None) -> Built:
    return Converter(graph, io_type, input_precision).run()
