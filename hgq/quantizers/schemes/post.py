"""POST weights (Zhou et al. 2025, arXiv 2504.17263): levels {0, ±α·r^-k}, r = √2 (or 2), α per output channel.

Why a symmetric set of 2^b - 1 levels: 0 plus m = 2^(b-1) - 1 magnitudes on each side fits a b-bit
index exactly (the authors' code uses 2^b + 1 levels, one bit too many); dropping the one spare code
keeps the set symmetric. Levels and α are snapped to the grid 2^-level_frac_bits in the forward pass
(training sees the values the hardware stores); "nearest" uses linear-domain midpoints between
adjacent snapped levels, on the input grid 2^-(level_frac_bits+1) where they are exact; a value on a
midpoint goes to the larger level (encode compares q >= t). docs/quantizers.md "## POST".
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from ..base import Quantizer
from ..fixed_point import FixedFormat, quantize_with
from ..indexed import IndexedFormat, indexed_format, indexed_quantize_with
from ..registry import register_scheme

BASES = {'sqrt2': float(np.sqrt(2.0)), 'pow2': 2.0}
INPUT_INTEGER_BITS = 16  # weights are constants: the cast never saturates a trained weight


@keras.saving.register_keras_serializable(package='hgq')
class POSTQuantizer(Quantizer):
    """Nearest of {0, ±α_c·r^-k, k < 2^(b-1)-1} with α_c per output channel (last axis), straight-through."""

    def __init__(self, bits: int = 4, base: str = 'sqrt2', level_frac_bits: int = 8, trainable_alpha: bool = True,
                 percentile: float = 99.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = self.name
        if self.role != 'weight':
            raise ValueError(f'{owner}: scheme "post" quantizes weights only (role={self.role!r}); use it for '
                             'kernel/bias arguments, or pick "pwlq"/"augq"/HGQ for activation slots')
        if isinstance(bits, bool) or int(bits) != bits or not 2 <= int(bits) <= 8:
            raise ValueError(f'{owner}: bits={bits!r} must be an integer in [2, 8] (levels 0, ±α·r^-k need a sign '
                             'and at least one magnitude)')
        if base not in BASES:
            raise ValueError(f'{owner}: base={base!r} is not valid; use one of {sorted(BASES)}')
        if int(level_frac_bits) != level_frac_bits or not 0 <= level_frac_bits <= 20:
            raise ValueError(f'{owner}: level_frac_bits={level_frac_bits!r} must be an integer in [0, 20]')
        if not 0 < percentile <= 100:
            raise ValueError(f'{owner}: percentile={percentile!r} must be in (0, 100]')
        self.n_bits, self.base, self.level_frac_bits = int(bits), base, int(level_frac_bits)
        self.trainable_alpha, self.percentile = bool(trainable_alpha), float(percentile)
        self._initialized = False

    @property
    def n_magnitudes(self) -> int:
        return 2 ** (self.n_bits - 1) - 1

    def build(self, input_shape: tuple) -> None:
        channels = (int(input_shape[-1]),) if len(input_shape) else ()
        self.alpha = self.add_weight(name='alpha', shape=channels, initializer='ones', trainable=self.trainable_alpha)
        self.alpha_set = self.add_weight(name='alpha_set', shape=(), initializer='zeros', trainable=False)
        super().build(input_shape)

    def _coefficients(self) -> np.ndarray:
        """Level / α per code, ascending: -r^0 .. -r^-(m-1), 0, r^-(m-1) .. r^0."""
        mags = BASES[self.base] ** -np.arange(self.n_magnitudes, dtype=np.float64)
        return np.concatenate([-mags, [0.0], mags[::-1]])

    def _init_alpha(self, x: Any) -> None:
        """α = the `percentile` of |w| per output channel, set once from the first weights seen.

        Written with keras.ops and a where() on `alpha_set`, so it also works inside a traced
        training step; after the first call it keeps α (and its training) unchanged.
        """
        if self._initialized:
            return
        w = ops.abs(ops.convert_to_tensor(x, dtype='float32'))
        w = ops.reshape(w, (-1, w.shape[-1])) if len(w.shape) else ops.reshape(w, (1, 1))
        a0 = ops.reshape(ops.quantile(w, self.percentile / 100.0, axis=0), self.alpha.shape)
        a0 = ops.maximum(a0, 2.0 ** -self.level_frac_bits)
        self.alpha.assign(ops.where(self.alpha_set.value > 0, self.alpha.value, a0))
        self.alpha_set.assign(ops.ones(self.alpha_set.shape))
        try:
            self._initialized = bool(float(ops.convert_to_numpy(self.alpha_set)) > 0)
        except Exception:  # traced: the graph keeps the where() guard
            pass

    def _levels(self, xp: Any, alpha: Any) -> Any:
        """Snapped levels (*channels, n), ascending for α >= 0 (callers pass |α|); keras.ops: straight-through to α."""
        scale = 2.0 ** self.level_frac_bits
        c = self._coefficients()
        if xp is np:
            return np.round(np.asarray(alpha, dtype=np.float64)[..., None] * c * scale) / scale
        a = ops.expand_dims(alpha, -1) * ops.convert_to_tensor(c.astype(np.float32))
        return a + ops.stop_gradient(ops.round(a * scale) / scale - a)

    @staticmethod
    def _thresholds(xp: Any, levels: Any) -> Any:
        return (levels[..., 1:] + levels[..., :-1]) / 2.0  # exact on the input grid (one more fractional bit)

    def _cast(self) -> tuple[float, float, float, str, str]:
        return 1.0, float(INPUT_INTEGER_BITS), float(self.level_frac_bits + 1), 'RND', 'SAT'

    def call(self, x: Any, training: bool | None = None) -> Any:
        self._init_alpha(x)
        k, i, f, rnd, ovf = self._cast()
        xc = ops.stop_gradient(x)
        q = quantize_with(ops, xc, k, i, f, rnd, ovf)
        levels = ops.cast(self._levels(ops, ops.abs(self.alpha)), x.dtype)
        t = ops.stop_gradient(self._thresholds(ops, levels))
        y = indexed_quantize_with(ops, q, t, levels)
        return y + (x - xc)

    def bits(self, x: Any = None) -> Any:
        """Width of the stored (decoded) level: sign + bits of the largest level code on the grid 2^-F.

        Per output channel, 1 + ceil(log2(round(α·2^F) + 1)): the two's-complement width of the
        channel's levels on their grid, an upper bound of `describe().level_format()` (which also
        drops trailing zero fraction bits). Graph-safe; no gradient (the width is not trained).
        """
        code = ops.round(ops.stop_gradient(ops.abs(self.alpha)) * 2.0 ** self.level_frac_bits)
        w = 1.0 + ops.ceil(ops.log2(code + 1.0))
        return ops.broadcast_to(w, tuple(x.shape)) if x is not None else w

    def _description(self) -> IndexedFormat:
        levels = self._levels(np, np.abs(ops.convert_to_numpy(self.alpha)))
        k, i, f, rnd, ovf = self._cast()
        one = np.ones(np.shape(levels)[:-1], dtype=np.int64)
        fmt = FixedFormat(one * int(k), one * int(i), one * int(f), rnd, ovf)
        return indexed_format(fmt, self._thresholds(np, levels), levels, self.n_bits, owner=self.name)

    def describe(self, values: np.ndarray | None = None) -> IndexedFormat:
        if values is not None:
            if not self.built:
                self.build(tuple(np.shape(values)))
            self._init_alpha(values)
        return self._description()

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'bits': self.n_bits, 'base': self.base,
                'level_frac_bits': self.level_frac_bits, 'trainable_alpha': self.trainable_alpha,
                'percentile': self.percentile}


register_scheme('post', POSTQuantizer)
