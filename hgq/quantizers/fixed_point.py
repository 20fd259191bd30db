"""Stateless fixed-point math: the `ap_fixed<W, I, Q, O>` contract, for numpy and for keras.ops.

A format is (k, i, f): k sign bit, i integer bits without the sign, f fractional bits, all
integers, broadcast per element; width b = k + i + f; range [-k·2^i, 2^i - 2^-f]; step 2^-f.
An element with b <= 0 is the constant 0. Quantizing = rounding at step 2^-f, then overflow
handling on the integer code r = x·2^f, whose range is [-k·2^(b-k), 2^(b-k) - 1].

One implementation, `quantize_with`, serves both array modules so that the numpy reference and
the training graph cannot drift apart. With numpy it runs in float64 and is exact: scaling by a
power of two, floor, comparisons and fmod by a power of two are all exact in IEEE arithmetic.
With keras.ops it runs in the tensors' dtype (float32 in training), exact while codes fit the
mantissa.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .modes import check_overflow_mode, check_round_mode


def _round_codes(xp: Any, scaled: Any, round_mode: str) -> Any:
    """Round x·2^f to an integer code following the named ap_fixed rounding mode."""
    low = xp.floor(scaled)
    if round_mode == 'TRN':
        return low
    if round_mode == 'TRN_ZERO':
        return xp.where(scaled < 0, xp.ceil(scaled), low)
    frac = scaled - low  # exact: low and scaled share the exponent range
    above = frac > 0.5
    half = frac == 0.5
    if round_mode == 'RND':
        up = frac >= 0.5
    elif round_mode == 'RND_MIN_INF':
        up = above
    elif round_mode == 'RND_ZERO':
        up = xp.logical_or(above, xp.logical_and(half, scaled < 0))
    elif round_mode == 'RND_INF':
        up = xp.logical_or(above, xp.logical_and(half, scaled > 0))
    else:  # RND_CONV: ties to even
        up = xp.logical_or(above, xp.logical_and(half, xp.mod(low, 2.0) == 1.0))
    return xp.where(up, low + 1.0, low)


def _overflow_codes(xp: Any, codes: Any, k: Any, b: Any, overflow_mode: str) -> Any:
    """Bring integer codes into the range of a b-bit (signed if k) word."""
    magnitude_bits = b - k
    hi = xp.power(2.0, magnitude_bits) - 1.0
    lo = -k * xp.power(2.0, magnitude_bits)
    if overflow_mode == 'WRAP':
        # Codes in range are returned untouched: for wide words (2^b > 2^53) the modular
        # arithmetic below is not exact in float64, but only out-of-range codes go through it.
        modulus = xp.power(2.0, b)
        wrapped = xp.mod(codes, modulus)  # in [0, 2^b)
        wrapped = xp.where(xp.logical_and(k > 0, wrapped > hi), wrapped - modulus, wrapped)
        return xp.where(xp.logical_and(codes >= lo, codes <= hi), codes, wrapped)
    if overflow_mode == 'SAT_SYM':
        # -hi, except for a lone sign bit (hi == 0): there ap_fixed<1, I, Q, AP_SAT_SYM> keeps -1
        # (its symmetric minimum would be 0), i.e. it saturates like AP_SAT. Checked against g++.
        lo = -k * xp.maximum(hi, 1.0)
    return xp.minimum(xp.maximum(codes, lo), hi)


def quantize_with(xp: Any, x: Any, k: Any, i: Any, f: Any, round_mode: str = 'TRN',
                  overflow_mode: str = 'WRAP') -> Any:
    """Quantize x to the per-element format (k, i, f) with the array module `xp`.

    `xp` is numpy or keras.ops; k, i, f are integer-valued arrays broadcastable to x (float
    dtype with keras.ops). Returns values on the 2^-f grid, 0 where k + i + f <= 0.
    """
    round_mode = check_round_mode(round_mode)
    overflow_mode = check_overflow_mode(overflow_mode)
    b = k + i + f
    step_inv = xp.power(2.0, f)
    codes = _round_codes(xp, x * step_inv, round_mode)
    codes = _overflow_codes(xp, codes, k, b, overflow_mode)
    return xp.where(b > 0, codes / step_inv, 0.0 * x)


def quantize_np(x: Any, k: Any, i: Any, f: Any, round_mode: str = 'TRN',
                overflow_mode: str = 'WRAP') -> np.ndarray:
    """Exact numpy reference of `ap_fixed` quantization (float64 in and out).

    Raises ValueError for NaN/Inf inputs: fixed-point hardware has no such values.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f'quantize_np: input has {int((~np.isfinite(x)).sum())} NaN/Inf values; '
                         'fixed-point formats hold finite numbers only')
    k, i, f = (np.asarray(v, dtype=np.float64) for v in (k, i, f))
    for name, v in (('k', k), ('i', i), ('f', f)):
        if not np.all(v == np.round(v)):
            raise ValueError(f'quantize_np: {name} must be integer-valued, got {v!r}')
    if np.any((k != 0) & (k != 1)):
        raise ValueError('quantize_np: k (sign bit) must be 0 or 1')
    return quantize_with(np, x, k, i, f, round_mode, overflow_mode)


