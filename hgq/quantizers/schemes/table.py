"""A fixed level table: the exact inference function of a foreign quantizer that is not fixed point.

Why: importers meet quantizers (QKeras' power-of-two activations, for one) whose output is a monotone
step function of a fixed-point input, but not a fixed-point cast. On a known input grid such a
function is exactly an IndexedFormat (cast, thresholds, levels); this quantizer holds one, computes
it in the Keras forward pass with a gather (exact for any float32 level, unlike a sum of steps) and
describes it for export. Nothing is trained and nothing is calibrated: the table is the function.
Not a training scheme (not in the registry); it is Keras-serializable so imported models save and load.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from ..base import Quantizer
from ..fixed_point import FixedFormat, quantize_with
from ..indexed import IndexedFormat, indexed_format


@keras.saving.register_keras_serializable(package='hgq')
class TableQuantizer(Quantizer):
    """levels[#(cast(x) >= thresholds)] with a fixed (k, i, f) input cast; per tensor, not trainable."""

    def __init__(self, thresholds: Any = (), levels: Any = (0.0,), k: int = 1, i: int = 8, f: int = 0,
                 round_mode: str = 'TRN', overflow_mode: str = 'WRAP', index_bits: int | None = None,
                 role: str = 'activation', **kwargs: Any) -> None:
        super().__init__(role=role, **kwargs)
        one = np.ones((), dtype=np.int64)
        self.k, self.i, self.f = int(k), int(i), int(f)
        self.round_mode, self.overflow_mode = round_mode, overflow_mode
        lv = np.asarray(levels, dtype=np.float64).ravel()
        n_bits = max(1, int(np.ceil(np.log2(max(len(lv), 2))))) if index_bits is None else int(index_bits)
        cast = FixedFormat(one * self.k, one * self.i, one * self.f, round_mode, overflow_mode)
        self._desc = indexed_format(cast, np.asarray(thresholds, dtype=np.float64).ravel(), lv, n_bits,
                                    owner=self.name)
        top = float(np.max(np.abs(lv))) if lv.size else 0.0
        if np.any(lv != lv.astype(np.float32)) or top >= 2.0**128:
            raise ValueError(f'{self.name}: every level must be a float32 number (the Keras forward is float32)')

    def call(self, x: Any, training: bool | None = None) -> Any:
        xc = ops.stop_gradient(x)
        q = quantize_with(ops, xc, float(self.k), float(self.i), float(self.f), self.round_mode, self.overflow_mode)
        t = ops.convert_to_tensor(self._desc.thresholds.astype(np.float32))
        idx = ops.sum(ops.cast(ops.greater_equal(ops.expand_dims(q, -1), t), 'int32'), axis=-1)
        y = ops.take(ops.convert_to_tensor(self._desc.levels.astype(np.float32)), idx)
        return ops.cast(y, x.dtype) + (x - xc)

    def bits(self, x: Any = None) -> Any:
        lf = self._desc.level_format()
        w = float(np.max(lf.k + lf.i + lf.f))
        return ops.broadcast_to(ops.convert_to_tensor(w), tuple(x.shape)) if x is not None else \
            ops.convert_to_tensor(w)

    def describe(self, values: np.ndarray | None = None) -> IndexedFormat:
        return self._desc

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'thresholds': self._desc.thresholds.tolist(),
                'levels': self._desc.levels.tolist(), 'k': self.k, 'i': self.i, 'f': self.f,
                'round_mode': self.round_mode, 'overflow_mode': self.overflow_mode,
                'index_bits': self._desc.index_bits}
