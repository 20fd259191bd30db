"""A step that depends on the sample: the third kind of exact description a quantizer can give.

ASQ (docs/quantizers.md, "## ASQ") quantizes x with the step s·β, where β is computed by a small
adapter network from the same sample. Its exact function, per sample::

    beta = cast(adapter(x))                          # a fixed-point cast (`beta_format`)
    code = offset + #{j : x >= coefficients[j]·beta}  # exact comparisons with per-sample thresholds
    y    = code · beta · step                        # a product of variables, then a power of two

Why comparisons and not a division: x / (s·β) is not exact in any finite arithmetic, but
round(x/(s·β)) >= j  <=>  x >= (j - 1/2)·s·β for β > 0 (RND rounds ties up), so the coefficients
(j - 1/2 + offset)·s are exact dyadic constants and the thresholds are exact products. When the cast
gives β = 0, y = 0 for every x (code·0). `adaptive_quantize_with` is the one forward value, for
numpy (the reference) and keras.ops (training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .fixed_point import FixedFormat


@dataclass(frozen=True)
class AdaptiveStepFormat:
    """Per-sample step: adapter layers (the last one casts β to `beta_format`) -> thresholds coefficients·β
    -> code·2^step_exponent·β.

    `adapter` holds the Keras layers (with their own quantizers) in call order, each with its input
    and output shape (no batch axis); the IR traces them like any other layer, and the last one's
    output (shape (1,)) is β. `coefficients` (j - 1/2 + offset)·2^e ascend (n = 2^bits - 1 of them);
    codes run from `offset` to `offset + n`.
    """

    adapter: tuple[tuple[Any, tuple[int, ...], tuple[int, ...]], ...]
    beta_format: FixedFormat
    coefficients: np.ndarray
    offset: int
    step_exponent: int

    @property
    def step(self) -> float:
        return float(2.0**self.step_exponent)

    @property
    def code_range(self) -> tuple[int, int]:
        return self.offset, self.offset + len(self.coefficients)


def step_coefficients(bits: int, signed: bool, step_exponent: int) -> tuple[np.ndarray, int]:
    """(coefficients (j - 1/2 + offset)·2^e for j = 1..2^b - 1, offset): the RND decision points of the codes."""
    n = 2**bits - 1
    offset = -(2 ** (bits - 1)) if signed else 0
    j = np.arange(1, n + 1, dtype=np.float64)
    return np.ldexp(j - 0.5 + offset, step_exponent), offset


def adaptive_quantize_with(xp: Any, x: Any, beta: Any, coefficients: Any, offset: int, step: float) -> Any:
    """code·β·step with code = offset + #{j : x >= c_j·β}; x (batch, ...), β (batch, 1) or broadcastable.

    Exact in float32 while x, c_j·β and code·β·step are float32-exact (narrow formats; the IR's float32
    check says when they are not).
    """
    rank = len(tuple(x.shape))
    b = xp.reshape(beta, (-1,) + (1,) * (rank - 1))
    thresholds = b[..., None] * coefficients  # (batch, 1.., n)
    hits = xp.cast(x[..., None] >= thresholds, x.dtype) if xp is not np else (x[..., None] >= thresholds)
    code = offset + xp.sum(hits, axis=-1)
    if xp is np:
        code = code.astype(np.float64)
    return code * b * step
