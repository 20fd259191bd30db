"""A toy quantizer written only against the protocol: a 3-level codebook (the contract test's subject).

It imports nothing from hgq but the public quantizer vocabulary, so if the whole flow (IR,
emulator, hls4ml, RTL) computes it exactly, a new scheme needs no edit below the layers.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from hgq.quantizers import FixedFormat, IndexedFormat, indexed_format, indexed_quantize_with, quantize_with
from hgq.quantizers.base import Quantizer

LEVELS = (-0.75, 0.0, 0.5)
THRESHOLDS = (-0.5, 0.125)  # not the midpoints (-0.375, 0.25): the encode must use exactly these
CAST = (1, 3, 3, 'RND', 'SAT')  # k, i, f, round, overflow of the input cast: 128 codes (RTL: one ROM)
WIDE_CAST = (1, 5, 4, 'TRN', 'WRAP')  # 1024 codes: the RTL compares against each threshold instead


@keras.saving.register_keras_serializable(package='hgq_tests')
class CodebookQuantizer(Quantizer):
    """y = LEVELS[#(cast(x) >= THRESHOLDS)], gradient straight through; the same in every slot."""

    def __init__(self, scale: float = 1.0, wide: bool = False, per_channel: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)  # levels and thresholds × scale (a power of two keeps them exact)
        self.wide = bool(wide)
        self.per_channel = bool(per_channel)  # channel c's set is scaled by 2^(c mod 3)

    @property
    def cast(self) -> tuple:
        return WIDE_CAST if self.wide else CAST

    def build(self, input_shape: tuple) -> None:
        self.channels = int(input_shape[-1])
        super().build(input_shape)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        scale = np.full((1,), self.scale)
        if self.per_channel:
            scale = self.scale * 2.0 ** (np.arange(self.channels) % 3)
        return np.outer(scale, THRESHOLDS), np.outer(scale, LEVELS)

    def call(self, x: Any, training: bool | None = None) -> Any:
        k, i, f, rnd, ovf = self.cast
        xc = ops.stop_gradient(x)
        q = quantize_with(ops, xc, float(k), float(i), float(f), rnd, ovf)
        t, lv = (ops.convert_to_tensor(a, dtype=x.dtype) for a in self._arrays())
        y = indexed_quantize_with(ops, q, t, lv)
        return y + (x - xc)

    def bits(self, x: Any = None) -> Any:
        return ops.convert_to_tensor(2.0)

    def describe(self, values: np.ndarray | None = None) -> IndexedFormat:
        k, i, f, rnd, ovf = self.cast
        one = np.ones((), dtype=np.int64)
        t, lv = self._arrays()
        return indexed_format(FixedFormat(one * k, one * i, one * f, rnd, ovf), t, lv, 2, owner=self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'scale': self.scale, 'wide': self.wide, 'per_channel': self.per_channel}
