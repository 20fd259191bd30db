"""Post-training quantization: a trained float Keras model in, the equivalent hgq model out.

    model = quantize_model(float_model, weights={'scheme': 'post', 'bits': 4},
                           activations={'scheme': 'lsq', 'bits': 4}, calibration=x[:64])
    graph = hgq.ir.from_model(model)      # exports as it is, or: model.compile(...); model.fit(...)  (QAT)

Why a graph walk and not `keras.models.clone_model`: one float layer does not always become one hgq
layer (a Dense followed by its BatchNormalization folds into one QDenseBatchNorm; a model input that
feeds a layer without an input quantizer gets a QQuantize), and the sign of every tensor is tracked
(after a ReLU, activation quantizers that have a `signed` argument are made unsigned: one more level
for the same bits). Every float layer keeps its name, so `overrides` and errors use the names the user
knows.

Where quantizers go: every Dense/Conv/BatchNormalization quantizes its own input (activation spec), its
kernel and bias (weight spec; `bias` spec if given), an AveragePooling its output; ReLU, max pooling,
Flatten, Reshape, Add and Concatenate are exact on fixed point and get none. Dropout is kept (it is the
identity in inference, so the export drops it, and QAT fine-tuning keeps the float model's
regularization). Calibration (`hgq.training.calibrate`) then measures the activation statistics on the
calibration samples and each quantizer's `after_calibration()` derives its parameters (e.g. the LSQ step).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

Spec = dict[str, Any] | None

SUPPORTED = ('InputLayer', 'Dense', 'Conv1D', 'Conv2D', 'BatchNormalization', 'Activation(relu|linear)', 'ReLU',
             'MaxPooling1D', 'MaxPooling2D', 'AveragePooling1D', 'AveragePooling2D', 'Flatten', 'Reshape', 'Add',
             'Concatenate', 'Dropout')
SLOTS = ('quantizer', 'input_quantizer', 'kernel_quantizer', 'bias_quantizer', 'scale_quantizer',
         'offset_quantizer', 'output_quantizer')
EXACT_ACTIVATIONS = ('relu', 'linear')


class PTQError(ValueError):
    """A float model (or a PTQ argument) that cannot be quantized as asked; the message names the layer."""


def _unsupported(layer: Any, why: str = '') -> PTQError:
    what = f'{why}; ' if why else 'is not supported; '
    return PTQError(f'layer {layer.name!r} ({type(layer).__name__}) {what}supported layers: {", ".join(SUPPORTED)}')


class _Quantizers:
    """Builds the quantizer spec of every slot: the scheme choice, per-layer overrides, unsigned after ReLU."""

    def __init__(self, weights: Spec, activations: Spec, bias: Spec, overrides: dict[str, dict[str, Spec]] | None):
        for name, spec in (('weights', weights), ('activations', activations), ('bias', bias)):
            if spec is not None and not isinstance(spec, dict):
                raise PTQError(f'quantize_model: {name}={spec!r} must be a dict such as {{"scheme": "lsq", "bits": 4}} '
                               'or None (the HGQ default)')
        self.weights, self.activations, self.bias = weights, activations, bias
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}
        for layer, slots in self.overrides.items():
            bad = sorted(set(slots) - set(SLOTS))
            if bad:
                raise PTQError(f'quantize_model: overrides[{layer!r}] has unknown slots {bad}; valid: {list(SLOTS)}')
        self.used: set[str] = set()

    def spec(self, layer: str, slot: str, role: str, nonneg: bool = False) -> Spec:
        """The spec for `layer`'s `slot`: an override, else the scheme for its role; unsigned on a ReLU output."""
        if layer in self.overrides and slot in self.overrides[layer]:
            self.used.add(layer)
            return self.overrides[layer][slot]
        if role == 'activation':
            spec = self.activations
        else:
            spec = self.bias if slot == 'bias_quantizer' and self.bias is not None else self.weights
        spec = dict(spec or {})
        if nonneg and role == 'activation' and 'signed' not in spec and _takes_signed(spec):
            spec['signed'] = False
        return spec

    def check_used(self, names: set[str]) -> None:
        unknown = sorted(set(self.overrides) - names)
        if unknown:
            raise PTQError(f'quantize_model: overrides name layers the model does not have: {unknown}; '
                           f'its layers: {sorted(names)}')


