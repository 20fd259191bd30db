"""Import a QKeras model (legacy `.h5` or qkeras-v3 `.keras`) as an hgq model, without importing QKeras,
TensorFlow or Keras 2: the file is read with h5py/zipfile and every QKeras quantizer becomes a fixed,
non-trainable hgq quantizer computing the same values (docs/qkeras.md, docs/qkeras-import.md).

How it stays exact:
- activation quantizers (QActivation, a Q layer's `activation=`) become FixedQuantizer(k, i, f,
  RND_CONV, SAT or SAT_SYM), what QKeras computes (round half to even, then clip);
- weights are quantized here, once, in float64 (exact), including power-of-two alpha, quantized_po2 and the
  batch-norm folding of QDenseBatchnorm/QConv2DBatchnorm (computed in float32 in QKeras' own operation
  order); where QKeras' float32 last bits could change a rounding decision, the import refuses;
- every tensor carries an exact value range and step (a Span); a Dense/Conv input quantizer is then a
  covering format, the identity on its input (TRN/WRAP, no rounding or overflow can occur).
QKeras computes in float32: its sums are exact while every accumulator fits 24 bits; a wider one is
reported with a warning, since QKeras' own result may then be rounded.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .qkeras_files import QKerasImportError, Weights, layer_list, read_qkeras_file
from .qkeras_quantizers import (
    PO2_NAMES,
    SUPPORTED_QUANTIZERS,
    covering_format,
    frac_bits,
    parse_quantizer,
    po2_activation_table,
    qkeras_format,
    qkeras_quantizer,
    quantize_po2_weights,
    quantize_qkeras_np,
    weight_format,
)

__all__ = ['QKerasImportError', 'SUPPORTED_LAYERS', 'SUPPORTED_QUANTIZERS', 'build_model', 'import_qkeras',
           'qkeras_format', 'quantize_qkeras_np', 'read_qkeras_file']

SUPPORTED_LAYERS = ('InputLayer', 'QActivation', 'Activation(relu|linear)', 'QDense', 'QConv1D', 'QConv2D',
                    'QDenseBatchnorm', 'QConv2DBatchnorm', 'MaxPooling1D', 'MaxPooling2D',
                    'AveragePooling1D/2D and QAveragePooling2D (valid, power-of-two pool area)',
                    'GlobalAveragePooling1D/2D (power-of-two spatial size)', 'Add',
                    'Concatenate', 'Flatten', 'Reshape', 'ReLU', 'Dropout')

FLOAT32_MANTISSA = 24


@dataclass(frozen=True)
class Span:
    """Exact value range [lo, hi] of a tensor, all values multiples of 2^-f."""

    lo: float
    hi: float
    f: int

    def kif(self) -> tuple[int, int, int]:
        return covering_format(self.lo, self.hi, self.f)

    @staticmethod
    def of_format(k: int, i: int, f: int, overflow: str = 'SAT') -> Span:
        lo = -k * 2.0 ** i + (2.0 ** -f if overflow == 'SAT_SYM' and k else 0.0)
        return Span(lo, 2.0 ** i - 2.0 ** -f, f)


def _refuse_layer(name: str, cls: str, why: str = 'is not supported') -> QKerasImportError:
    return QKerasImportError(f'{name}: layer {cls} {why}; supported: {", ".join(SUPPORTED_LAYERS)}')


# ---------------------------------------------------------------- graph

def _history(obj: Any, out: list[str]) -> None:
    """Names of the layers whose tensors a Keras 3 node's args reference."""
    if isinstance(obj, dict):
        if obj.get('class_name') == '__keras_tensor__':
            out.append(obj['config']['keras_history'][0])
        else:
            for v in obj.values():
                _history(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _history(v, out)


def _inbound(spec: dict[str, Any], previous: str | None) -> list[str]:
    name = spec.get('config', {}).get('name', '?')
    if 'inbound_nodes' not in spec:  # Sequential
        return [previous] if previous else []
    nodes = spec['inbound_nodes']
    if not nodes:
        return []
    if len(nodes) > 1:
        raise QKerasImportError(f'{name}: a layer called {len(nodes)} times (shared layer) is not supported')
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3
        names: list[str] = []
        _history(node.get('args', []), names)
        return names
    return [t[0] for t in node]  # Keras 2: [[layer, node index, tensor index, kwargs], ...]


def _endpoints(config: dict[str, Any], key: str) -> list[str] | None:
    inner = config.get('config', {})
    ends = inner.get(key) if isinstance(inner, dict) else None
    if ends is None:
        return None
    if ends and isinstance(ends[0], str):  # Keras 3 single endpoint: ['name', 0, 0]
        return [ends[0]]
    return [e[0] for e in ends]


def build_model(config: dict[str, Any], weights: dict[str, Weights],
                input_format: tuple[int, int, int] | None = None) -> Any:
    """The hgq Keras 3 model computing what the QKeras model computes.

    input_format: (k, i, f) of the model inputs, for models that feed the raw input into a QDense/QConv
    (QKeras multiplies the float input; the hardware receives fixed-point words). The import is then exact
    for inputs on that grid; the first layer's input quantizer truncates and wraps others (ap_fixed default).
    """
    import keras

    in_span = None
    if input_format is not None:
        k, i, f = (int(v) for v in input_format)
        if k not in (0, 1) or k + i + f < 1:
            raise QKerasImportError(f'input_format={input_format!r} is not a (k, i, f) fixed-point format')
        in_span = Span.of_format(k, i, f)

    tensors: dict[str, tuple[Any, Span | None]] = {}
    inputs: dict[str, Any] = {}
    pending: list[tuple[Any, np.ndarray, np.ndarray | None]] = []
    previous: str | None = None
    for spec in layer_list(config):
        cls, cfg = spec.get('class_name', '?'), spec.get('config', {})
        name = cfg.get('name', '?')
        if cls == 'InputLayer':
            shape = cfg.get('batch_input_shape') or cfg.get('batch_shape')
            inputs[name] = keras.Input(shape=tuple(shape[1:]), name=name)
            tensors[name] = (inputs[name], in_span)
            previous = name
            continue
        sources = _inbound(spec, previous)
        if not sources:  # first layer of a Sequential without an InputLayer
            shape = cfg.get('batch_input_shape') or cfg.get('batch_shape')
            if shape is None:
                raise QKerasImportError(f'{name}: the model has no input shape')
            inputs[f'{name}_input'] = keras.Input(shape=tuple(shape[1:]))
            tensors[f'{name}_input'] = (inputs[f'{name}_input'], in_span)
            sources = [f'{name}_input']
        missing = [s for s in sources if s not in tensors]
        if missing:
            raise QKerasImportError(f'{name}: its input layer(s) {missing} are not defined before it')
        ins = [tensors[s] for s in sources]
        tensors[name] = _layer(cls, name, cfg, ins, weights.get(name, {}), pending)
        previous = name
    if not inputs:
        raise QKerasImportError('model has no layers')
    in_names = _endpoints(config, 'input_layers') or list(inputs)
    out_names = _endpoints(config, 'output_layers') or [previous]
    for n in [*in_names, *out_names]:
        if n not in tensors:
            raise QKerasImportError(f'model endpoint {n!r} is not a layer of the model')
    model = keras.Model([tensors[n][0] for n in in_names] if len(in_names) > 1 else tensors[in_names[0]][0],
                        [tensors[n][0] for n in out_names] if len(out_names) > 1 else tensors[out_names[0]][0])
    for layer, kernel, bias in pending:
        layer.kernel.assign(kernel.astype('float32'))
        if bias is not None:
            layer.bias.assign(bias.astype('float32'))
    return model


# ---------------------------------------------------------------- layers

def _one(name: str, cls: str, ins: list[tuple[Any, Span | None]]) -> tuple[Any, Span | None]:
    if len(ins) != 1:
        raise QKerasImportError(f'{name}: layer {cls} has {len(ins)} inputs, expected 1')
    return ins[0]


def _layer(cls: str, name: str, cfg: dict[str, Any], ins: list[tuple[Any, Span | None]], w: Weights,
           pending: list) -> tuple[Any, Span | None]:
    from hgq.layers import QAdd, QConcatenate, QFlatten

    if cls in ('QDense', 'QConv1D', 'QConv2D', 'QDenseBatchnorm', 'QConv2DBatchnorm'):
        return _weighted(cls, name, cfg, *_one(name, cls, ins), w, pending)
    if cls in ('QActivation', 'Activation'):
        x, span = _one(name, cls, ins)
        return _activation(name, cfg.get('activation'), x, span, standalone=True)
    if cls in ('MaxPooling1D', 'MaxPooling2D', 'AveragePooling1D', 'AveragePooling2D'):
        return _pooling(cls, name, cfg, *_one(name, cls, ins))
    if cls == 'QAveragePooling2D':
        return _qaverage_pooling(name, cfg, *_one(name, cls, ins))
    if cls in ('GlobalAveragePooling1D', 'GlobalAveragePooling2D'):
        return _global_average(cls, name, cfg, *_one(name, cls, ins))
    if cls == 'ReLU':
        x, span = _one(name, cls, ins)
        if cfg.get('max_value') is not None or cfg.get('negative_slope', 0) or cfg.get('threshold', 0):
            raise _refuse_layer(name, cls, 'with max_value/negative_slope/threshold is not supported (plain relu only)')
        return _activation(name, 'relu', x, span, standalone=True)
    if cls == 'Reshape':
        from hgq.layers import QReshape

        x, span = _one(name, cls, ins)
        return QReshape(tuple(cfg['target_shape']), name=name)(x), span
    if cls == 'Flatten':
        x, span = _one(name, cls, ins)
        _channels_last(name, cls, cfg)
        return QFlatten(name=name)(x), span
    if cls == 'Dropout':  # the identity in inference
        return _one(name, cls, ins)
    if cls == 'Add':
        spans = [s for _, s in ins]
        span = None if any(s is None for s in spans) else Span(
            sum(s.lo for s in spans), sum(s.hi for s in spans), max(s.f for s in spans))
        return QAdd(name=name)([x for x, _ in ins]), span
    if cls == 'Concatenate':
        spans = [s for _, s in ins]
        span = None if any(s is None for s in spans) else Span(
            min(s.lo for s in spans), max(s.hi for s in spans), max(s.f for s in spans))
        return QConcatenate(axis=cfg.get('axis', -1), name=name)([x for x, _ in ins]), span
    if cls in ('QBatchNormalization', 'BatchNormalization'):
        raise _refuse_layer(name, cls, f'is not supported: {_why_batchnorm(cfg, sources_of(ins))}')
    raise _refuse_layer(name, cls)


def sources_of(ins: list[tuple[Any, Span | None]]) -> str:
    """The Keras name of the layer producing a single input (for error messages)."""
    try:
        return str(ins[0][0]._keras_history[0].name) if len(ins) == 1 else '?'
    except (AttributeError, IndexError):
        return '?'


def _why_batchnorm(cfg: dict[str, Any], source: str) -> str:
    """Why a standalone (Q)BatchNormalization cannot be imported exactly, even right after a QDense/QConv."""
    quantizers = {k: cfg.get(k) for k in ('gamma_quantizer', 'beta_quantizer', 'mean_quantizer',
                                          'variance_quantizer', 'inverse_quantizer') if cfg.get(k)}
    why = (f'QKeras multiplies the outputs of {source!r} at run time by inv = γ·rsqrt(σ²+ε) and adds β − μ·inv, '
           'in float32 (q2 qnormalization.py:169-285 via tf.nn.batch_normalization; q3 qnormalization.py:286-294); '
           'those products are rounded float32 numbers, not fixed-point ones, and folding inv into the weights '
           'before it changes them (Σ x·(w·inv) is not fl32(fl32(Σ x·w)·inv)), so neither a fixed-point layer nor '
           'a fold reproduces them with ==')
    if quantizers:
        why += f' (its quantizers {sorted(quantizers)} do not make inv·x fixed point either)'
    return why + ('; use QDenseBatchnorm / QConv2DBatchnorm (QKeras folds those into the quantized weights, which '
                  'this importer reproduces exactly), or remove the batch norm')


def _channels_last(name: str, cls: str, cfg: dict[str, Any]) -> None:
    fmt = cfg.get('data_format', 'channels_last')
    if fmt not in (None, 'channels_last'):
        raise _refuse_layer(name, cls, f'with data_format={fmt!r} is not supported (use channels_last)')


def _identity(span: Span, role: str, name: str) -> Any:
    """A FixedQuantizer that is the identity on values in `span` (it covers their range and step)."""
    from hgq.quantizers.hgq_quantizer import FixedQuantizer

    k, i, f = span.kif()
    return FixedQuantizer(k=k, i=i, f=f, round_mode='TRN', overflow_mode='WRAP', role=role, name=name)


def _rounding(fmt: tuple[int, int, int, str], name: str) -> Any:
    from hgq.quantizers.hgq_quantizer import FixedQuantizer

    k, i, f, overflow = fmt
    return FixedQuantizer(k=k, i=i, f=f, round_mode='RND_CONV', overflow_mode=overflow, role='activation', name=name)


def _activation(name: str, act: Any, x: Any, span: Span | None, standalone: bool) -> tuple[Any, Span | None]:
    """(tensor, its span) after a QKeras activation (a quantizer, relu or linear)."""
    from hgq.layers import QActivation

    if act in (None, 'linear'):
        return x, span
    lname = name if standalone else f'{name}_act'
    if act == 'relu':
        out = None if span is None else Span(max(span.lo, 0.0), max(span.hi, 0.0), span.f)
        return QActivation('relu', name=lname)(x), out
    if isinstance(act, str) and not act.strip().startswith(('quantized_', 'binary', 'ternary', 'stochastic_',
                                                              'bernoulli')):
        why = ('QKeras computes exp(x)/Σexp in float32; hgq.layers.QSoftmax is exact fixed-point tables, so its '
               'outputs cannot equal those float32 values with ==; remove the final softmax before importing (the '
               'argmax is unchanged) and add a QSoftmax to the imported model if the hardware needs one'
               if act == 'softmax' else 'not exact in fixed point; sigmoid and tanh are float functions in QKeras')
        raise QKerasImportError(f'{name}: activation {act!r} is not supported ({why}); supported: linear, relu, '
                                f'{"; ".join(SUPPORTED_QUANTIZERS)}')
    parsed = parse_quantizer(name, 'activation', act)
    if parsed is not None and parsed[0] in PO2_NAMES:
        return _po2_activation(name, lname, act, x, span)
    fmt = qkeras_format(name, 'activation', act)
    assert fmt is not None
    relu = fmt[0] == 0 and (str(act).startswith('quantized_relu') or
                            (isinstance(act, dict) and act.get('class_name') == 'quantized_relu'))
    layer = QActivation('relu' if relu else 'linear', output_quantizer=_rounding(fmt, f'{lname}_output_quantizer'),
                        name=lname)
    return layer(x), Span.of_format(*fmt)


def _po2_activation(name: str, lname: str, act: Any, x: Any, span: Span | None) -> tuple[Any, Span]:
    """A QKeras po2 activation as an exact level table over its input grid (qkeras_quantizers.po2_activation_table)."""
    from hgq.layers import QActivation
    from hgq.quantizers.schemes.table import TableQuantizer

    if span is None:
        raise QKerasImportError(f'{name}: activation {act!r} needs a quantized input (its level table is computed '
                                'over the input grid): put a quantizer before it or give input_format')
    table = po2_activation_table(name, 'activation', act, span.lo, span.hi, span.f)
    assert table is not None
    thresholds, levels = table
    k, i, f = span.kif()
    q = TableQuantizer(thresholds=thresholds, levels=levels, k=k, i=i, f=f, round_mode='TRN', overflow_mode='WRAP',
                       name=f'{lname}_output_quantizer')
    out = Span(float(levels.min()), float(levels.max()), frac_bits(levels))
    return QActivation('linear', output_quantizer=q, name=lname)(x), out


def _quantized_weight(name: str, argument: str, spec: Any, values: np.ndarray) -> tuple[np.ndarray, tuple]:
    """(exact quantized values, covering (k, i, f)) of a weight tensor under its QKeras quantizer."""
    po2 = quantize_po2_weights(name, argument, spec, values)
    if po2 is not None:
        k, i, f = covering_format(float(po2.min()), float(po2.max()), frac_bits(po2))
        return po2, (k, i, f)
    q = qkeras_quantizer(name, argument, spec)
    if q is None:
        raise QKerasImportError(f'{name}: {argument} is None; the weights would be float, not fixed point')
    fmt, alpha = q
    return quantize_qkeras_np(values, fmt, alpha), weight_format(fmt, alpha)


def _weighted(cls: str, name: str, cfg: dict[str, Any], x: Any, span: Span | None, w: Weights,
              pending: list) -> tuple[Any, Span | None]:
    """QDense/QConv*/Q*Batchnorm -> the hgq layer with exact quantized (folded) weights, + its activation."""
    from hgq.layers import QConv1D, QConv2D, QDense
    from hgq.quantizers.hgq_quantizer import FixedQuantizer

    if span is None:
        raise QKerasImportError(f'{name}: its input is not quantized; hgq layers need fixed-point inputs: put a '
                                'QActivation with quantized_bits before it, or give the input format '
                                '(import_qkeras(..., input_format=(k, i, f)))')
    _channels_last(name, cls, cfg)
    if 'kernel' not in w:
        raise QKerasImportError(f'{name}: no kernel weights found in the file')
    kernel = np.asarray(w['kernel'], np.float32)
    use_bias = bool(cfg.get('use_bias', True))
    bias = np.asarray(w['bias'], np.float32) if use_bias and 'bias' in w else None
    if cls.endswith('Batchnorm'):
        kernel, bias = _fold_batchnorm(name, cfg, kernel, bias, w)
    qk, kfmt = _quantized_weight(name, 'kernel_quantizer', cfg.get('kernel_quantizer'), kernel)
    qb, bfmt = (_quantized_weight(name, 'bias_quantizer', cfg.get('bias_quantizer'), bias) if bias is not None
                else (None, None))
    common = dict(use_bias=qb is not None, name=name,
                  input_quantizer=_identity(span, 'activation', f'{name}_input_quantizer'),
                  kernel_quantizer=FixedQuantizer(*kfmt, round_mode='TRN', overflow_mode='WRAP', role='weight',
                                                  name=f'{name}_kernel_quantizer'),
                  bias_quantizer=None if qb is None else FixedQuantizer(
                      *bfmt, round_mode='TRN', overflow_mode='WRAP', role='weight', name=f'{name}_bias_quantizer'))
    if cls in ('QDense', 'QDenseBatchnorm'):
        layer = QDense(int(cfg['units']), **common)
    else:
        conv = QConv1D if cls == 'QConv1D' else QConv2D
        rank = 1 if conv is QConv1D else 2
        for key in ('dilation_rate',):
            if any(int(v) != 1 for v in np.atleast_1d(cfg.get(key, 1))):
                raise _refuse_layer(name, cls, f'with {key}={cfg.get(key)!r} is not supported (only 1)')
        if int(cfg.get('groups', 1)) != 1:
            raise _refuse_layer(name, cls, f'with groups={cfg.get("groups")!r} is not supported (only 1)')
        padding = cfg.get('padding', 'valid')
        if padding not in ('valid', 'same'):
            raise _refuse_layer(name, cls, f'with padding={padding!r} is not supported (valid, same)')
        layer = conv(int(cfg['filters']), _ints(cfg['kernel_size'], rank), strides=_ints(cfg.get('strides', 1), rank),
                     padding=padding, **common)
    y = layer(x)
    pending.append((layer, qk, qb))
    out = _sum_span(span, qk, qb, pad=cls.startswith('QConv') and cfg.get('padding') == 'same')
    width = sum(out.kif())
    if width > FLOAT32_MANTISSA:
        warnings.warn(f'{name}: its sums need {width} bits, more than float32 holds ({FLOAT32_MANTISSA}); QKeras '
                      'computes them in float32, so its outputs may be rounded where the imported model is exact',
                      stacklevel=2)
    return _activation(name, cfg.get('activation'), y, out, standalone=False)


def _ints(value: Any, rank: int) -> tuple[int, ...]:
    """A Keras size argument (int or list) as `rank` ints."""
    t = tuple(int(v) for v in np.atleast_1d(value))
    return t * rank if len(t) == 1 else t


def _sum_span(span: Span, kernel: np.ndarray, bias: np.ndarray | None, pad: bool) -> Span:
    """Exact range and step of Σ x·w + b over a kernel (per output channel, then the union)."""
    k2 = kernel.reshape(-1, kernel.shape[-1])
    lo_t, hi_t = np.minimum(k2 * span.lo, k2 * span.hi), np.maximum(k2 * span.lo, k2 * span.hi)
    if pad:  # zero padding: a term may be 0 instead
        lo_t, hi_t = np.minimum(lo_t, 0.0), np.maximum(hi_t, 0.0)
    b = np.zeros(k2.shape[1]) if bias is None else bias.astype(np.float64)
    lo, hi = float((lo_t.sum(0) + b).min()), float((hi_t.sum(0) + b).max())
    f = span.f + frac_bits(kernel)
    if bias is not None and np.any(bias != 0):
        f = max(f, frac_bits(bias))
    return Span(lo, hi, f)


def _fold_batchnorm(name: str, cfg: dict[str, Any], kernel: np.ndarray, bias: np.ndarray | None,
                    w: Weights) -> tuple[np.ndarray, np.ndarray]:
    """The float32 folded kernel and bias QKeras computes in inference (qkeras 0.9 qconv2d_batchnorm.py call;
    qkeras-v3 qdense_batchnorm.py / qconv2d_batchnorm.py call):
        inv = γ / sqrt(σ²_moving + ε);  kernel' = inv · kernel;  bias' = inv · (bias - μ_moving) + β.
    qkeras-v3 computes 1/sqrt (IEEE, so numpy float32 gives the same bits); qkeras 0.9 computes tf.math.rsqrt,
    which need not be correctly rounded, and a compiler may fuse the multiply-add. So every folded weight must
    quantize the same when moved by up to 2 float32 ulps either way; else the import refuses rather than guess."""
    for key in ('scale', 'center'):
        if not cfg.get(key, True):
            raise QKerasImportError(f'{name}: batch norm with {key}=False is not supported (only True)')
    axis = cfg.get('axis', -1)
    last = kernel.ndim - 1  # the output's channel axis (Dense: 1, Conv2D: 3)
    if (axis[0] if isinstance(axis, list) and len(axis) == 1 else axis) not in (-1, last):
        raise QKerasImportError(f'{name}: batch-norm axis={axis!r} is not supported (only the channel axis, -1)')
    missing = [r for r in ('gamma', 'beta', 'moving_mean', 'moving_variance') if r not in w]
    if missing:
        raise QKerasImportError(f'{name}: batch-norm weights {missing} not found in the file')
    f32 = np.float32
    gamma, beta, mean, var = (np.asarray(w[r], f32) for r in ('gamma', 'beta', 'moving_mean', 'moving_variance'))
    eps = f32(cfg.get('epsilon', 1e-3))
    b = bias if bias is not None else np.zeros(kernel.shape[-1], f32)
    inv = ((f32(1) / np.sqrt(var + eps)) * gamma).astype(f32)
    kernel_f = (inv * kernel).astype(f32)
    bias_f = (inv * (b - mean) + beta).astype(f32)
    for argument, values in (('kernel_quantizer', kernel_f), ('bias_quantizer', bias_f)):
        want = _quantized_weight(name, argument, cfg.get(argument), values)[0]
        for direction in (-np.inf, np.inf):
            moved = values
            for _ in range(2):
                moved = np.nextafter(moved, f32(direction)).astype(f32)
                if not np.array_equal(_quantized_weight(name, argument, cfg.get(argument), moved)[0], want):
                    raise QKerasImportError(
                        f'{name}: {argument}: a folded batch-norm weight lies within 2 float32 ulps of a rounding '
                        'boundary; QKeras folds in float32 (qkeras 0.9 with tf.math.rsqrt), whose last bits '
                        'cannot be reproduced without TensorFlow, so this import would have to guess')
    if not math.isfinite(float(np.abs(kernel_f).max(initial=0))):
        raise QKerasImportError(f'{name}: the folded batch-norm kernel is not finite')
    return kernel_f, bias_f


def _pooling(cls: str, name: str, cfg: dict[str, Any], x: Any, span: Span | None) -> tuple[Any, Span | None]:
    from hgq.layers import QAveragePooling1D, QAveragePooling2D, QMaxPooling1D, QMaxPooling2D

    _channels_last(name, cls, cfg)
    rank = 1 if cls.endswith('1D') else 2
    pool = _ints(cfg.get('pool_size', 2), rank)
    strides = pool if cfg.get('strides') is None else _ints(cfg['strides'], rank)
    padding = cfg.get('padding', 'valid')
    args = dict(pool_size=pool, strides=strides, padding=padding, name=name)
    if cls.startswith('Max'):
        return (QMaxPooling1D if rank == 1 else QMaxPooling2D)(**args)(x), span
    area = int(np.prod(pool))
    shift = int(round(math.log2(area)))
    if 2 ** shift != area or padding != 'valid':
        raise _refuse_layer(name, cls, f'with pool_size={pool} and padding={padding!r} is not supported: the mean '
                            'is exact in fixed point only for a power-of-two pool area and padding="valid" (with '
                            '"same" the border divisors differ)')
    if span is None:
        raise QKerasImportError(f'{name}: its input is not quantized; average pooling needs fixed-point inputs')
    out = Span(span.lo, span.hi, span.f + shift)
    layer = (QAveragePooling1D if rank == 1 else QAveragePooling2D)(
        output_quantizer=_identity(out, 'activation', f'{name}_output_quantizer'), **args)
    return layer(x), out


def _global_average(cls: str, name: str, cfg: dict[str, Any], x: Any, span: Span | None) -> tuple[Any, Span | None]:
    """Keras GlobalAveragePooling1D/2D (mean over the spatial axes, in float32: exact for a power-of-two
    count) as one QAveragePooling over the whole input, then a reshape to (channels,) unless keepdims."""
    from hgq.layers import QReshape

    _channels_last(name, cls, cfg)
    spatial = tuple(int(d) for d in x.shape[1:-1])
    channels = int(x.shape[-1])
    area = int(np.prod(spatial))
    if 2 ** int(round(math.log2(area))) != area:
        raise _refuse_layer(name, cls, f'over {spatial} ({area} values) is not supported: the mean is exact in '
                            'fixed point only for a power-of-two count')
    pool_cfg = {'pool_size': list(spatial), 'strides': list(spatial), 'padding': 'valid'}
    y, out = _pooling('AveragePooling1D' if len(spatial) == 1 else 'AveragePooling2D', f'{name}_pool', pool_cfg,
                      x, span)
    shape = (*(1,) * len(spatial), channels) if cfg.get('keepdims') else (channels,)
    return QReshape(shape, name=name)(y), out


def _qaverage_pooling(name: str, cfg: dict[str, Any], x: Any, span: Span | None) -> tuple[Any, Span | None]:
    """QKeras QAveragePooling2D (q2 qpooling.py:52-86, q3 qpooling.py:57-109): the mean of the window times
    pool_area times average_quantizer(1/pool_area), then `activation`. That is the plain mean exactly when the
    quantizer keeps 1/pool_area (a power of two) unchanged; anything else scales the sum and is refused."""
    pool = _ints(cfg.get('pool_size', 2), 2)
    area = int(np.prod(pool))
    spec = cfg.get('average_quantizer')
    if spec is not None:
        q = qkeras_quantizer(name, 'average_quantizer', spec)
        assert q is not None
        c = float(quantize_qkeras_np(np.array(1.0 / area), *q))
        if c != 1.0 / area:
            raise QKerasImportError(f'{name}: average_quantizer gives 1/pool_area = {c}, not {1.0 / area}: the layer '
                                    'then scales the window sum instead of averaging; not supported (use enough bits '
                                    'for 1/pool_area)')
    y, out = _pooling('AveragePooling2D', name, cfg, x, span)
    return _activation(name, cfg.get('activation'), y, out, standalone=False)


def import_qkeras(path: str | Path, input_format: tuple[int, int, int] | None = None) -> Any:
    """Read a QKeras `.h5`/`.keras` file and return the equivalent hgq model (see build_model for
    input_format, needed when the raw input feeds a weighted layer)."""
    config, weights, _ = read_qkeras_file(path)
    return build_model(config, weights, input_format)
