"""The HGQ quantizer: learnable fractional bits per element, per channel or per tensor.

Forward: f_int = round(f) (straight-through), x̂ = quantize(x; k, i, f_int).
Backward: dx̂/dx = 1 (straight-through), dx̂/df = -ln2·(x̂ - x) (the HGQ surrogate).
Integer bits: weights from their own quantized values (never overflow); activations from the
min/max tracked in training (no overflow while training; the calibrated range and the overflow
mode apply at inference). With `trainable_i=True` an activation also learns an integer-bit offset
di <= 0 below that range: i = i_range + round(di), saturating in training (surrogate gradient
dx̂/ddi = ln2·x̂ where clipped), the EBOPs pulling di down. See docs/quantization.md for the formulas.
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


#: the learned integer-bit offset lives in [-DI_FLOOR, 0]: never more bits than the observed range needs
DI_FLOOR = 32.0


@keras.saving.register_keras_serializable(package='hgq')
class OffsetBounds(keras.constraints.Constraint):
    """Keeps a learned integer-bit offset in [lo, hi] after every optimizer step."""

    def __init__(self, lo: float = -DI_FLOOR, hi: float = 0.0) -> None:
        self.lo, self.hi = float(lo), float(hi)

    def __call__(self, w: Any) -> Any:
        return ops.clip(w, self.lo, self.hi)

    def get_config(self) -> dict[str, Any]:
        return {'lo': self.lo, 'hi': self.hi}


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
        trainable_i: activations only: learn an integer-bit offset di <= 0 below the tracked range
            (opt-in; starts at 0, i.e. exactly the range's integer bits, so a fresh model is not zeroed).
    """

    def __init__(self, role: str = 'activation', granularity: str = 'element', f_init: float | None = None,
                 round_mode: str = 'RND', overflow_mode: str = 'SAT', trainable_f: bool = True,
                 trainable_i: bool = False, **kwargs: Any) -> None:
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
        if trainable_i and role != 'activation':
            raise ValueError(f'{self.name}: trainable_i=True is for role=\'activation\' only (a weight\'s integer '
                             f'bits follow its values); got role={role!r}')
        if trainable_i and self.overflow_mode == 'WRAP':
            raise ValueError(f'{self.name}: trainable_i=True needs a saturating overflow_mode (SAT or SAT_SYM): '
                             'training clips values beyond the learned integer bits, and WRAP would compute a '
                             'different function at inference')
        self.trainable_i = bool(trainable_i)

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
            if self.trainable_i:
                self.di = self.add_weight(name='di', shape=param_shape, initializer='zeros', trainable=True,
                                          constraint=OffsetBounds())
        super().build(input_shape)

    # ---------------------------------------------------------------- forward
    def call(self, x: Any, training: bool | None = None) -> Any:
        f = _round_ste(ops.convert_to_tensor(self.f))
        x_const = ops.stop_gradient(x)
        if self.trainable_i and training and not self.calibrating:
            return self._train_with_i(x, x_const, f)
        if self.role == 'weight' or training or self.calibrating:
            if self.role == 'activation':
                self._track(x_const)
            q = round_to_step(ops, x_const, ops.stop_gradient(f), self.round_mode)
        else:
            q = self._inference_quantize(x_const, ops.stop_gradient(f))
        # Exact forward value q; gradients 1 to x and -ln2·(q - x) to f.
        surrogate = ops.stop_gradient(-LN2 * (q - x_const))
        return q + (x - x_const) + (f - ops.stop_gradient(f)) * surrogate

    def _di(self) -> Any:
        """round(di), clamped to [-DI_FLOOR, 0] in the forward pass, identity gradient."""
        r = _round_ste(ops.convert_to_tensor(self.di))
        return r + ops.stop_gradient(ops.clip(r, -DI_FLOOR, 0.0) - r)

    def _train_with_i(self, x: Any, x_const: Any, f: Any) -> Any:
        """Training forward with a learned integer offset: saturate to (k, i_range + di, f).

        Saturation is the training surrogate whatever the inference overflow mode: it gives di a gradient
        (d clip / d i = ln2·x̂ at either bound) and the loss a zero gradient through clipped values.
        """
        self._track(x_const)
        f_c = ops.stop_gradient(f)
        k, i_range = self._range_format(f_c)
        di = self._di()
        i = i_range + ops.stop_gradient(di)
        q = quantize_with(ops, x_const, k, i, f_c, self.round_mode, 'SAT')
        r = round_to_step(ops, x_const, f_c, self.round_mode)
        live = k + i + f_c > 0
        clipped = ops.logical_and(live, ops.not_equal(q, r))
        inside = ops.logical_and(live, ops.logical_not(clipped))
        sur_f = ops.stop_gradient(ops.where(inside, -LN2 * (r - x_const), 0.0))
        sur_i = ops.stop_gradient(ops.where(clipped, LN2 * q, 0.0))
        pass_x = ops.stop_gradient(ops.where(inside, 1.0, 0.0))
        return (q + (x - x_const) * pass_x + (f - ops.stop_gradient(f)) * sur_f
                + (di - ops.stop_gradient(di)) * sur_i)

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

    def _learned_format(self, f: Any) -> tuple[Any, Any]:
        """(k, i) applied at inference: the range's, less the learned offset when there is one."""
        k, i = self._range_format(f)
        return (k, i + ops.stop_gradient(self._di())) if self.trainable_i else (k, i)

    def _inference_quantize(self, x: Any, f: Any) -> Any:
        k, i = self._learned_format(f)
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
            k, i = self._learned_format(f_const)
            if self.trainable_i:  # the EBOPs / LUT cost pull di down through the width
                di = self._di()
                return ops.relu(ops.stop_gradient(k + i) + f + (di - ops.stop_gradient(di)))
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
            if self.trainable_i:
                i = i + np.clip(np.round(np.asarray(self.di.value, dtype=np.float64)), -DI_FLOOR, 0.0)
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
                'round_mode': self.round_mode, 'overflow_mode': self.overflow_mode, 'trainable_f': self.trainable_f,
                'trainable_i': self.trainable_i}


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
