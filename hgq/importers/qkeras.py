"""Import a QKeras model (legacy `.h5` or qkeras-v3 `.keras`) as an hgq model, without importing QKeras,
TensorFlow or Keras 2: the file is read with h5py/zipfile and every QKeras quantizer becomes a fixed,
non-trainable hgq quantizer computing the same values.

Why fixed formats: QKeras `quantized_bits(bits, integer, keep_negative, symmetric)` with alpha=1 is the
fixed-point format k=keep_negative, i=integer, f=bits-keep_negative-integer, rounding half to even
(tf.round) and saturating; `quantized_relu(bits, integer)` is k=0 of the same. Weights are quantized here,
once, in numpy, and stored exactly; activations keep QKeras' rounding (RND_CONV) at run time.

Status (first cut): sequential chains of InputLayer, QDense, QActivation, Activation(relu/linear), Flatten.
Anything else raises QKerasImportError naming the layer and the argument, listing what is supported.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_LAYERS = ('InputLayer', 'QDense', 'QActivation', 'Activation', 'Flatten')
SUPPORTED_QUANTIZERS = ('quantized_bits(bits, integer, keep_negative, symmetric, alpha=None|1)',
                        'quantized_relu(bits, integer, negative_slope=0)')


class QKerasImportError(ValueError):
    """A QKeras file or feature this importer cannot reproduce exactly."""


# ---------------------------------------------------------------- reading files

def read_qkeras_file(path: str | Path) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """(model config, {layer name: [weights in layer order]}) from a `.h5` or `.keras` QKeras file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise QKerasImportError(f'{path}: no such file')
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if 'config.json' not in names or 'model.weights.h5' not in names:
                raise QKerasImportError(f'{path}: a .keras zip needs config.json and model.weights.h5')
            config = json.loads(z.read('config.json'))
            blob = io.BytesIO(z.read('model.weights.h5'))
        with h5py.File(blob, 'r') as h:
            weights = _keras3_weights(h, config)
        return config, weights
    try:
        h = h5py.File(path, 'r')
    except OSError as err:
        raise QKerasImportError(f'{path}: neither a .keras zip nor an HDF5 file ({err})') from err
    with h:
        if 'model_config' not in h.attrs or 'model_weights' not in h:
            raise QKerasImportError(f'{path}: a legacy .h5 model needs the model_config attribute and '
                                    'model_weights group (saved with model.save, not save_weights)')
        raw = h.attrs['model_config']
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        weights = _legacy_weights(h['model_weights'])
    return config, weights


def _legacy_weights(group: Any) -> dict[str, list[np.ndarray]]:
    out = {}
    for layer in group:
        names = [n.decode() if isinstance(n, bytes) else n for n in group[layer].attrs.get('weight_names', [])]
        out[layer] = [np.asarray(group[layer][n]) for n in names]
    return out


def _keras3_weights(h: Any, config: dict[str, Any]) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}

    def visit(name: str, obj: Any) -> None:
        m = re.fullmatch(r'(?:.*/)?layers/([^/]+)/vars', name)
        if m and hasattr(obj, 'keys'):
            out[m.group(1)] = [np.asarray(obj[k]) for k in sorted(obj.keys(), key=int)]

    h.visititems(visit)
    return out


# ---------------------------------------------------------------- quantizers

