"""Exact integer arithmetic on fixed-point codes: rounding shifts, overflow, division.

A fixed-point tensor is (codes, f): integer codes (int64, or Python ints in an object array when
a result could exceed 62 bits) and fractional bits f per element; value = code·2^-f. Nothing here
uses floating point, so any width is exact.
"""

from __future__ import annotations

import numpy as np

from ..quantizers.modes import check_overflow_mode, check_round_mode

INT64_SAFE_BITS = 62


def as_codes(values: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Integer codes of float64 values that lie exactly on their 2^-f grid."""
    scaled = np.ldexp(np.asarray(values, dtype=np.float64), np.asarray(f, dtype=np.int64))
    if not np.all(scaled == np.round(scaled)):
        raise ValueError('as_codes: values are not on their 2^-f grid')
    if np.any(np.abs(scaled) >= 2.0**INT64_SAFE_BITS):
        return np.vectorize(int, otypes=[object])(scaled)
    return scaled.astype(np.int64)


def widen(codes: np.ndarray, magnitude_bits: float) -> np.ndarray:
    """Codes as an object array of Python ints when |codes| may reach 2^magnitude_bits > int64's reach."""
    if codes.dtype != object and magnitude_bits > INT64_SAFE_BITS:
        return codes.astype(object)
    return codes


def max_bits(codes: np.ndarray) -> int:
    """Bits of the largest magnitude among the codes (0 for all-zero)."""
    if codes.size == 0:
        return 0
    top = max(abs(int(codes.max())), abs(int(codes.min())))
    return top.bit_length()


def shift_left(codes: np.ndarray, by: np.ndarray) -> np.ndarray:
    """codes·2^by for by >= 0 (per element), widening to Python ints if needed."""
    by = np.asarray(by, dtype=np.int64)
    if by.size and by.min() < 0:
        raise ValueError('shift_left: negative shift')
    codes = widen(codes, max_bits(codes) + (int(by.max()) if by.size else 0))
    if codes.dtype == object:
        return codes * np.vectorize(lambda s: 1 << int(s), otypes=[object])(by)
    return np.left_shift(codes, by)


def _pow2(exponent: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.dtype == object:
        return np.vectorize(lambda s: 1 << int(s), otypes=[object])(exponent)
    return np.left_shift(np.int64(1), exponent.astype(np.int64))


def round_divide(numerator: np.ndarray, divisor: np.ndarray, round_mode: str) -> np.ndarray:
    """numerator / divisor rounded to an integer with an ap_fixed rounding mode (divisor > 0)."""
    mode = check_round_mode(round_mode)
    low = numerator // divisor  # floor division: exact for ints, also for Python ints
    rem2 = 2 * (numerator - low * divisor)  # twice the remainder, compared with the divisor
    if mode == 'TRN':
        return low
    if mode == 'TRN_ZERO':
        return np.where((numerator < 0) & (rem2 != 0), low + 1, low)
    above, half = rem2 > divisor, rem2 == divisor
    if mode == 'RND':
        up = above | half
    elif mode == 'RND_MIN_INF':
        up = above
    elif mode == 'RND_ZERO':
        up = above | (half & (numerator < 0))
    elif mode == 'RND_INF':
        up = above | (half & (numerator > 0))
    else:  # RND_CONV
        up = above | (half & (low % 2 == 1))
    return np.where(up, low + 1, low)


def requantize(codes: np.ndarray, f_in: np.ndarray, k: np.ndarray, i: np.ndarray, f: np.ndarray,
               round_mode: str, overflow_mode: str) -> np.ndarray:
    """Codes at f_in to codes of format (k, i, f) with ap_fixed rounding and overflow; 0 where pruned."""
    overflow_mode = check_overflow_mode(overflow_mode)
    shape = np.broadcast_shapes(codes.shape[1:], np.shape(f_in), np.shape(f), np.shape(k), np.shape(i))
    f_in, k, i, f = (np.broadcast_to(np.asarray(a, dtype=np.int64), shape) for a in (f_in, k, i, f))
    drop = f_in - f  # > 0: drop fractional bits with rounding; <= 0: exact left shift
    widened = shift_left(codes, np.maximum(-drop, 0))
    divisor = _pow2(np.maximum(drop, 0), widened)
    out = round_divide(widened, divisor, round_mode)
    b = k + i + f
    mag = np.maximum(b - k, 0)
    out = widen(out, float(mag.max(initial=0)) + 1)
    hi = _pow2(mag, out) - 1
    lo = -k * _pow2(mag, out)
    if overflow_mode == 'WRAP':
        modulus = _pow2(np.maximum(b, 0), out)
        wrapped = out % modulus  # floor modulo: in [0, 2^b)
        wrapped = np.where((k > 0) & (wrapped > hi), wrapped - modulus, wrapped)
        out = np.where((out >= lo) & (out <= hi), out, wrapped)
    else:
        if overflow_mode == 'SAT_SYM':
            lo = -k * np.maximum(hi, 1)
        out = np.minimum(np.maximum(out, lo), hi)
    return np.where(b > 0, out, 0)
