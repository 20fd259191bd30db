"""The HGQ quantizer: learnable fractional bits per element, per channel or per tensor.

Forward: f_int = round(f) (straight-through), x̂ = quantize(x; k, i, f_int).
Backward: dx̂/dx = 1 (straight-through), dx̂/df = -ln2·(x̂ - x) (the HGQ surrogate).
Integer bits: weights from their own quantized values (never overflow); activations from the
min/max tracked in training (no overflow while training; the calibrated range and the overflow
mode apply at inference). See docs/quantization.md for the exact formulas.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from .base import Quantizer
from .fixed_point import (
    FixedFormat,
    ceil_log2_np,
    ceil_log2_ops,
    integer_bits_of_range,
    integer_bits_of_values,
    quantize_with,
    round_to_step,
)
from .modes import check_overflow_mode, check_round_mode
from .registry import register_scheme

GRANULARITIES = ('element', 'channel', 'tensor')
LN2 = math.log(2.0)

# Defaults chosen so that a fresh layer is not zeroed: Glorot-uniform weights of a 4096-input
# Dense lie within ±0.037, and a 2^-8 step keeps > 90% of them non-zero
# (tests/test_layers.py::test_default_qdense_weights_survive_quantization).
DEFAULT_WEIGHT_F = 8.0
DEFAULT_ACTIVATION_F = 6.0


def _ceil_log2(v: Any) -> Any:
    return ceil_log2_ops(ops, v)


def _round_ste(v: Any) -> Any:
    """round(v) in the forward pass, identity gradient."""
    return v + ops.stop_gradient(ops.round(v) - v)


@keras.saving.register_keras_serializable(package='hgq')
class HGQQuantizer(Quantizer):
    """Trainable fixed-point quantizer with learnable fractional bits.

    Args:
        role: 'weight' or 'activation'.
        granularity: 'element' (one f per element), 'channel' (per last axis) or 'tensor'.
        f_init: initial fractional bits (float, rounded in the forward pass).
        round_mode: ap_fixed rounding mode used for the values.
        overflow_mode: ap_fixed overflow mode applied at inference (activations only).
        trainable_f: learn f (True) or keep it fixed.
    """

    def __init__(self, role: str = 'activation', granularity: str = 'element', f_init: float | None = None,
                 round_mode: str = 'RND', overflow_mode: str = 'SAT', trainable_f: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(role=role, **kwargs)
        if granularity not in GRANULARITIES:
            raise ValueError(f'{self.name}: granularity={granularity!r} is not valid; use one of {GRANULARITIES}')
        if f_init is None:
            f_init = DEFAULT_WEIGHT_F if role == 'weight' else DEFAULT_ACTIVATION_F
        if not math.isfinite(float(f_init)) or abs(float(f_init)) > 64:
            raise ValueError(f'{self.name}: f_init={f_init!r} must be a finite number of fractional bits in [-64, 64]')
        self.granularity = granularity
        self.f_init = float(f_init)
        self.round_mode = check_round_mode(round_mode)
        self.overflow_mode = check_overflow_mode(overflow_mode)
        self.trainable_f = bool(trainable_f)

    # ---------------------------------------------------------------- building
    def _parameter_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.granularity == 'element':
            return tuple(shape)
        if self.granularity == 'channel':
            return (1,) * (len(shape) - 1) + (shape[-1],)
        return (1,) * len(shape)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        shape = tuple(input_shape)
        if self.role == 'activation':
            shape = shape[1:]  # no batch axis in the parameters
        if any(d is None for d in shape):
            raise ValueError(f'{self.name}: every axis but the batch must have a known size, got {input_shape}')
        param_shape = self._parameter_shape(shape)
        self.f = self.add_weight(name='f', shape=param_shape, initializer=keras.initializers.Constant(self.f_init),
                                 trainable=self.trainable_f)
        if self.role == 'activation':
            self._reduce_axes = tuple(a for a in range(len(shape) + 1) if a == 0 or param_shape[a - 1] == 1)
            self.range_min = self.add_weight(name='range_min', shape=param_shape, trainable=False,
                                             initializer=keras.initializers.Constant(np.inf))
            self.range_max = self.add_weight(name='range_max', shape=param_shape, trainable=False,
                                             initializer=keras.initializers.Constant(-np.inf))
        super().build(input_shape)

    # ---------------------------------------------------------------- forward
    def call(self, x: Any, training: bool | None = None) -> Any:
        f = _round_ste(ops.convert_to_tensor(self.f))
        x_const = ops.stop_gradient(x)
        if self.role == 'weight' or training or self.calibrating:
            if self.role == 'activation':
                self._track(x_const)
            q = round_to_step(ops, x_const, ops.stop_gradient(f), self.round_mode)
        else:
            q = self._inference_quantize(x_const, ops.stop_gradient(f))
        # Exact forward value q; gradients 1 to x and -ln2·(q - x) to f.
        surrogate = ops.stop_gradient(-LN2 * (q - x_const))
        return q + (x - x_const) + (f - ops.stop_gradient(f)) * surrogate

    def _track(self, x: Any) -> None:
        batch_min = ops.min(x, axis=self._reduce_axes, keepdims=True)[0]
        batch_max = ops.max(x, axis=self._reduce_axes, keepdims=True)[0]
        self.range_min.assign(ops.minimum(self.range_min, batch_min))
        self.range_max.assign(ops.maximum(self.range_max, batch_max))

    def _range(self) -> tuple[Any, Any, Any]:
        """Tracked (min, max) as tensors, and where a range was observed at all."""
        lo, hi = ops.convert_to_tensor(self.range_min), ops.convert_to_tensor(self.range_max)
        seen = lo <= hi
        return ops.where(seen, lo, 0.0), ops.where(seen, hi, 0.0), seen

    def _range_format(self, f: Any) -> tuple[Any, Any]:
        lo, hi, _ = self._range()
        q_min = round_to_step(ops, lo, f, self.round_mode)
        q_max = round_to_step(ops, hi, f, self.round_mode)
        return integer_bits_of_range(ops, q_min, q_max, f, _ceil_log2)

    def _inference_quantize(self, x: Any, f: Any) -> Any:
        k, i = self._range_format(f)
        quantized = quantize_with(ops, x, k, i, f, self.round_mode, self.overflow_mode)
        # A range never seen (no training, no calibration) must not silently zero the layer.
        _, _, seen = self._range()
        return ops.where(seen, quantized, round_to_step(ops, x, f, self.round_mode))

    # ---------------------------------------------------------------- cost
    def bits(self, x: Any = None) -> Any:
        f = _round_ste(ops.convert_to_tensor(self.f))
        f_const = ops.stop_gradient(f)
        if self.role == 'weight':
            if x is None:
                raise ValueError(f'{self.name}: a weight quantizer needs the weight values to report its bits')
            q = round_to_step(ops, ops.stop_gradient(x), f_const, self.round_mode)
            k, i = integer_bits_of_values(ops, q, f_const, _ceil_log2)
        else:
            k, i = self._range_format(f_const)
        return ops.relu(ops.stop_gradient(k + i) + f)

    # ---------------------------------------------------------------- export
    def fixed_format(self, values: np.ndarray | None = None) -> FixedFormat:
        f = np.round(np.asarray(self.f.value, dtype=np.float64))
        if self.role == 'weight':
            if values is None:
                raise ValueError(f'{self.name}: the format of a weight quantizer depends on the weight values')
            values = np.asarray(values, dtype=np.float64)
            f = np.broadcast_to(f, values.shape)
            q = round_to_step(np, values, f, self.round_mode)
            k, i = integer_bits_of_values(np, q, f, ceil_log2_np)
            overflow = 'WRAP'
        else:
            lo = np.asarray(self.range_min.value, dtype=np.float64)
            hi = np.asarray(self.range_max.value, dtype=np.float64)
            if np.any(lo > hi):
                raise ValueError(f'{self.name}: activation range never observed; run hgq.training.calibrate(model, x) '
                                 'on representative data before export')
            q_min = round_to_step(np, lo, f, self.round_mode)
            q_max = round_to_step(np, hi, f, self.round_mode)
            k, i = integer_bits_of_range(np, q_min, q_max, f, ceil_log2_np)
            overflow = self.overflow_mode
        k, i, f = (np.asarray(a).astype(np.int64) for a in (k, i, f))
        return FixedFormat(k, i, f, self.round_mode, overflow)

    def describe(self, values: np.ndarray | None = None) -> FixedFormat:
        return self.fixed_format(values)

    def calibration_variables(self) -> list[keras.Variable]:
        return [self.range_min, self.range_max] if self.role == 'activation' and self.built else []

    def unobserved(self) -> bool:
        if self.role != 'activation' or not self.built:
            return False
        lo, hi = (keras.ops.convert_to_numpy(v) for v in (self.range_min, self.range_max))
        return bool(np.any(lo > hi))

    def reset_range(self) -> None:
        if self.role == 'activation' and self.built:
            self.range_min.assign(ops.full(self.range_min.shape, np.inf))
            self.range_max.assign(ops.full(self.range_max.shape, -np.inf))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'granularity': self.granularity, 'f_init': self.f_init,
                'round_mode': self.round_mode, 'overflow_mode': self.overflow_mode, 'trainable_f': self.trainable_f}


@keras.saving.register_keras_serializable(package='hgq')
class FixedQuantizer(Quantizer):
    """A fixed, non-trainable format (k, i, f), e.g. the known format of a detector's input words."""

    def __init__(self, k: int = 1, i: int = 7, f: int = 8, round_mode: str = 'TRN', overflow_mode: str = 'WRAP',
                 role: str = 'activation', **kwargs: Any) -> None:
        super().__init__(role=role, **kwargs)
        for name, v in (('k', k), ('i', i), ('f', f)):
            if int(v) != v:
                raise ValueError(f'{self.name}: {name}={v!r} must be an integer')
        if k not in (0, 1):
            raise ValueError(f'{self.name}: k={k!r} (sign bit) must be 0 or 1')
        if k + i + f < 1:
            raise ValueError(f'{self.name}: width k+i+f = {k + i + f} is impossible; '
                             'a fixed format needs at least 1 bit')
        self.k, self.i, self.f = int(k), int(i), int(f)
        self.round_mode = check_round_mode(round_mode)
        self.overflow_mode = check_overflow_mode(overflow_mode)

    def call(self, x: Any, training: bool | None = None) -> Any:
        q = quantize_with(ops, ops.stop_gradient(x), float(self.k), float(self.i), float(self.f),
                          self.round_mode, self.overflow_mode)
        return q + (x - ops.stop_gradient(x))

    def bits(self, x: Any = None) -> Any:
        return ops.convert_to_tensor(float(self.k + self.i + self.f))

    def fixed_format(self, values: np.ndarray | None = None) -> FixedFormat:
        one = np.ones((), dtype=np.int64)
        return FixedFormat(one * self.k, one * self.i, one * self.f, self.round_mode, self.overflow_mode)

    def describe(self, values: np.ndarray | None = None) -> FixedFormat:
        return self.fixed_format(values)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'k': self.k, 'i': self.i, 'f': self.f,
                'round_mode': self.round_mode, 'overflow_mode': self.overflow_mode}


register_scheme('hgq', HGQQuantizer)
register_scheme('fixed', FixedQuantizer)
