"""QKeras quantizers as exact fixed-point formats (read in qkeras 0.9.0 and qkeras-v3 1.2.1 quantizers.py;
docs/qkeras.md cites the lines).

`quantized_bits(bits, integer, symmetric, keep_negative, alpha)` computes, with m = 2^(bits-keep_negative):
    alpha · 2^integer · clip(round(x · m / 2^integer), keep_negative·(symmetric - m), m - 1) / m
(round = tf.round / keras.ops.round, half to even). With alpha None/1 that is the fixed-point format
k=keep_negative, i=integer, f=bits-k-integer, RND_CONV, SAT (SAT_SYM if symmetric). A power-of-two
alpha (scalar or one per output channel) scales the *rounded* value: weights then lie on the grid of
f - log2(min alpha) and within 2^(i + log2(max alpha)); they are quantized here, once, in float64, which
is exact. `quantized_relu(bits, integer)` is k=0 of the same (round, then clip to [0, 2^i - 2^-f]).
`quantized_po2` (weights only) rounds log2|x|: see quantize_po2_weights.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

import numpy as np

from .qkeras_files import QKerasImportError

SUPPORTED_QUANTIZERS = ('quantized_bits(bits, integer, symmetric, keep_negative, alpha=None|1|power of two|'
                        'list of powers of two (weights only))',
                        'quantized_relu(bits, integer, negative_slope=0)',
                        'quantized_po2(bits, max_value, quadratic_approximation, log2_rounding) (weights; '
                        'activations: an exact level table on the input grid, log2_rounding=rnd)',
                        'quantized_relu_po2(bits, max_value, quadratic_approximation, negative_slope=0) (activations)')

#: (k, i, f, overflow) of a QKeras quantizer, plus the alpha exponents for weights
Format = tuple[int, int, int, str]

_POSITIONAL = {'quantized_bits': ('bits', 'integer', 'symmetric', 'keep_negative', 'alpha',
                                  'use_stochastic_rounding'),
               'quantized_relu': ('bits', 'integer', 'use_sigmoid', 'negative_slope', 'use_stochastic_rounding'),
               'quantized_po2': ('bits', 'max_value', 'use_stochastic_rounding', 'quadratic_approximation',
                                 'log2_rounding'),
               'quantized_relu_po2': ('bits', 'max_value', 'negative_slope', 'use_stochastic_rounding',
                                      'quadratic_approximation', 'log2_rounding')}

#: arguments that change only gradients or bookkeeping, not the inference forward (qkeras 0.9.0 and
#: qkeras-v3 1.2.1 `__init__`), and those that change it unless they keep their default
_NO_EFFECT = {'var_name', 'use_ste', 'use_variables', 'is_quantized_clip',  # x_u: gradient path only
              'scale_axis', 'elements_per_scale', 'min_po2_exponent', 'max_po2_exponent'}  # auto alpha only
_MUST_BE_DEFAULT = {'qnoise_factor': (1, 1.0), 'relu_upper_bound': (None,), 'post_training_scale': (None,)}

_WHY = {
    'quantized_ulaw': 'its levels are m_i·log(1 + u·|rp|)/log(1 + u) computed with TensorFlow\'s float32 log, '
                      'which is not correctly rounded and which numpy cannot reproduce: measured over 420 '
                      'configurations (bits 2-8, integer 0-2, symmetric 0/1, ten u from 0.5 to 255) in TF 2.15.1 '
                      'and 2.21.0, a correctly rounded log gives 13,962 of 271,140 outputs (5.1%) different and '
                      'numpy\'s float32 log 16,365 (6.0%); the index (a hard-sigmoid rounding) is exact, the levels '
                      'are not (docs/qkeras.md)',
    'quantized_tanh': 'it applies tanh in float32 before rounding',
    'quantized_sigmoid': 'it applies a sigmoid in float32 before rounding',
    'quantized_hswish': 'it applies hard-swish in float32 before rounding',
    'binary': 'the 1-bit sign quantizer is not mapped', 'stochastic_binary': 'it is stochastic',
    'ternary': 'its threshold depends on the tensor statistics', 'stochastic_ternary': 'it is stochastic',
    'bernoulli': 'it is stochastic', 'quantized_linear': 'it is not mapped yet',
}


def unsupported(layer: str, argument: str, what: str) -> QKerasImportError:
    return QKerasImportError(f'{layer}: {argument}: {what}; supported: {"; ".join(SUPPORTED_QUANTIZERS)}')


def parse_quantizer(layer: str, argument: str, spec: Any) -> tuple[str, dict[str, Any]] | None:
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
        if name not in _POSITIONAL:
            raise _refuse_name(layer, argument, name)
        kwargs = _parse_args(layer, argument, name, args)
    if name not in _POSITIONAL:
        raise _refuse_name(layer, argument, name)
    return name, kwargs


def _refuse_name(layer: str, argument: str, name: str) -> QKerasImportError:
    why = _WHY.get(name)
    return unsupported(layer, argument, f'{name} is not supported' + (f' ({why})' if why else ''))


def _parse_args(layer: str, argument: str, name: str, text: str) -> dict[str, Any]:
    try:
        call = ast.parse(f'f({text})', mode='eval').body
        pos = [ast.literal_eval(a) for a in call.args]  # type: ignore[attr-defined]
        kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords}  # type: ignore[attr-defined]
    except (SyntaxError, ValueError) as err:
        raise QKerasImportError(f'{layer}: {argument}={name}({text}) has arguments that are not literals') from err
    order = _POSITIONAL[name]
    if len(pos) > len(order):
        raise QKerasImportError(f'{layer}: {argument}={name}({text}): unsupported positional arguments')
    kw.update(zip(order, pos))
    return kw


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


def _alpha_exponents(layer: str, argument: str, alpha: Any) -> np.ndarray | None:
    """log2(alpha) as integers (None for alpha None/1), or a clear refusal."""
    if alpha is None:
        return None
    if isinstance(alpha, str):
        raise unsupported(layer, argument, f'quantized_bits alpha={alpha!r} is not supported (the scale is '
                          'computed from the tensor at run time; give a power of two or a list of them)')
    a = np.asarray(alpha, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise unsupported(layer, argument, f'quantized_bits alpha={alpha!r} is not a positive number')
    e = np.log2(a)
    if not np.all(e == np.round(e)):
        raise unsupported(layer, argument, f'quantized_bits alpha={alpha!r} is not a power of two (a non-po2 scale '
                          'is not fixed point)')
    e = e.astype(np.int64)
    return None if np.all(e == 0) else e


def qkeras_quantizer(layer: str, argument: str, spec: Any) -> tuple[Format, np.ndarray | None] | None:
    """((k, i, f, overflow) before alpha, log2(alpha) or None) of a QKeras quantizer, or a clear error."""
    parsed = parse_quantizer(layer, argument, spec)
    if parsed is None:
        return None
    name, kw = parsed
    _check_arguments(layer, argument, name, kw)
    if name in PO2_NAMES:
        raise unsupported(layer, argument, f'{name} is supported on weights (quantized_po2) and as an activation '
                          'with a quantized input (an exact level table), not here')
    if kw.get('use_stochastic_rounding'):
        raise unsupported(layer, argument, 'use_stochastic_rounding is not reproducible')
    bits, integer = kw.get('bits', 8), kw.get('integer', 0)
    for key, v in (('bits', bits), ('integer', integer)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise unsupported(layer, argument, f'{name}({key}={v!r}) must be an integer')
    bits, integer = int(bits), int(integer)
    if name == 'quantized_bits':
        k = 1 if kw.get('keep_negative', True) else 0
        if bits - k < 1:
            raise unsupported(layer, argument, f'{name} with bits={bits} is the binary (sign) case')
        fmt = (k, integer, bits - k - integer, 'SAT_SYM' if kw.get('symmetric') and k else 'SAT')
        return fmt, _alpha_exponents(layer, argument, kw.get('alpha'))
    if kw.get('negative_slope', 0) or kw.get('use_sigmoid', 0):
        raise unsupported(layer, argument, 'quantized_relu negative_slope/use_sigmoid are not supported')
    if bits < 1:
        raise unsupported(layer, argument, f'{name} with bits={bits} has no value bits')
    return (0, integer, bits - integer, 'SAT'), None


def qkeras_format(layer: str, argument: str, spec: Any) -> Format | None:
    """(k, i, f, overflow) of an activation quantizer (alpha must be 1 there), or a clear error."""
    q = qkeras_quantizer(layer, argument, spec)
    if q is None:
        return None
    fmt, alpha = q
    if alpha is not None:
        raise unsupported(layer, argument, 'a power-of-two alpha other than 1 is supported on weights only '
                          '(on an activation it is a rescale after rounding, not one fixed-point quantizer)')
    return fmt


def quantize_qkeras_np(x: np.ndarray, fmt: Format, alpha_exp: np.ndarray | None = None) -> np.ndarray:
    """What QKeras computes for `fmt`: round half to even (tf.round), clip the code, times alpha (exact)."""
    k, i, f, overflow = fmt
    codes = np.round(np.ldexp(np.asarray(x, np.float64), f))
    hi = 2.0 ** (i + f) - 1  # m - 1 with m = 2^(bits - keep_negative)
    lo = -(2.0 ** (i + f)) * k + (1 if overflow == 'SAT_SYM' else 0)
    q = np.ldexp(np.clip(codes, lo, hi), -f)
    return q if alpha_exp is None else q * np.exp2(alpha_exp.astype(np.float64))


def weight_format(fmt: Format, alpha_exp: np.ndarray | None) -> tuple[int, int, int]:
    """(k, i, f) covering every value a weight quantizer with this alpha can produce."""
    k, i, f, _ = fmt
    if alpha_exp is None:
        return k, i, f
    return k, i + int(alpha_exp.max()), f - int(alpha_exp.min())


def covering_format(lo: float, hi: float, f: int) -> tuple[int, int, int]:
    """Smallest (k, i) with f fractional bits whose range [-k·2^i, 2^i - 2^-f] holds [lo, hi]."""
    k = 1 if lo < 0 else 0
    i = -f  # smallest meaningful
    if hi > 0:
        i = max(i, math.ceil(math.log2(hi + 2.0 ** -f)))
    if lo < 0:
        i = max(i, math.ceil(math.log2(-lo)))
    return k, max(i, 1 - k - f), f


def frac_bits(values: np.ndarray) -> int:
    """Fewest fractional bits f (possibly negative) with every value an integer multiple of 2^-f."""
    v = np.asarray(values, np.float64).ravel()
    v = v[v != 0]
    if v.size == 0:
        return 0
    for f in range(-40, 80):
        s = np.ldexp(v, f)
        if np.all(s == np.round(s)):
            return f
    raise QKerasImportError('weights are not on a fixed-point grid')


_EPS = np.float32(1e-7)  # keras.backend.epsilon(), the `x_abs < eps` test of _clip_power_of_two
_LOG2_MARGIN = 1e-5      # float32 log error is ~1e-7; a decision this close to its boundary is refused


def quantize_po2_weights(layer: str, argument: str, spec: Any, x: np.ndarray) -> np.ndarray | None:
    """QKeras quantized_po2 on a weight tensor, exactly, or None if `spec` is not quantized_po2.

    q2 quantizers.py:1992 / _clip_power_of_two :1804; q3 :3111 / :2894:
        xq = sign'(x) · 2^clip(round(log(v)/log 2), min_exp, max_exp),  v = eps if |x| < eps else min(|x|, max_value)
    (sign'(0) = +1; |x| < eps gives min_exp; quadratic_approximation: 2·round(log(sqrt v)/log 2), an even
    exponent; log2_rounding='floor' floors instead). QKeras takes the float32 log, which is not correctly
    rounded, so a weight whose log2 lies within 1e-5 of a rounding boundary is refused instead of guessed.
    """
    parsed = parse_quantizer(layer, argument, spec)
    if parsed is None or parsed[0] != 'quantized_po2':
        return None
    kw = parsed[1]
    _check_arguments(layer, argument, 'quantized_po2', kw)
    if kw.get('use_stochastic_rounding'):
        raise unsupported(layer, argument, 'use_stochastic_rounding is not reproducible')
    bits, max_value = int(kw.get('bits', 8)), kw.get('max_value')
    quad, mode = bool(kw.get('quadratic_approximation', False)), kw.get('log2_rounding', 'rnd')
    if mode not in ('rnd', 'floor'):
        raise unsupported(layer, argument, f'quantized_po2 log2_rounding={mode!r} is not known (rnd, floor)')
    if max_value is not None and max_value < 0:
        raise unsupported(layer, argument, f'quantized_po2 max_value={max_value!r} must be non-negative')
    effect = bits - 1 - (0 if max_value is not None and max_value <= 1 else 1)  # _get_min_max_exponents
    min_exp, max_exp = -2 ** effect, 2 ** effect - 1
    if quad:
        max_exp = 2 * (max_exp // 2)
    x = np.asarray(x, np.float32)
    a = np.abs(x)
    v = np.where(a < _EPS, _EPS, a).astype(np.float64)
    if max_value is not None:
        v = np.where(v >= np.float32(max_value), np.float64(np.float32(max_value)), v)
    t = np.log2(np.sqrt(v)) if quad else np.log2(v)
    boundary = np.floor(t) + (0.0 if mode == 'floor' else 0.5)
    near = (np.abs(t - boundary) < _LOG2_MARGIN) | (np.abs(t - boundary - 1) < _LOG2_MARGIN)
    near &= a >= _EPS
    if np.any(near):
        raise QKerasImportError(f'{layer}: {argument}: {int(near.sum())} weight(s) lie within {_LOG2_MARGIN} of a '
                                'quantized_po2 rounding boundary in log2; QKeras decides them with a float32 log '
                                'that cannot be reproduced without TensorFlow, so this import would have to guess')
    e = np.floor(t) if mode == 'floor' else np.round(t)
    e = (2.0 if quad else 1.0) * np.clip(e, min_exp, max_exp)
    e = np.where(a < _EPS, float(min_exp), e)
    sign = np.where(x < 0, -1.0, 1.0)
    return sign * np.exp2(e)


PO2_NAMES = ('quantized_po2', 'quantized_relu_po2')
MAX_GRID = 2**22  # input grid values tabulated for a po2 activation table


def _log2_margin(t: np.ndarray) -> np.ndarray:
    """How far (in log2) QKeras' float32 `log(v)/log(2)` may be from the exact log2: the larger of 1e-5 and
    8 float32 ulps of t (TF's log is within a few ulps; the division adds one rounding)."""
    return np.maximum(_LOG2_MARGIN, 8 * np.spacing(np.abs(t).astype(np.float32)).astype(np.float64))


def po2_activation_table(layer: str, argument: str, spec: Any, lo: float, hi: float,
                         f: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(thresholds, levels) of QKeras quantized_po2 / quantized_relu_po2 as an activation whose inputs are
    the multiples of 2^-f in [lo, hi], or None if `spec` is neither. Exact, or a refusal.

    q2 quantizers.py:1992-2010 (quantized_po2.__call__), :2137-2175 (quantized_relu_po2.__call__),
    _clip_power_of_two :1804-1873; q3 :3111-3141, :3268-3320, :2894-2985. Per input x (float32):
        po2:      xq = sign'(x) · 2^E(|x|),  out = x + (xq - x)            (sign'(0) = +1)
        relu_po2: xq = 2^E(relu(x)),        out = r + (xq - r),  r = relu(x), or max_value where x > max_value
        E(a) = min_exp if a < 1e-7 else clip(round(log(min(a, max_value)) / log 2), min_exp, max_exp)
    (quadratic_approximation: 2·clip(round(log(sqrt v)/log 2), ...)). Every grid value is evaluated here: the
    exponent in float64 (refused where the exact log2 lies within _log2_margin of a rounding boundary that
    changes the result: TF's float32 log cannot be reproduced there), the straight-through sum in numpy
    float32 (IEEE, as TF). The outputs must be non-decreasing in x; the table is then their distinct values
    and the first grid value of each."""
    parsed = parse_quantizer(layer, argument, spec)
    if parsed is None or parsed[0] not in PO2_NAMES:
        return None
    name, kw = parsed
    _check_arguments(layer, argument, name, kw)
    if kw.get('use_stochastic_rounding'):
        raise unsupported(layer, argument, 'use_stochastic_rounding is not reproducible')
    bits, max_value = kw.get('bits', 8), kw.get('max_value')
    quad, mode = bool(kw.get('quadratic_approximation', False)), kw.get('log2_rounding', 'rnd')
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or int(bits) != bits or bits < 1:
        raise unsupported(layer, argument, f'{name}(bits={bits!r}) must be a positive integer')
    if mode != 'rnd':
        raise unsupported(layer, argument, f'{name}(log2_rounding={mode!r}) on an activation is not supported: '
                          'floor(log2) decides at exact powers of two, where TF\'s float32 log may land either side')
    if name == 'quantized_relu_po2' and kw.get('negative_slope', 0):
        raise unsupported(layer, argument, 'quantized_relu_po2 with negative_slope != 0 is not supported')
    if max_value is not None and (not isinstance(max_value, (int, float)) or max_value < 0):
        raise unsupported(layer, argument, f'{name}(max_value={max_value!r}) must be a non-negative number')
    sign_bit = 0 if max_value is not None and max_value <= 1 else 1  # _need_exponent_sign_bit_check
    effect = int(bits) - (1 if name == 'quantized_po2' else 0) - sign_bit
    min_exp, max_exp = -2 ** effect, 2 ** effect - 1
    if quad:
        max_exp = 2 * (max_exp // 2)
    c_lo, c_hi = math.ceil(lo * 2.0 ** f), math.floor(hi * 2.0 ** f)
    if c_hi - c_lo + 1 > MAX_GRID:
        raise unsupported(layer, argument, f'{name}: its input grid has {c_hi - c_lo + 1} values (more than '
                          f'{MAX_GRID}); the level table is computed over every one')
    x32 = np.ldexp(np.arange(c_lo, c_hi + 1, dtype=np.float64), -f).astype(np.float32)
    if np.any(np.ldexp(x32.astype(np.float64), f) != np.arange(c_lo, c_hi + 1)):
        raise unsupported(layer, argument, f'{name}: its inputs do not fit float32 exactly')
    mv = None if max_value is None else np.float32(max_value)
    a = np.abs(x32) if name == 'quantized_po2' else np.maximum(x32, np.float32(0))
    v = np.where(a < _EPS, _EPS, a)
    if mv is not None:
        v = np.where(v >= mv, mv, v)
    t = np.log2(np.sqrt(v.astype(np.float64))) if quad else np.log2(v.astype(np.float64))
    margin = _log2_margin(t)

    def exponent(tt: np.ndarray) -> np.ndarray:
        return (2.0 if quad else 1.0) * np.clip(np.round(tt), min_exp, max_exp)

    unsure = (exponent(t - margin) != exponent(t + margin)) & (a >= _EPS)
    if np.any(unsure):
        bad = x32[unsure][:3].tolist()
        raise QKerasImportError(f'{layer}: {argument}: {name}: {int(unsure.sum())} input grid value(s) (e.g. {bad}) '
                                'lie within float32 rounding of a log2 rounding boundary; QKeras decides them with '
                                'a float32 log that cannot be reproduced without TensorFlow, so this import would '
                                'have to guess')
    e = np.where(a < _EPS, float(min_exp), exponent(t))
    if np.any(np.abs(e) > 126):
        raise unsupported(layer, argument, f'{name}: exponents beyond float32 range')
    if name == 'quantized_po2':
        base = x32
        xq = np.where(x32 < 0, -1.0, 1.0) * np.exp2(e)
    else:
        base = np.maximum(x32, np.float32(0))
        if mv is not None:
            base = np.where(x32 <= mv, base, mv)
        xq = np.exp2(e)
    xq32 = xq.astype(np.float32)
    use_ste = kw.get('use_ste', True)
    out = (base + (xq32 - base)).astype(np.float32) if use_ste else xq32
    out = out.astype(np.float64)
    if np.any(np.diff(out) < 0):
        raise unsupported(layer, argument, f'{name}: its outputs are not monotone in the input on this grid')
    change = np.flatnonzero(np.diff(out) != 0) + 1
    levels = out[np.concatenate([[0], change])]
    thresholds = np.ldexp(np.arange(c_lo, c_hi + 1, dtype=np.float64), -f)[change]
    return thresholds, levels
