"""LSQ: learned step size quantization (Esser et al. 2020, arXiv 1902.08153), exportable exactly.

    x̂ = s · round(clip(x / s, -Q_N, Q_P))

with a learned step s (gradient scaled by 1/√(N·Q_P)). For export the forward pass snaps s to a
power of two, 2^round(log2 s) (straight-through for s), so x̂ is exactly the fixed-point cast
ap_fixed<b, b - k - f> with SAT, f = -round(log2 s) and `describe()` returns that FixedFormat.
Because the forward value is computed by the same `quantize_with` as the numpy reference, Keras
inference == the emulator bit for bit. See docs/quantizers.md "## LSQ" for every choice.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from ..base import Quantizer
from ..fixed_point import FixedFormat, quantize_with
from ..modes import check_round_mode
from ..registry import register_scheme

MAX_BITS = 24  # float32 significand: codes beyond it are not exact in training


def _grad_scale(x: Any, g: Any) -> Any:
    """Value x, gradient g·dL/dx (LSQ's step-size gradient scale)."""
    return ops.stop_gradient(x - x * g) + x * g


@keras.saving.register_keras_serializable(package='hgq')
class LSQQuantizer(Quantizer):
    """One learned power-of-two step per tensor, b bits, signed or unsigned, saturating.

    Args:
        bits: word width b >= 1 (signed needs b >= 2).
        signed: True (default, Q_N = 2^(b-1), Q_P = 2^(b-1) - 1); False for activations after a ReLU
            (Q_N = 0, Q_P = 2^b - 1).
        round_mode: ap_fixed rounding of the codes; 'RND' (ties up) by default, which every backend
            exports; 'RND_CONV' (ties to even, torch.round in the paper) has no da4ml RTL operation.
        scale_init: a fixed initial step; None derives it from data (2·mean|x|/√Q_P).
    """

    def __init__(self, role: str = 'activation', bits: int = 4, signed: bool | None = None,
                 round_mode: str = 'RND', scale_init: float | None = None, **kwargs: Any) -> None:
        super().__init__(role=role, **kwargs)
        if isinstance(bits, bool) or int(bits) != bits or not 1 <= int(bits) <= MAX_BITS:
            raise ValueError(f'{self.name}: bits={bits!r} must be an integer in [1, {MAX_BITS}]')
        self.signed = True if signed is None else bool(signed)
        if self.signed and int(bits) < 2:
            raise ValueError(f'{self.name}: bits={bits!r} with signed=True leaves no magnitude bit; '
                             'use bits >= 2 or signed=False')
        if scale_init is not None and not (math.isfinite(float(scale_init)) and float(scale_init) > 0):
            raise ValueError(f'{self.name}: scale_init={scale_init!r} must be a positive finite number or None')
        self.n_bits = int(bits)
        self.round_mode = check_round_mode(round_mode, f'{self.name}: round_mode')
        self.scale_init = None if scale_init is None else float(scale_init)

    @property
    def q_n(self) -> float:
        return float(2 ** (self.n_bits - 1)) if self.signed else 0.0

    @property
    def q_p(self) -> float:
        return float(2 ** (self.n_bits - 1) - 1) if self.signed else float(2 ** self.n_bits - 1)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        shape = tuple(input_shape)[1:] if self.role == 'activation' else tuple(input_shape)
        if any(d is None for d in shape):
            raise ValueError(f'{self.name}: every axis but the batch must have a known size, got {input_shape}')
        self._shape = shape
        self._n = float(max(int(np.prod(shape)), 1))  # N of the gradient scale: elements per sample
        self.scale = self.add_weight(name='scale', shape=(), trainable=True,
                                     initializer=keras.initializers.Constant(self.scale_init or 1.0))
        # 1 once s holds a derived (or given) value; 0 until the first data initializes it
        self.initialized = self.add_weight(name='initialized', shape=(), trainable=False,
                                           initializer=keras.initializers.Constant(
                                               0.0 if self.scale_init is None else 1.0))
        if self.role == 'activation':
            self.abs_sum = self.add_weight(name='abs_sum', shape=(), trainable=False, initializer='zeros')
            self.count = self.add_weight(name='count', shape=(), trainable=False, initializer='zeros')
        super().build(input_shape)

    def _init_value(self, x: Any) -> Any:
        # all-zero data (a fresh bias) would give s ~ 0 and no gradient ever: cover [-1, 1] instead
        mean_abs = ops.mean(ops.abs(x))
        return ops.where(mean_abs > 0, 2.0 * mean_abs / math.sqrt(self.q_p), 1.0 / self.q_p)

    def _format(self, exponent: Any) -> tuple[float, Any, Any]:
        """(k, i, f) of ap_fixed<b, ...> for step 2^exponent."""
        k = 1.0 if self.signed else 0.0
        f = -exponent
        return k, self.n_bits - k - f, f

    def call(self, x: Any, training: bool | None = None) -> Any:
        xc = ops.stop_gradient(x)
        s = ops.convert_to_tensor(self.scale)
        if self.role == 'activation' and self.calibrating:
            self.abs_sum.assign(self.abs_sum + ops.sum(ops.abs(xc)))
            self.count.assign(self.count + ops.cast(ops.size(xc), 'float32'))
        elif self.role == 'weight' or training:
            # first data seen derives s (LSQ init); afterwards s is the trained variable
            fresh = ops.equal(self.initialized, 0.0)
            s_new = ops.where(fresh, self._init_value(xc), s)
            self.scale.assign(s_new)
            self.initialized.assign(ops.ones(self.initialized.shape))
            s = s + ops.stop_gradient(s_new - s)
        s = ops.abs(s) + 1e-12
        g = 1.0 / math.sqrt(self._n * self.q_p)
        s_g = _grad_scale(s, g)
        exponent = ops.round(ops.log2(ops.stop_gradient(s)))
        s_pow = s_g + ops.stop_gradient(ops.power(2.0, exponent) - s_g)  # forward 2^e, gradient to s
        # LSQ's surrogate (its gradients to x and s); the forward value below replaces its value exactly
        v = ops.clip(x / s_pow, -self.q_n, self.q_p)
        surrogate = (v + ops.stop_gradient(ops.round(v) - v)) * s_pow
        k, i, f = self._format(exponent)
        q = quantize_with(ops, xc, k, i, f, self.round_mode, 'SAT')
        return ops.stop_gradient(q) + surrogate - ops.stop_gradient(surrogate)

    def bits(self, x: Any = None) -> Any:
        # per element, like every quantizer (the layers multiply it with the other operand's bits)
        return ops.full(self._shape, float(self.n_bits))

    def _exponent_np(self) -> int:
        s = abs(float(keras.ops.convert_to_numpy(self.scale))) + 1e-12
        return int(np.round(np.log2(np.float32(s))))

    def describe(self, values: np.ndarray | None = None) -> FixedFormat:
        if not self.built:
            raise ValueError(f'{self.name}: not built; call the model once before export')
        k, i, f = self._format(self._exponent_np())
        one = np.ones((), dtype=np.int64)
        return FixedFormat(one * int(k), one * int(i), one * int(f), self.round_mode, 'SAT')

    def calibration_variables(self) -> list[keras.Variable]:
        return [self.abs_sum, self.count] if self.role == 'activation' and self.built else []

    def after_calibration(self) -> None:
        """PTQ: an activation step never initialized is set from the calibration mean |x|."""
        if self.role != 'activation' or not self.built or float(self.initialized.value) > 0:
            return
        count = float(self.count.value)
        if count > 0:
            mean_abs = float(self.abs_sum.value) / count
            self.scale.assign(2.0 * mean_abs / math.sqrt(self.q_p) if mean_abs > 0 else 1.0 / self.q_p)
            self.initialized.assign(1.0)

    def unobserved(self) -> bool:
        return self.role == 'activation' and self.built and float(self.initialized.value) == 0.0

    def reset_range(self) -> None:
        if self.role == 'activation' and self.built:
            self.abs_sum.assign(0.0)
            self.count.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'bits': self.n_bits, 'signed': self.signed,
                'round_mode': self.round_mode, 'scale_init': self.scale_init}


register_scheme('lsq', LSQQuantizer)