def _parse_quantizer(layer: str, argument: str, spec: Any) -> tuple[str, dict[str, Any]] | None:
    """(name, keyword arguments) of a QKeras quantizer given as a string or a serialized dict."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        name = spec.get('class_name', '')
        kwargs = dict(spec.get('config', {}))
    else:
        m = re.fullmatch(r'\s*(\w+)\s*(?:\((.*)\))?\s*', str(spec))
        if not m:
            raise QKerasImportError(f'{layer}: {argument}={spec!r} is not a quantizer expression')
        name, args = m.group(1), m.group(2) or ''
        kwargs = _parse_args(layer, argument, name, args)
    return name, kwargs


_POSITIONAL = {'quantized_bits': ('bits', 'integer', 'symmetric', 'keep_negative', 'alpha',
                                  'use_stochastic_rounding'),
               'quantized_relu': ('bits', 'integer', 'use_sigmoid', 'negative_slope', 'use_stochastic_rounding')}


def _parse_args(layer: str, argument: str, name: str, text: str) -> dict[str, Any]:
    import ast

    if name not in _POSITIONAL:
        raise QKerasImportError(f'{layer}: {argument}: {name} is not supported; '
                                f'supported: {", ".join(SUPPORTED_QUANTIZERS)}')
    try:
        call = ast.parse(f'f({text})', mode='eval').body
        pos = [ast.literal_eval(a) for a in call.args]
        kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as err:
        raise QKerasImportError(f'{layer}: {argument}={name}({text}) has arguments that are not literals') from err
    order = _POSITIONAL.get(name, ())
    if len(pos) > len(order):
        raise QKerasImportError(f'{layer}: {argument}={name}({text}): unsupported positional arguments')
    kw.update(zip(order, pos))
    return kw


#: arguments that change only gradients or bookkeeping, not the inference forward (qkeras 0.9.0 and
#: qkeras-v3 1.2.1 `__init__`), and those that change it unless they keep their default
_NO_EFFECT = {'var_name', 'use_ste', 'use_variables', 'is_quantized_clip',  # x_u: gradient path only
              'scale_axis', 'elements_per_scale', 'min_po2_exponent', 'max_po2_exponent'}  # auto alpha only
_MUST_BE_DEFAULT = {'qnoise_factor': (1, 1.0), 'relu_upper_bound': (None,), 'post_training_scale': (None,)}


def _check_arguments(layer: str, argument: str, name: str, kw: dict[str, Any]) -> None:
    """Refuse any argument we do not map exactly: an ignored argument would be a silent wrong answer."""
    for key, value in kw.items():
        if key in _POSITIONAL[name] or key in _NO_EFFECT:
            continue
        if key in _MUST_BE_DEFAULT:
            if value not in _MUST_BE_DEFAULT[key]:
                raise QKerasImportError(f'{layer}: {argument}: {name}({key}={value!r}) changes the forward and is '
                                        f'not supported; use {key}={_MUST_BE_DEFAULT[key][0]!r}')
            continue
        raise QKerasImportError(f'{layer}: {argument}: {name} argument {key!r} is not known to this importer; '
                                f'known: {", ".join(sorted({*_POSITIONAL[name], *_NO_EFFECT, *_MUST_BE_DEFAULT}))}')


def qkeras_format(layer: str, argument: str, spec: Any) -> tuple[int, int, int, str] | None:
    """(k, i, f, overflow) of the fixed-point format a QKeras quantizer computes, or an error."""
    parsed = _parse_quantizer(layer, argument, spec)
    if parsed is None:
        return None
    name, kw = parsed
    if name in _POSITIONAL:
        _check_arguments(layer, argument, name, kw)
    if kw.get('use_stochastic_rounding'):
        raise QKerasImportError(f'{layer}: {argument}: use_stochastic_rounding is not reproducible; '
                                f'supported: {", ".join(SUPPORTED_QUANTIZERS)}')
    bits, integer = int(kw.get('bits', 8)), int(kw.get('integer', 0))
    if bits - (1 if kw.get('keep_negative', True) and name == 'quantized_bits' else 0) < 1:
        raise QKerasImportError(f'{layer}: {argument}: {name} with bits={bits} is the binary (sign) case; '
                                f'supported: {", ".join(SUPPORTED_QUANTIZERS)}')
    if name == 'quantized_bits':
        alpha = kw.get('alpha')
        if alpha not in (None, 1, 1.0):
            raise QKerasImportError(f'{layer}: {argument}: quantized_bits alpha={alpha!r} is not supported; '
                                    f'supported: {", ".join(SUPPORTED_QUANTIZERS)}')
        k = 1 if kw.get('keep_negative', True) else 0
        return k, integer, bits - k - integer, 'SAT_SYM' if kw.get('symmetric') and k else 'SAT'
    if name == 'quantized_relu':
        if kw.get('negative_slope', 0) or kw.get('use_sigmoid', 0):
            raise QKerasImportError(f'{layer}: {argument}: quantized_relu negative_slope/use_sigmoid are not '
                                    f'supported; supported: {", ".join(SUPPORTED_QUANTIZERS)}')
        return 0, integer, bits - integer, 'SAT'
    raise QKerasImportError(f'{layer}: {argument}: {name} is not supported; '
                            f'supported: {", ".join(SUPPORTED_QUANTIZERS)}')


def quantize_qkeras_np(x: np.ndarray, fmt: tuple[int, int, int, str]) -> np.ndarray:
    """What QKeras computes for format `fmt`: round half to even (tf.round), then clip."""
    k, i, f, overflow = fmt
    codes = np.round(np.asarray(x, np.float64) * 2.0 ** f)
    hi = 2.0 ** (i + f) - 1
    lo = -(2.0 ** (i + f)) * k + (1 if overflow == 'SAT_SYM' else 0)
    return np.clip(codes, lo, hi) * 2.0 ** -f


def _fixed(fmt: tuple[int, int, int, str], role: str, name: str) -> Any:
    from hgq.quantizers.hgq_quantizer import FixedQuantizer

    k, i, f, overflow = fmt
    return FixedQuantizer(k=k, i=i, f=f, round_mode='RND_CONV', overflow_mode=overflow, role=role, name=name)


# ---------------------------------------------------------------- layers

def _layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    inner = config.get('config', config)
    layers = inner.get('layers') if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise QKerasImportError('model config has no layer list')
    return layers


def build_model(config: dict[str, Any], weights: dict[str, list[np.ndarray]]) -> Any:
    """The hgq Keras 3 model computing what the QKeras model computes (sequential chains only, for now)."""
    import keras

    from hgq.layers import QActivation, QDense, QFlatten

    layers = _layers(config)
    x = inputs = None
    pending: list[tuple[Any, list[np.ndarray]]] = []
    fmt: tuple[int, int, int, str] | None = None  # the format of x so far (None: float)
    for spec in layers:
        cls, cfg = spec.get('class_name'), spec.get('config', {})
        name = cfg.get('name', '?')
        if cls == 'InputLayer':
            shape = cfg.get('batch_input_shape') or cfg.get('batch_shape')
            x = inputs = keras.Input(shape=tuple(shape[1:]), name=name)
            continue
        if inputs is None:
            shape = cfg.get('batch_input_shape') or cfg.get('batch_shape')
            if shape is None:
                raise QKerasImportError(f'{name}: the model has no input shape')
            x = inputs = keras.Input(shape=tuple(shape[1:]))
        if cls == 'QDense':
            for arg in ('kernel_quantizer', 'bias_quantizer'):
                if cfg.get(arg) is None:
                    raise QKerasImportError(f'{name}: {arg} is None; the weights would be float, not fixed point')
            kf = qkeras_format(name, 'kernel_quantizer', cfg['kernel_quantizer'])
            bf = qkeras_format(name, 'bias_quantizer', cfg['bias_quantizer']) if cfg.get('use_bias', True) else None
            w = weights.get(name, [])
            q = [quantize_qkeras_np(w[0], kf)] + ([quantize_qkeras_np(w[1], bf)] if bf else [])
            if fmt is None:
                raise QKerasImportError(f'{name}: its input is not quantized (put a QActivation with '
                                        'quantized_bits before it); hgq layers need fixed-point inputs')
            layer = QDense(cfg['units'], use_bias=bf is not None, name=name,
                           input_quantizer=_fixed(fmt, 'activation', f'{name}_input_quantizer'),
                           kernel_quantizer=_fixed(kf, 'weight', f'{name}_kernel_quantizer'),
                           bias_quantizer=_fixed(bf, 'weight', f'{name}_bias_quantizer') if bf else None)
            x = layer(x)
            pending.append((layer, q))
            fmt = None
            x, fmt = _activation(name, cfg.get('activation'), x, QActivation, fmt)
        elif cls in ('QActivation', 'Activation'):
            x, fmt = _activation(name, cfg.get('activation'), x, QActivation, fmt)
        elif cls == 'Flatten':
            x = QFlatten(name=name)(x)
        else:
            raise QKerasImportError(f'{name}: layer {cls} is not supported yet; supported: '
                                    f'{", ".join(SUPPORTED_LAYERS)}')
    if inputs is None:
        raise QKerasImportError('model has no layers')
    model = keras.Model(inputs, x)
    for layer, values in pending:
        layer.kernel.assign(values[0].astype('float32'))
        if len(values) > 1:
            layer.bias.assign(values[1].astype('float32'))
    return model


def _activation(name: str, act: Any, x: Any, QActivation: Any, cur: Any) -> tuple[Any, Any]:
    """(tensor, its fixed format or None) after a QKeras activation."""
    if act in (None, 'linear'):
        return x, cur
    if act == 'relu':
        return QActivation('relu', name=f'{name}_relu')(x), (0, cur[1], cur[2], cur[3]) if cur else None
    fmt = qkeras_format(name, 'activation', act)
    base = 'relu' if str(act).startswith('quantized_relu') or (
        isinstance(act, dict) and act.get('class_name') == 'quantized_relu') else 'linear'
    return QActivation(base, output_quantizer=_fixed(fmt, 'activation', f'{name}_output_quantizer'),
                       name=f'{name}_q' if not name.endswith('_q') else name)(x), fmt


def import_qkeras(path: str | Path) -> Any:
    """Read a QKeras `.h5`/`.keras` file and return the equivalent hgq model."""
    config, weights = read_qkeras_file(path)
    return build_model(config, weights)