def ceil_log2_np(v: Any) -> np.ndarray:
    """Exact ceil(log2(v)) for v > 0, from the binary exponent (no float log)."""
    mantissa, exponent = np.frexp(np.asarray(v, dtype=np.float64))
    return np.where(mantissa == 0.5, exponent - 1, exponent).astype(np.int64)


def ceil_log2_ops(ops: Any, v: Any) -> Any:
    """Exact ceil(log2(v)) for v > 0 in keras.ops: a float log2 guess, corrected with exact powers.

    log2 is off by an ulp at powers of two on both TensorFlow and JAX (measured); 2.0**n is exact.
    """
    guess = ops.ceil(ops.log2(v))
    guess = ops.where(ops.power(2.0, guess - 1.0) >= v, guess - 1.0, guess)
    return ops.where(ops.power(2.0, guess) < v, guess + 1.0, guess)


def integer_bits_of_values(xp: Any, q: Any, f: Any, ceil_log2: Any) -> tuple[Any, Any]:
    """(k, i) of the narrowest format with f fractional bits that holds each value q exactly.

    q must already lie on the 2^-f grid. q == 0 gives k + i + f == 0, i.e. pruned.
    """
    step = xp.power(2.0, -f)
    k = xp.where(q < 0, 1.0, 0.0)
    # one ceil_log2 over the magnitude that must fit: -q for negatives, q + step for the rest
    return k, ceil_log2(xp.where(q < 0, -q, xp.maximum(q, 0.0) + step))


def integer_bits_of_range(xp: Any, q_min: Any, q_max: Any, f: Any, ceil_log2: Any) -> tuple[Any, Any]:
    """(k, i) of the narrowest format with f fractional bits holding [q_min, q_max] (on the grid)."""
    step = xp.power(2.0, -f)
    k = xp.where(q_min < 0, 1.0, 0.0)
    # ceil_log2 is monotone: the larger magnitude decides, so one call suffices
    return k, ceil_log2(xp.maximum(xp.maximum(q_max, 0.0) + step, xp.maximum(-q_min, step)))


@dataclass(frozen=True)
class FixedFormat:
    """The exact per-element format a calibrated quantizer applies (numpy int arrays)."""

    k: np.ndarray
    i: np.ndarray
    f: np.ndarray
    round_mode: str
    overflow_mode: str

    @property
    def bits(self) -> np.ndarray:
        """Width per element, 0 where pruned."""
        return np.maximum(self.k + self.i + self.f, 0)

    def quantize(self, x: Any) -> np.ndarray:
        """Apply this format with the exact numpy reference."""
        return quantize_np(x, self.k, self.i, self.f, self.round_mode, self.overflow_mode)


def round_to_step(xp: Any, x: Any, f: Any, round_mode: str = 'RND') -> Any:
    """Round x to the 2^-f grid without any overflow handling (weights: their range fits by construction)."""
    step_inv = xp.power(2.0, f)
    return _round_codes(xp, x * step_inv, check_round_mode(round_mode)) / step_inv
