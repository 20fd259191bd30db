"""Trace a calibrated Keras model of hgq layers into a fixed-point Graph.

Weights are taken exactly as the Keras model uses them in inference (the same float32 ops,
then exact float64), so the emulator and the model see identical constants.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..layers import (
    QActivation,
    QAveragePooling1D,
    QAveragePooling2D,
    QBatchNormalization,
    QQuantize,
    QSoftmax,
)
from ..layers.linear import QConvBase, QDense, QLinearBase
from ..quantizers.adaptive import AdaptiveStepFormat
from ..quantizers.base import Quantizer
from ..quantizers.fixed_point import FixedFormat
from ..quantizers.indexed import Description, IndexedFormat
from .analysis import warn_if_float32_inexact
from .graph import Format, Graph, Node

MAX_TABLE_BITS = 20
SUPPORTED = ('InputLayer, QQuantize, QDense, QConv1D, QConv2D, Q*BatchNorm, QBatchNormalization, QActivation, '
             'QSoftmax, Q/MaxPooling1D/2D, QAveragePooling1D/2D, Add, Multiply, Concatenate, Flatten, Reshape, Dropout')


def _np(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


class _Tracer:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.names: set[str] = set()

    def add(self, name: str, op: str, inputs: list[str], shape: tuple[int, ...], source: str, **attrs: Any) -> str:
        unique, n = name, 0
        while unique in self.names:
            n += 1
            unique = f'{name}_{n}'
        self.names.add(unique)
        self.nodes.append(Node(unique, op, inputs, tuple(int(d) for d in shape), attrs, source))
        return unique

    def quantize(self, q: Quantizer, src: str, shape: tuple[int, ...], source: str, suffix: str) -> str:
        """Lower the quantizer's exact description into ops (one handler per description kind)."""
        return self.lower(q.describe(), src, shape, source, suffix)

    def lower(self, desc: Description, src: str, shape: tuple[int, ...], source: str, suffix: str) -> str:
        if isinstance(desc, IndexedFormat):
            return self.lower_indexed(desc, src, shape, source, suffix)
        if isinstance(desc, FixedFormat):
            return self.add(f'{source}_{suffix}', 'quantize', [src], shape, source, **_cast_attrs(desc, shape))
        if isinstance(desc, AdaptiveStepFormat):
            return self.lower_adaptive(desc, src, shape, source, suffix)
        raise TypeError(f'{source}: the quantizer described itself as {type(desc).__name__}; the IR lowers '
                        'FixedFormat and IndexedFormat descriptions only')

    def lower_indexed(self, desc: IndexedFormat, src: str, shape: tuple[int, ...], source: str, suffix: str,
                      cast_done: bool = False) -> str:
        """cast -> encode (index) -> decode (level); `cast_done` when the producing op already cast."""
        x = src if cast_done else self.add(f'{source}_{suffix}_cast', 'quantize', [src], shape, source,
                                           **_cast_attrs(desc.input_format, shape))
        n = desc.n_levels
        thresholds = np.broadcast_to(desc.thresholds, (*shape, n - 1)).copy()
        levels = np.broadcast_to(desc.levels, (*shape, n)).copy()
        lf = desc.level_format()
        index = self.add(f'{source}_{suffix}_encode', 'encode', [x], shape, source, thresholds=thresholds,
                         index_bits=desc.index_bits)
        return self.add(f'{source}_{suffix}', 'decode', [index], shape, source, levels=levels,
                        fmt=Format.of(lf.k, lf.i, lf.f, shape))

    def lower_adaptive(self, desc: AdaptiveStepFormat, src: str, shape: tuple[int, ...], source: str,
                       suffix: str) -> str:
        """adapter layers -> β (1,); scaled_encode(x, β) = code·2^e; mul(code·2^e, β) = x̂."""
        beta = src
        for layer, in_shape, out_shape in desc.adapter:
            beta = _trace_layer(self, layer, [beta], in_shape, out_shape)
        code = self.add(f'{source}_{suffix}_code', 'scaled_encode', [src, beta], shape, source,
                        coefficients=np.asarray(desc.coefficients, dtype=np.float64), offset=int(desc.offset),
                        step_exponent=int(desc.step_exponent))
        return self.add(f'{source}_{suffix}', 'mul', [code, beta], shape, source)

    def weights(self, q: Quantizer, values: Any) -> tuple[np.ndarray, Format]:
        """Quantized constant exactly as Keras uses it in inference, and its per-element format."""
        raw = _np(values)
        desc = q.describe(raw)
        quantized = _np(q(keras.ops.convert_to_tensor(values), training=False))
        if isinstance(desc, IndexedFormat):
            reference = desc.quantize(raw)
            mismatches = int(np.sum(reference != quantized))
            if mismatches:
                raise ValueError(f'{q.name}: Keras inference and its own IndexedFormat description differ on '
                                 f'{mismatches} of {raw.size} weights; the quantizer breaks the protocol')
            fmt = desc.level_format()
        else:
            fmt = desc
        return quantized, Format.of(fmt.k, fmt.i, fmt.f, raw.shape)