def _takes_signed(spec: dict[str, Any]) -> bool:
    """Whether the named scheme has a `signed` argument (HGQ's sign comes from the calibrated range instead)."""
    if 'scheme' not in spec:
        return False
    from hgq.layers.base import make_quantizer

    try:
        q = make_quantizer('ptq_probe', 'quantizer', dict(spec), 'activation')
    except (ValueError, TypeError):
        return False  # the real slot reports the bad spec, naming the layer
    return 'signed' in inspect.signature(type(q).__init__).parameters


# ---------------------------------------------------------------- per-layer mapping

def _config(layer: Any) -> dict[str, Any]:
    return layer.get_config()


def _check_activation(layer: Any, activation: Any) -> str:
    if activation not in EXACT_ACTIVATIONS:
        raise _unsupported(layer, f'has activation={activation!r}; only relu and linear are exact in fixed point '
                           '(train the float model with logits, or split the activation off)')
    return activation


def _check_channels_last(layer: Any, cfg: dict[str, Any]) -> None:
    if cfg.get('data_format', 'channels_last') != 'channels_last':
        raise _unsupported(layer, f'has data_format={cfg["data_format"]!r}; hgq layers are channels_last')


def _linear_kwargs(layer: Any, cfg: dict[str, Any], q: _Quantizers, nonneg: bool) -> dict[str, Any]:
    name = layer.name
    return {'name': name, 'input_quantizer': q.spec(name, 'input_quantizer', 'activation', nonneg),
            'kernel_quantizer': q.spec(name, 'kernel_quantizer', 'weight'),
            'bias_quantizer': q.spec(name, 'bias_quantizer', 'weight'),
            'kernel_regularizer': cfg.get('kernel_regularizer')}


