"""Exact μ-law tables (numpy, float64): decision thresholds and snapped levels of a b-bit μ-law quantizer.

The building block of the planned `mulaw` scheme (docs/quantizers.md, "μ-law"): describe() will hand
these to indexed_format, and the Keras inference call will evaluate them with indexed_quantize_with.
"""

from __future__ import annotations

import numpy as np


def mulaw_tables(a: float, mu: float, bits: int, level_f: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds (2L, input domain) and levels (2L+1, on a 2^-level_f grid) for L = 2^(bits-1) - 1.

    Level j in [-L, L] is sign(j)·A/μ·((1+μ)^(|j|/L) − 1); the threshold between levels j-1 and j is
    the expansion of the companded midpoint (j − ½)/L, i.e. where round-half-up of y·L changes.
    """
    if bits < 2 or not (a > 0 and mu > 0) or not 0 <= level_f <= 31:
        raise ValueError(f'mulaw: need bits >= 2, A > 0, μ > 0 and 0 <= level_f <= 31; got '
                         f'bits={bits}, A={a}, μ={mu}, level_f={level_f}')
    n = 2 ** (bits - 1) - 1
    j = np.arange(-n, n + 1, dtype=np.float64)
    levels = np.sign(j) * a / mu * np.expm1(np.abs(j) / n * np.log1p(mu))
    levels = np.round(np.ldexp(levels, level_f)) * 2.0 ** -level_f
    mid = j[1:] - 0.5
    thresholds = np.sign(mid) * a / mu * np.expm1(np.abs(mid) / n * np.log1p(mu))
    return thresholds, levels


def mulaw_index_reference(x: np.ndarray, a: float, mu: float, bits: int) -> np.ndarray:
    """Level index in [0, 2L] of the float64 formula (round half away from zero of y·L, clipped at ±A)."""
    n = 2 ** (bits - 1) - 1
    y = np.sign(x) * np.log1p(mu * np.minimum(np.abs(x), a) / a) / np.log1p(mu)
    return (np.sign(y) * np.floor(np.abs(y) * n + 0.5)).astype(np.int64) + n