def _cast_attrs(fmt: FixedFormat, shape: tuple[int, ...]) -> dict[str, Any]:
    return {'fmt': Format.of(fmt.k, fmt.i, fmt.f, shape), 'round_mode': fmt.round_mode,
            'overflow_mode': fmt.overflow_mode}


def _cast_of(desc: Description) -> FixedFormat:
    """The fixed-point cast an op with a built-in output cast (table, avg_pool) applies."""
    return desc.input_format if isinstance(desc, IndexedFormat) else desc


def _finish_cast(t: _Tracer, desc: Description, y: str, shape: tuple[int, ...], source: str) -> str:
    """After an op that cast to `_cast_of(desc)`: encode and decode for an indexed description."""
    if isinstance(desc, IndexedFormat):
        return t.lower_indexed(desc, y, shape, source, 'oq', cast_done=True)
    return y


def _output_shape(node: Any) -> tuple[int, ...]:
    return tuple(node.outputs[0].shape[1:])


def _trace_linear(t: _Tracer, layer: QLinearBase, src: str, in_shape: tuple, out_shape: tuple) -> str:
    x = t.quantize(layer.input_quantizer, src, in_shape, layer.name, 'iq')
    kernel, bias = layer.effective_weights(None, False)
    weight, weight_fmt = t.weights(layer.kernel_quantizer, kernel)
    attrs: dict[str, Any] = {'weight': weight, 'weight_fmt': weight_fmt, 'bias': None}
    if bias is not None:
        attrs['bias'], attrs['bias_fmt'] = t.weights(layer.bias_quantizer, bias)
    if isinstance(layer, QConvBase):
        attrs.update(strides=layer.strides, padding=layer.padding)
        y = t.add(layer.name, 'conv', [x], out_shape, layer.name, **attrs)
    else:
        y = t.add(layer.name, 'dense', [x], out_shape, layer.name, **attrs)
    if layer.activation == 'relu':
        y = t.add(f'{layer.name}_relu', 'relu', [y], out_shape, layer.name)
    return y


def _trace_table(t: _Tracer, layer: QActivation, x: str, shape: tuple) -> str:
    """Evaluate fn with Keras on every code of the union input domain (exactly what inference computes)."""
    fin = layer.input_quantizer.output_format()
    k, i, f = (np.broadcast_to(a, shape) for a in (fin.k, fin.i, fin.f))
    live = (k + i + f) > 0
    domain_f = int(f[live].max()) if live.any() else 0
    lo = min(int(np.min(np.where(live, -k * 2.0 ** (i + domain_f), 0))), 0)
    hi = max(int(np.max(np.where(live, 2.0 ** (i + domain_f) - 2.0 ** (domain_f - f), 0))), 0)
    if (hi - lo + 1) > 2**MAX_TABLE_BITS:
        raise ValueError(f'{layer.name}: the lookup table of {layer.activation!r} would need {hi - lo + 1} entries '
                         f'(more than 2^{MAX_TABLE_BITS}); narrow its input quantizer')
    grid = (np.arange(lo, hi + 1, dtype=np.float64) * 2.0**-domain_f).astype(np.float32)
    table = _np(layer.fn(keras.ops.convert_to_tensor(grid)))
    desc = layer.output_quantizer.describe()
    fout = _cast_of(desc)
    y = t.add(layer.name, 'table', [x], shape, layer.name, table=table, domain_f=domain_f, domain_min_code=lo,
              out_fmt=Format.of(fout.k, fout.i, fout.f, shape), round_mode=fout.round_mode,
              overflow_mode=fout.overflow_mode, function=layer.activation)
    return _finish_cast(t, desc, y, shape, layer.name)


def _trace_softmax(t: _Tracer, layer: QSoftmax, x: str, shape: tuple) -> str:
    """max (a max pool over the classes), x - max (a broadcast by a -1 dense, then add), the exp table,
    the sum (a dense of ones), the reciprocal table, and the product e·r."""
    n = int(shape[0])
    name = layer.name
    column = t.add(f'{name}_column', 'reshape', [x], (n, 1), name)
    top = t.add(f'{name}_max', 'max_pool', [column], (1, 1), name, pool_size=(n,), strides=(n,), padding='valid')
    top = t.add(f'{name}_max_flat', 'reshape', [top], (1,), name)
    minus = -np.ones((1, n))
    neg = t.add(f'{name}_neg_max', 'dense', [top], (n,), name, weight=minus, weight_fmt=Format.of(1, 0, 0, (1, n)),
                bias=None)
    d = t.add(f'{name}_shifted', 'add', [x, neg], (n,), name)
    e = _trace_layer(t, layer.exp_table, [d], (n,), (n,))
    total = t.add(f'{name}_sum', 'dense', [e], (1,), name, weight=np.ones((n, 1)),
                  weight_fmt=Format.of(0, 1, 0, (n, 1)), bias=None)
    r = _trace_layer(t, layer.inverse_table, [total], (1,), (1,))
    return t.add(name, 'mul', [e, r], (n,), name)


