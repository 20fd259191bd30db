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
THRESHOLDS = (-0.375, 0.25)  # not midpoints of 0 and 0.5: the encode must use exactly these
CAST = (1, 3, 3, 'RND', 'SAT')  # k, i, f, round, overflow of the input cast


@keras.saving.register_keras_serializable(package='hgq_tests')
class CodebookQuantizer(Quantizer):
    """y = LEVELS[#(cast(x) >= THRESHOLDS)], gradient straight through; the same in every slot."""

    def __init__(self, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)  # levels and thresholds × scale (a power of two keeps them exact)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(THRESHOLDS) * self.scale, np.asarray(LEVELS) * self.scale

    def call(self, x: Any, training: bool | None = None) -> Any:
        k, i, f, rnd, ovf = CAST
        xc = ops.stop_gradient(x)
        q = quantize_with(ops, xc, float(k), float(i), float(f), rnd, ovf)
        t, lv = (ops.convert_to_tensor(a, dtype=x.dtype) for a in self._arrays())
        y = indexed_quantize_with(ops, q, t, lv)
        return y + (x - xc)

    def bits(self, x: Any = None) -> Any:
        return ops.convert_to_tensor(2.0)

    def describe(self, values: np.ndarray | None = None) -> IndexedFormat:
        k, i, f, rnd, ovf = CAST
        one = np.ones((), dtype=np.int64)
        t, lv = self._arrays()
        return indexed_format(FixedFormat(one * k, one * i, one * f, rnd, ovf), t, lv, 2, owner=self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'scale': self.scale}