def _conv_args(layer: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    _check_channels_last(layer, cfg)
    if any(d != 1 for d in cfg['dilation_rate']) or cfg.get('groups', 1) != 1:
        raise _unsupported(layer, f'has dilation_rate={cfg["dilation_rate"]} groups={cfg.get("groups", 1)}; '
                           'only dilation 1 and groups 1 are supported')
    if cfg['padding'] not in ('valid', 'same'):
        raise _unsupported(layer, f'has padding={cfg["padding"]!r}; use "valid" or "same"')
    return {'filters': cfg['filters'], 'kernel_size': cfg['kernel_size'], 'strides': cfg['strides'],
            'padding': cfg['padding']}


def _weighted(layer: Any, q: _Quantizers, nonneg: bool, bn: Any = None) -> tuple[Any, list[tuple[str, Any]]]:
    """(hgq layer, [(its variable name, value)]) for a Dense/Conv, with a following BatchNormalization folded in."""
    from hgq import layers as L

    cfg = _config(layer)
    activation = _check_activation(layer, cfg['activation'])
    if cfg.get('lora_rank'):
        raise _unsupported(layer, 'has LoRA enabled; merge the LoRA weights first')
    kwargs = _linear_kwargs(layer, cfg, q, nonneg)
    kernel = layer.kernel.numpy() if hasattr(layer.kernel, 'numpy') else keras.ops.convert_to_numpy(layer.kernel)
    bias = keras.ops.convert_to_numpy(layer.bias) if cfg['use_bias'] else None
    if isinstance(layer, keras.layers.Dense):
        cls, args = (L.QDenseBatchNorm if bn is not None else L.QDense), {'units': cfg['units']}
    else:
        args = _conv_args(layer, cfg)
        folded = {keras.layers.Conv1D: L.QConv1DBatchNorm, keras.layers.Conv2D: L.QConv2DBatchNorm}
        plain = {keras.layers.Conv1D: L.QConv1D, keras.layers.Conv2D: L.QConv2D}
        cls = (folded if bn is not None else plain)[type(layer)]
    values: list[tuple[str, Any]] = [('kernel', kernel)]
    if bn is None:
        new = cls(**args, activation=activation, use_bias=bias is not None, **kwargs)
        if bias is not None:
            values.append(('bias', bias))
        return new, values
    gamma, beta, mean, var = _bn_values(bn)
    new = cls(**args, activation=activation, momentum=bn.momentum, epsilon=bn.epsilon, **kwargs)
    # BN(xW + b) = BN'(xW) with the moving mean shifted by b: the folded layer has no separate bias
    values += [('bn_gamma', gamma), ('bn_beta', beta), ('moving_mean', mean - (bias if bias is not None else 0.0)),
               ('moving_variance', var)]
    return new, values


def _bn_values(bn: Any) -> tuple[np.ndarray, ...]:
    mean = keras.ops.convert_to_numpy(bn.moving_mean)
    gamma = keras.ops.convert_to_numpy(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = keras.ops.convert_to_numpy(bn.beta) if bn.center else np.zeros_like(mean)
    return gamma, beta, mean, keras.ops.convert_to_numpy(bn.moving_variance)


def _check_bn(layer: Any, rank: int) -> None:
    cfg = _config(layer)
    axis = cfg['axis'][0] if isinstance(cfg['axis'], (list, tuple)) and len(cfg['axis']) == 1 else cfg['axis']
    if axis not in (-1, rank - 1):
        raise _unsupported(layer, f'normalizes axis={cfg["axis"]!r}; only the last (channel) axis is supported')
    if cfg.get('renorm') or cfg.get('synchronized'):
        raise _unsupported(layer, 'uses renorm/synchronized batch norm; only the plain form is supported')


# ---------------------------------------------------------------- graph walk

class _Walk:
    """Rebuild the float model's graph with hgq layers, one node at a time (inputs before their consumers)."""

    def __init__(self, model: keras.Model, q: _Quantizers) -> None:
        self.functional = getattr(model, '_functional', None) or model
        if not hasattr(self.functional, '_nodes_by_depth'):
            raise PTQError(f'quantize_model: model {model.name!r} has no layer graph yet; build it on an input '
                           'shape first (call it once, or start it with keras.Input)')
        self.q = q
        self.tensors: dict[str, tuple[Any, bool, bool]] = {}  # keras tensor name -> (new tensor, quantized, >= 0)
        self.assign: list[tuple[Any, list[tuple[str, Any]]]] = []
        self.nodes = [n for d in sorted(self.functional._nodes_by_depth, reverse=True)
                      for n in self.functional._nodes_by_depth[d]]
        self.consumers: dict[str, int] = {}
        for node in self.nodes:
            for kt in node.arguments.keras_tensors:
                self.consumers[kt.name] = self.consumers.get(kt.name, 0) + 1
        for kt in self.functional.outputs:
            self.consumers[kt.name] = self.consumers.get(kt.name, 0) + 1
        seen: dict[int, str] = {}
        for node in self.nodes:
            op = node.operation
            if id(op) in seen and not isinstance(op, keras.layers.InputLayer):
                raise _unsupported(op, 'is called more than once (a shared layer); hgq layers would not share '
                                   'its weights in QAT')
            seen[id(op)] = op.name

    def _fold_target(self, node: Any) -> Any:
        """The BatchNormalization node that directly and solely consumes this Dense/Conv node's output, if any."""
        out = node.outputs[0].name
        if self.consumers.get(out, 0) != 1 or _config(node.operation)['activation'] != 'linear':
            return None
        for other in self.nodes:
            if type(other.operation) is keras.layers.BatchNormalization and \
                    [k.name for k in other.arguments.keras_tensors] == [out]:
                return other
        return None

    def _quantized(self, owner: str, name: str, x: Any, quantized: bool, nonneg: bool) -> Any:
        """x, behind a QQuantize (spec: `owner`'s 'quantizer' slot) when a layer that needs fixed-point input
        and has no input quantizer of its own (max pooling, Add, Concatenate) receives float values."""
        if quantized:
            return x
        from hgq import layers as L

        return L.QQuantize(self.q.spec(owner, 'quantizer', 'activation', nonneg), name=name)(x)

    def _relu(self, op: Any, x: Any, quantized: bool, nonneg: bool) -> tuple[Any, bool, bool]:
        from hgq import layers as L

        spec = None if quantized else self.q.spec(op.name, 'input_quantizer', 'activation', nonneg)
        return L.QActivation('relu', input_quantizer=spec, name=op.name)(x), True, True

    def run(self) -> tuple[list[Any], list[Any]]:
        folded: set[int] = set()
        for node in self.nodes:
            op = node.operation
            if id(node) in folded:
                continue
            if isinstance(op, keras.layers.InputLayer):
                kt = node.outputs[0]
                x = keras.Input(shape=tuple(kt.shape[1:]), batch_size=None, name=op.name)
                self.tensors[kt.name] = (x, False, False)
                continue
            ins = [self.tensors[k.name] for k in node.arguments.keras_tensors]
            bn_node = None
            if type(op) in (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D):
                bn_node = self._fold_target(node)
                if bn_node is not None:
                    _check_bn(bn_node.operation, len(node.outputs[0].shape))
                    folded.add(id(bn_node))
            y, quantized, nonneg = self._layer(op, node, ins, bn_node)
            out = (bn_node or node).outputs[0]
            self.tensors[out.name] = (y, quantized, nonneg)
        inputs = [self.tensors[k.name][0] for k in self.functional.inputs]
        outputs = [self.tensors[k.name][0] for k in self.functional.outputs]
        return inputs, outputs

    def _layer(self, op: Any, node: Any, ins: list[tuple[Any, bool, bool]], bn_node: Any) -> tuple[Any, bool, bool]:
        """(output tensor, whether it is on a fixed-point grid, whether it is >= 0) of one float layer."""
        from hgq import layers as L

        kind = type(op)
        x, quantized, nonneg = ins[0]
        if kind in (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D):
            new, values = _weighted(op, self.q, nonneg, bn_node.operation if bn_node is not None else None)
            self.assign.append((new, values))
            return new(x), True, new.activation == 'relu'
        if kind is keras.layers.BatchNormalization:
            _check_bn(op, len(node.outputs[0].shape))
            name = op.name
            new = L.QBatchNormalization(momentum=op.momentum, epsilon=op.epsilon, name=name,
                                        input_quantizer=self.q.spec(name, 'input_quantizer', 'activation', nonneg),
                                        scale_quantizer=self.q.spec(name, 'scale_quantizer', 'weight'),
                                        offset_quantizer=self.q.spec(name, 'offset_quantizer', 'weight'))
            gamma, beta, mean, var = _bn_values(op)
            self.assign.append((new, [('gamma', gamma), ('offset', beta), ('moving_mean', mean),
                                      ('moving_variance', var)]))
            return new(x), True, False
        if kind is keras.layers.Dropout:
            return keras.layers.Dropout(**_plain_config(op))(x), quantized, nonneg
        if kind is keras.layers.Activation:
            act = _check_activation(op, _config(op)['activation'])
            if act == 'linear':
                return x, quantized, nonneg
            return self._relu(op, x, quantized, nonneg)
        if kind is keras.layers.ReLU:
            cfg = _config(op)
            if cfg.get('max_value') is not None or cfg.get('negative_slope') or cfg.get('threshold'):
                raise _unsupported(op, f'has max_value={cfg.get("max_value")} negative_slope='
                                   f'{cfg.get("negative_slope")} threshold={cfg.get("threshold")}; only the plain '
                                   'ReLU is exact here')
            return self._relu(op, x, quantized, nonneg)
        if kind in (keras.layers.Flatten, keras.layers.Reshape):  # relabelling: float values may pass
            cfg = _plain_config(op)
            _check_channels_last(op, cfg)
            cls = L.QFlatten if kind is keras.layers.Flatten else L.QReshape
            return cls(**cfg)(x), quantized, nonneg
        structural: dict[type, Callable[..., Any]] = {
            keras.layers.MaxPooling1D: L.QMaxPooling1D, keras.layers.MaxPooling2D: L.QMaxPooling2D,
            keras.layers.Add: L.QAdd, keras.layers.Concatenate: L.QConcatenate}
        if kind in structural:
            cfg = _plain_config(op)
            _check_channels_last(op, cfg)
            xs = [self._quantized(op.name, f'{op.name}_quantize{j}' if len(ins) > 1 else f'{op.name}_quantize',
                                  t, qz, nn) for j, (t, qz, nn) in enumerate(ins)]
            y = structural[kind](**cfg)(xs if kind in (keras.layers.Add, keras.layers.Concatenate) else xs[0])
            return y, True, all(nn for _, _, nn in ins)
        if kind in (keras.layers.AveragePooling1D, keras.layers.AveragePooling2D):
            cfg = _plain_config(op)
            _check_channels_last(op, cfg)
            cls = L.QAveragePooling1D if kind is keras.layers.AveragePooling1D else L.QAveragePooling2D
            new = cls(**cfg, output_quantizer=self.q.spec(op.name, 'output_quantizer', 'activation', nonneg))
            return new(self._quantized(op.name, f'{op.name}_quantize', x, quantized, nonneg)), True, nonneg
        if isinstance(op, keras.Model):
            raise _unsupported(op, 'is a nested model; flatten it into one functional model first')
        raise _unsupported(op)


def _plain_config(layer: Any) -> dict[str, Any]:
    """A structural layer's config without dtype policy (hgq models compute in float32)."""
    cfg = _config(layer)
    cfg.pop('dtype', None)
    return cfg


# ---------------------------------------------------------------- the function

def quantize_model(float_model: keras.Model, weights: Spec = None, activations: Spec = None,
                   calibration: Any = None, overrides: dict[str, dict[str, Spec]] | None = None,
                   bias: Spec = None, name: str | None = None) -> keras.Model:
    """The hgq model computing what `float_model` computes, quantized with the chosen schemes and calibrated.

    Args:
        float_model: a built Sequential or functional Keras 3 model of the layers in SUPPORTED.
        weights: the spec of every weight slot (kernel, bias, batch-norm scale/offset), e.g.
            {'scheme': 'post', 'bits': 4}; None: the HGQ default quantizer.
        activations: the spec of every activation slot (layer inputs, average-pooling outputs), e.g.
            {'scheme': 'lsq', 'bits': 4}; None: HGQ. After a ReLU a scheme with `signed` gets signed=False.
        calibration: input samples (64 are enough) for the activation statistics; an array, or a
            list/dict of arrays for a multi-input model. Required.
        overrides: {float layer name: {slot: spec}}, slot one of SLOTS (the hgq layer's argument name).
        bias: the spec of the bias slots if different from `weights` (e.g. {} for HGQ's default).
        name: the new model's name (default: the float model's).

    Returns an uncompiled hgq model, calibrated: it exports as it is (hgq.ir.from_model), or compile
    it and fine-tune with model.fit (QAT).
    """
    from hgq.training import calibrate

    if not isinstance(float_model, keras.Model):
        raise PTQError(f'quantize_model: float_model must be a keras.Model, got {type(float_model).__name__}')
    if calibration is None:
        raise PTQError('quantize_model: calibration samples are required (64 inputs are enough), e.g. x_train[:64]')
    q = _Quantizers(weights, activations, bias, overrides)
    walk = _Walk(float_model, q)
    inputs, outputs = walk.run()
    q.check_used({n.operation.name for n in walk.nodes})
    model = keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
                        name=name or float_model.name)
    for layer, values in walk.assign:
        for attr, value in values:
            var = getattr(layer, attr)
            if tuple(var.shape) != tuple(np.shape(value)):
                raise PTQError(f'layer {layer.name!r}: {attr} has shape {tuple(var.shape)}, the float value '
                               f'{np.shape(value)}')
            var.assign(np.asarray(value, dtype='float32'))
    # One eager call on a sample: weight quantizers derive their parameters from the copied weights
    # (LSQ's step, POST's α; calibrate() runs statelessly and keeps only calibration variables).
    leaves = keras.tree.flatten(calibration)
    first = keras.tree.pack_sequence_as(calibration, [np.asarray(v, dtype='float32')[:1] for v in leaves])
    model(first, training=False)
    calibrate(model, calibration)
    return model


def scheme_spec(scheme: str, bits: int | None = None, options: dict[str, Any] | None = None) -> Spec:
    """The spec dict of a scheme choice (what `hgq ptq --scheme/--bits/--option` says); 'hgq': None (the default)."""
    from hgq.quantizers.registry import scheme_names

    if scheme not in scheme_names():
        raise PTQError(f'scheme {scheme!r} is not known; use one of {scheme_names()}')
    spec: dict[str, Any] = dict(options or {})
    if bits is not None:
        if scheme == 'hgq':
            raise PTQError('scheme "hgq" learns its bit-widths per element; --bits applies to fixed-width schemes '
                           '(lsq, post, ...); give f_init=... as an option instead')
        spec['bits'] = bits
    if scheme == 'hgq' and not spec:
        return None
    return {'scheme': scheme, **spec}


def parse_options(items: list[str] | None, flag: str) -> dict[str, Any]:
    """{'base': 'pow2', 'signed': False} from ['base=pow2', 'signed=false'] (values read as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition('=')
        if not sep or not key.isidentifier():
            raise PTQError(f'{flag} {item!r} must be KEY=VALUE, e.g. {flag} base=pow2')
        out[key] = yaml.safe_load(value) if value else value
    return out