def _trace_layer(t: _Tracer, layer: Any, srcs: list[str], in_shape: tuple, out_shape: tuple) -> str:
    src = srcs[0]
    if isinstance(layer, QQuantize):
        return t.quantize(layer.quantizer, src, out_shape, layer.name, 'q')
    if isinstance(layer, (QDense, QConvBase)):
        return _trace_linear(t, layer, src, in_shape, out_shape)
    if isinstance(layer, QBatchNormalization):
        x = t.quantize(layer.input_quantizer, src, in_shape, layer.name, 'iq')
        scale, offset = layer._scale_offset(None, False)
        s, sf = t.weights(layer.scale_quantizer, scale)
        o, of = t.weights(layer.offset_quantizer, offset)
        return t.add(layer.name, 'affine', [x], out_shape, layer.name, scale=s, scale_fmt=sf, offset=o, offset_fmt=of)
    if isinstance(layer, QSoftmax):
        return _trace_softmax(t, layer, src, in_shape)
    if isinstance(layer, QActivation):
        x = src
        if layer.input_quantizer is not None:
            x = t.quantize(layer.input_quantizer, x, in_shape, layer.name, 'iq')
        if layer.is_table:
            return _trace_table(t, layer, x, out_shape)
        if layer.activation == 'relu':
            x = t.add(f'{layer.name}_relu', 'relu', [x], out_shape, layer.name)
        if layer.output_quantizer is not None:
            x = t.quantize(layer.output_quantizer, x, out_shape, layer.name, 'oq')
        return x
    if isinstance(layer, (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D)):
        return t.add(layer.name, 'max_pool', [src], out_shape, layer.name, **_pool_attrs(layer))
    if isinstance(layer, (QAveragePooling1D, QAveragePooling2D)):
        desc = layer.output_quantizer.describe()
        y = t.add(layer.name, 'avg_pool', [src], out_shape, layer.name, **_cast_attrs(_cast_of(desc), out_shape),
                  **_pool_attrs(layer))
        return _finish_cast(t, desc, y, out_shape, layer.name)
    if isinstance(layer, keras.layers.Add):
        return t.add(layer.name, 'add', srcs, out_shape, layer.name)
    if isinstance(layer, keras.layers.Multiply):
        return t.add(layer.name, 'mul', srcs, out_shape, layer.name)
    if isinstance(layer, keras.layers.Concatenate):
        axis = layer.axis if layer.axis >= 0 else len(out_shape) + layer.axis + 1
        return t.add(layer.name, 'concat', srcs, out_shape, layer.name, axis=axis - 1)
    if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
        return t.add(layer.name, 'reshape', [src], out_shape, layer.name)
    if isinstance(layer, keras.layers.Dropout):
        return src
    raise ValueError(f'layer {layer.name!r} ({type(layer).__name__}) cannot be exported exactly; supported: '
                     f'{SUPPORTED}. A float Keras layer has no fixed-point format: use its hgq.layers counterpart')


def _pool_attrs(layer: Any) -> dict[str, Any]:
    return {'pool_size': tuple(layer.pool_size), 'strides': tuple(layer.strides), 'padding': layer.padding}


def from_model(model: keras.Model) -> Graph:
    """The fixed-point graph of a built, calibrated model (see hgq.training.calibrate)."""
    functional = getattr(model, '_functional', None) or model
    if not hasattr(functional, '_nodes_by_depth'):
        raise ValueError(f'model {model.name!r} has no layer graph yet: build it on an input shape first')
    t = _Tracer()
    names: dict[str, str] = {}
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            layer = node.operation
            ins = node.arguments.keras_tensors
            out_shape = _output_shape(node)
            if isinstance(layer, keras.layers.InputLayer):
                names[node.outputs[0].name] = t.add(layer.name, 'input', [], out_shape, layer.name)
                continue
            srcs = [names[k.name] for k in ins]
            in_shape = tuple(ins[0].shape[1:])
            names[node.outputs[0].name] = _trace_layer(t, layer, srcs, in_shape, out_shape)
    inputs = [names[k.name] for k in functional.inputs]
    outputs = [names[k.name] for k in functional.outputs]
    graph = Graph(t.nodes, inputs, outputs)
    warn_if_float32_inexact(graph)
    return graph
