"""Batch normalization for fixed point: folded into Dense/Conv, or standalone as a per-channel affine map.

Folding (the hardware never sees a normalization): kernel' = kernel·γ/√(σ²+ε),
bias' = β - μ·γ/√(σ²+ε), both quantized like any kernel and bias. In training μ, σ² are the
batch statistics of the layer's (quantized-input) product and the moving averages are updated;
at inference the moving averages are used.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .base import QLayer, QuantizerSpec, build_quantizer, check_rank, make_quantizer, serialize_quantizer
from .linear import QConvBase, QDense


def _statistics(layer: Any, y: Any, training: bool | None) -> tuple[Any, Any]:
    """Batch mean/variance of y over all but the last axis in training (updating the moving averages), else the
    moving averages."""
    if not training:
        return layer.moving_mean, layer.moving_variance
    axes = tuple(range(len(y.shape) - 1))
    mean, var = ops.mean(y, axis=axes), ops.var(y, axis=axes)
    m = layer.momentum
    layer.moving_mean.assign(m * layer.moving_mean + (1 - m) * ops.stop_gradient(mean))
    layer.moving_variance.assign(m * layer.moving_variance + (1 - m) * ops.stop_gradient(var))
    return mean, var


class BatchNormFolding:
    """Mixin for QLinearBase subclasses: adds γ, β and moving statistics, folds them into the weights."""

    def __init__(self, *args: Any, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        kwargs['use_bias'] = False  # the batch-norm offset is the bias
        super().__init__(*args, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'{self.name}: momentum={momentum!r} must lie in [0, 1)')
        if not epsilon > 0:
            raise ValueError(f'{self.name}: epsilon={epsilon!r} must be positive')
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build_extra(self, input_shape: tuple, kernel_shape: tuple) -> None:
        n = (kernel_shape[-1],)
        self.bn_gamma = self.add_weight(name='bn_gamma', shape=n, initializer='ones')
        self.bn_beta = self.add_weight(name='bn_beta', shape=n, initializer='zeros')
        self.moving_mean = self.add_weight(name='moving_mean', shape=n, initializer='zeros', trainable=False)
        self.moving_variance = self.add_weight(name='moving_variance', shape=n, initializer='ones', trainable=False)

    def effective_weights(self, x: Any, training: bool | None) -> tuple[Any, Any]:
        mean, var = _statistics(self, self.product(x, self.kernel) if training else None, training)
        scale = self.bn_gamma * ops.rsqrt(var + self.epsilon)
        return self.kernel * scale, self.bn_beta - mean * scale

    def compute_ebops(self) -> Any:
        kernel, bias = self.effective_weights(None, False)
        return self.ebops_of(kernel, bias)

    def record_cost(self, training: bool | None, kernel: Any = None, bias: Any = None) -> None:
        """Cost of the weights that will be deployed (moving statistics), not of this batch's fold."""
        if training:
            super().record_cost(training, *self.effective_weights(None, False))

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), 'momentum': self.momentum, 'epsilon': self.epsilon}
        config.pop('use_bias', None)
        return config


@keras.saving.register_keras_serializable(package='hgq')
class QDenseBatchNorm(BatchNormFolding, QDense):
    """QDense followed by batch normalization, folded into one quantized kernel and bias."""


@keras.saving.register_keras_serializable(package='hgq')
class QConv1DBatchNorm(BatchNormFolding, QConvBase):
    """QConv1D with batch normalization folded in."""

    rank = 1


@keras.saving.register_keras_serializable(package='hgq')
class QConv2DBatchNorm(BatchNormFolding, QConvBase):
    """QConv2D with batch normalization folded in."""

    rank = 2


@keras.saving.register_keras_serializable(package='hgq')
class QBatchNormalization(QLayer):
    """Standalone batch normalization over the last axis: y = x̂·q(γ/√(σ²+ε)) + q(β - μ·γ/√(σ²+ε)).

    One multiplication per element, so EBOPs = Σ bits(x)·bits(scale) + Σ bits(offset).
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, input_quantizer: QuantizerSpec = None,
                 scale_quantizer: QuantizerSpec = None, offset_quantizer: QuantizerSpec = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'{self.name}: momentum={momentum!r} must lie in [0, 1)')
        if not epsilon > 0:
            raise ValueError(f'{self.name}: epsilon={epsilon!r} must be positive')
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.input_quantizer = make_quantizer(self.name, 'input_quantizer', input_quantizer, 'activation', {})
        self.scale_quantizer = make_quantizer(self.name, 'scale_quantizer', scale_quantizer, 'weight', {})
        self.offset_quantizer = make_quantizer(self.name, 'offset_quantizer', offset_quantizer, 'weight', {})

    def build(self, input_shape: tuple) -> None:
        check_rank(self, input_shape, (2, 3, 4))
        n = (int(input_shape[-1]),)
        self.in_shape = tuple(input_shape[1:])
        self.gamma = self.add_weight(name='gamma', shape=n, initializer='ones')
        self.offset = self.add_weight(name='offset', shape=n, initializer='zeros')
        self.moving_mean = self.add_weight(name='moving_mean', shape=n, initializer='zeros', trainable=False)
        self.moving_variance = self.add_weight(name='moving_variance', shape=n, initializer='ones', trainable=False)
        build_quantizer(self.input_quantizer, input_shape)
        build_quantizer(self.scale_quantizer, n)
        build_quantizer(self.offset_quantizer, n)
        self.build_cost_variables()
        self.built = True

    def _scale_offset(self, x: Any, training: bool | None) -> tuple[Any, Any]:
        mean, var = _statistics(self, x, training)
        scale = self.gamma * ops.rsqrt(var + self.epsilon)
        return scale, self.offset - mean * scale

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = self.input_quantizer(x, training=training)
        scale, offset = self._scale_offset(x, training)
        y = x * self.scale_quantizer(scale, training=training) + self.offset_quantizer(offset, training=training)
        if training:
            ebops = self._ebops_of(scale, offset)
            self.ebops.assign(ops.cast(ops.stop_gradient(ebops), self.ebops.dtype))
            self.add_loss(self.beta * self.loss_cost(ebops))
        return y

    def _ebops_of(self, scale: Any, offset: Any) -> Any:
        bits_in = ops.broadcast_to(self.input_quantizer.bits(), self.in_shape)
        return ops.sum(bits_in * self.scale_quantizer.bits(scale)) + ops.sum(self.offset_quantizer.bits(offset))

    def compute_ebops(self) -> Any:
        return self._ebops_of(*self._scale_offset(None, False))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'momentum': self.momentum, 'epsilon': self.epsilon,
                'input_quantizer': serialize_quantizer(self.input_quantizer),
                'scale_quantizer': serialize_quantizer(self.scale_quantizer),
                'offset_quantizer': serialize_quantizer(self.offset_quantizer)}
