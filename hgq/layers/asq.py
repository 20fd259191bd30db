"""ASQ: a quantization step that a small adapter network computes from the same sample (Zhou et al. 2025).

    β     = cast_β(adapter(x))              (a learned fixed-point cast: the hardware's exact β)
    code  = clip(round(x / (s·β)), lo, hi)  (as offset + #{j : x >= (j - 1/2 + lo)·s·β})
    x̂     = code · s · β

The adapter (docs/quantizers.md "## ASQ"): global average pool over space for conv inputs, then
Dense(C, C/4) + ReLU + Dense(C/4, 1) + ReLU; Dense(C, 1) + ReLU below 8 channels; last bias 1, last
kernel N(0, 0.01), so β ≈ 1 at the start. Its layers are hgq layers with their own quantizers and
EBOPs. s is LSQ's learned step (power of two in the forward pass, gradient scale 1/√(N·Q_P)); β
gets the per-sample, unscaled gradient. It lives in hgq.layers (not hgq.quantizers) because its
adapter is made of layers; it registers itself as scheme 'asq' when hgq.layers is imported.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from ..quantizers.adaptive import AdaptiveStepFormat, adaptive_quantize_with, step_coefficients
from ..quantizers.registry import register_scheme
from ..quantizers.schemes.lsq import LSQQuantizer, _grad_scale
from .base import QuantizerSpec
from .linear import QDense
from .structure import QAveragePooling1D, QAveragePooling2D, QFlatten

MAX_ASQ_BITS = 8  # 2^b - 1 comparisons per element: the forward pass and the hardware both pay for them
SMALL_CHANNELS = 8
DEFAULT_BETA_QUANTIZER = {'f_init': 6, 'overflow_mode': 'SAT'}  # i comes from the calibrated range


@keras.saving.register_keras_serializable(package='hgq')
class ASQQuantizer(LSQQuantizer):
    """Activation quantizer with step s·β(x); `adapter_quantizer`/`beta_quantizer` choose the adapter's own."""

    def __init__(self, role: str = 'activation', bits: int = 4, signed: bool | None = None,
                 adapter_quantizer: QuantizerSpec = None, beta_quantizer: QuantizerSpec = None,
                 **kwargs: Any) -> None:
        if role != 'activation':
            raise ValueError(f'{kwargs.get("name", "asq")}: scheme "asq" quantizes activations only (role={role!r}); '
                             'use "lsq" or "post" for weights')
        if isinstance(bits, bool) or int(bits) != bits or not 1 <= int(bits) <= MAX_ASQ_BITS:
            raise ValueError(f'{kwargs.get("name", "asq")}: bits={bits!r} must be an integer in [1, {MAX_ASQ_BITS}] '
                             '(ASQ compares each element with 2^bits - 1 per-sample thresholds)')
        kwargs.pop('round_mode', None)  # ASQ rounds half up (RND), the decision points it compares with
        super().__init__(role=role, bits=bits, signed=bool(signed) if signed is not None else False,
                         round_mode='RND', **kwargs)
        self.adapter_quantizer = adapter_quantizer
        self.beta_quantizer = beta_quantizer

    # ------------------------------------------------------------------ the adapter
    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        shape = tuple(int(d) for d in input_shape[1:])
        channels = shape[-1]
        self._adapter_shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        layers: list[keras.layers.Layer] = []
        if len(shape) > 1:  # conv input: global average pool over space
            pool_cls = QAveragePooling1D if len(shape) == 2 else QAveragePooling2D
            layers.append(pool_cls(pool_size=shape[:-1], name=f'{self.name}_pool'))
            layers.append(QFlatten(name=f'{self.name}_flatten'))
        quant = {} if self.adapter_quantizer is None else {'input_quantizer': self.adapter_quantizer}
        last_init = {'kernel_initializer': keras.initializers.RandomNormal(0.0, 0.01),
                     'bias_initializer': keras.initializers.Constant(1.0), 'activation': 'relu'}
        if channels >= SMALL_CHANNELS:
            layers.append(QDense(channels // 4, activation='relu', name=f'{self.name}_fc1', **quant))
            layers.append(QDense(1, name=f'{self.name}_fc2', **quant, **last_init))
        else:
            layers.append(QDense(1, name=f'{self.name}_fc', **quant, **last_init))
        from .activation import QQuantize

        spec = DEFAULT_BETA_QUANTIZER if self.beta_quantizer is None else self.beta_quantizer
        layers.append(QQuantize({**spec, 'overflow_mode': 'SAT'} if isinstance(spec, dict) and 'scheme' not in spec
                                else spec, name=f'{self.name}_beta'))
        current: tuple[int, ...] = shape
        for layer in layers:
            layer.build((None, *current))
            out = tuple(int(d) for d in layer.compute_output_shape((None, *current))[1:])
            self._adapter_shapes.append((current, out))
            current = out
        self.adapter = layers

    def beta(self, x: Any, training: bool | None = None) -> Any:
        """The quantized β per sample, shape (batch, 1); the adapter's own quantizers apply."""
        y = x
        for layer in self.adapter:
            y = layer(y, training=training)
        return y

    # ------------------------------------------------------------------ forward
    def call(self, x: Any, training: bool | None = None) -> Any:
        xc = ops.stop_gradient(x)
        s = ops.convert_to_tensor(self.scale)
        if self.calibrating:
            self.abs_sum.assign(self.abs_sum + ops.sum(ops.abs(xc)))
            self.count.assign(self.count + ops.cast(ops.size(xc), 'float32'))
        elif training:
            fresh = ops.equal(self.initialized, 0.0)
            s_new = ops.where(fresh, self._init_value(xc), s)
            self.scale.assign(s_new)
            self.initialized.assign(ops.ones(self.initialized.shape))
            s = s + ops.stop_gradient(s_new - s)
        beta = self.beta(x, training=training)  # (batch, 1), exact fixed point
        s = ops.abs(s) + 1e-12
        exponent = ops.round(ops.log2(ops.stop_gradient(s)))
        s_g = _grad_scale(s, 1.0 / math.sqrt(self._n * self.q_p))
        s_pow = s_g + ops.stop_gradient(ops.power(2.0, exponent) - s_g)
        # surrogate (LSQ gradients for s and x, per-sample unscaled for β); its value is replaced below
        rank = len(tuple(x.shape))
        b = ops.reshape(ops.maximum(beta, 1e-8), (-1,) + (1,) * (rank - 1))
        step = s_pow * b
        v = ops.clip(x / step, -self.q_n, self.q_p)
        surrogate = (v + ops.stop_gradient(ops.round(v) - v)) * step
        coefficients, offset = step_coefficients(self.n_bits, self.signed, 0)
        c = ops.convert_to_tensor(coefficients.astype('float32')) * ops.power(2.0, exponent)
        exact = adaptive_quantize_with(ops, xc, ops.stop_gradient(beta), c, offset, ops.power(2.0, exponent))
        return ops.stop_gradient(exact) + surrogate - ops.stop_gradient(surrogate)

    # ------------------------------------------------------------------ protocol
    def describe(self, values: np.ndarray | None = None) -> AdaptiveStepFormat:
        if not self.built:
            raise ValueError(f'{self.name}: not built; call the model once before export')
        e = self._exponent_np()
        coefficients, offset = step_coefficients(self.n_bits, self.signed, e)
        adapter = tuple((layer, i, o) for layer, (i, o) in zip(self.adapter, self._adapter_shapes))
        return AdaptiveStepFormat(adapter, self.adapter[-1].quantizer.describe(), coefficients, offset, e)

    def output_format(self, values: np.ndarray | None = None) -> Any:
        raise ValueError(f'{self.name}: an ASQ output has no fixed format (its step depends on the sample); it '
                         'cannot feed a lookup table directly')

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop('round_mode', None)
        return {**config, 'adapter_quantizer': self.adapter_quantizer, 'beta_quantizer': self.beta_quantizer}


register_scheme('asq', ASQQuantizer)
