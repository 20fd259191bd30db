"""Layers that multiply by constant weights: Dense and Conv1D/Conv2D, optionally with batch norm folded in.

Every one quantizes its input (per element by default), its kernel and its bias, so its
output is the exact sum of fixed-point products, and its EBOPs are local:
EBOPs = Σ over every multiplication of bits(input) · bits(weight) + Σ bits(bias); see docs/ebops.md.
Only ReLU and the identity are allowed as fused activations: both are exact on fixed point.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .base import QLayer, QuantizerSpec, build_quantizer, check_rank, make_quantizer, serialize_quantizer

EXACT_ACTIVATIONS = {None: None, 'linear': None, 'relu': ops.relu}


def _exact_activation(layer_name: str, activation: str | None) -> str | None:
    if activation not in EXACT_ACTIVATIONS:
        raise ValueError(f'{layer_name}: activation={activation!r} is not exact in fixed point; use None, '
                         '"linear" or "relu" here and put any other function in a following '
                         'hgq.layers.QActivation (lookup table)')
    return None if activation == 'linear' else activation


class QLinearBase(QLayer):
    """Common part of QDense and QConv: quantizers, weights, cost. Subclasses define the product."""

    allowed_ranks: tuple[int, ...] = ()

    def __init__(self, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: Any = 'glorot_uniform', bias_initializer: Any = 'zeros',
                 kernel_regularizer: Any = None, input_quantizer: QuantizerSpec = None,
                 kernel_quantizer: QuantizerSpec = None, bias_quantizer: QuantizerSpec = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = _exact_activation(self.name, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.input_quantizer = make_quantizer(self.name, 'input_quantizer', input_quantizer, 'activation', {})
        self.kernel_quantizer = make_quantizer(self.name, 'kernel_quantizer', kernel_quantizer, 'weight', {})
        self.bias_quantizer = make_quantizer(self.name, 'bias_quantizer', bias_quantizer, 'weight', {})

    # subclasses: the kernel shape, the product, the output channel count
    def kernel_shape(self, input_shape: tuple) -> tuple[int, ...]:
        raise NotImplementedError

    def product(self, x: Any, kernel: Any) -> Any:
        raise NotImplementedError

    def build(self, input_shape: tuple) -> None:
        check_rank(self, input_shape, self.allowed_ranks)
        if input_shape[-1] is None:
            raise ValueError(f'{self.name}: the last input axis must have a known size, got {input_shape}')
        self.in_shape = tuple(input_shape[1:])
        kshape = self.kernel_shape(input_shape)
        self.kernel = self.add_weight(name='kernel', shape=kshape, initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = None
        if self.has_bias:
            self.bias = self.add_weight(name='bias', shape=(kshape[-1],), initializer=self.bias_initializer)
        build_quantizer(self.input_quantizer, input_shape)
        build_quantizer(self.kernel_quantizer, kshape)
        build_quantizer(self.bias_quantizer, (kshape[-1],))
        self.build_cost_variables()
        self.build_extra(input_shape, kshape)
        self.built = True

    @property
    def has_bias(self) -> bool:
        return self.use_bias

    def build_extra(self, input_shape: tuple, kernel_shape: tuple) -> None:
        """Hook for subclasses that own more state (batch-norm statistics)."""

    def effective_weights(self, x: Any, training: bool | None) -> tuple[Any, Any]:
        """Float kernel and bias before quantization (batch-norm layers fold their statistics in here)."""
        return self.kernel, self.bias

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = self.input_quantizer(x, training=training)
        kernel, bias = self.effective_weights(x, training)
        y = self.product(x, self.kernel_quantizer(kernel, training=training))
        if bias is not None:
            y = y + self.bias_quantizer(bias, training=training)
        if self.activation is not None:
            y = EXACT_ACTIVATIONS[self.activation](y)
        self.record_cost(training, kernel, bias)
        return y

    def record_cost(self, training: bool | None, kernel: Any = None, bias: Any = None) -> None:
        if not training:
            return
        ebops = self.ebops_of(kernel, bias)
        self.ebops.assign(ops.cast(ops.stop_gradient(ebops), self.ebops.dtype))
        self.add_loss(self.beta * self.loss_cost(ebops, kernel, bias))

    def compute_ebops(self) -> Any:
        return self.ebops_of(self.kernel, self.bias)

    def ebops_of(self, kernel: Any, bias: Any) -> Any:
        bits_in = ops.broadcast_to(self.input_quantizer.bits(), self.in_shape)
        bits_w = ops.broadcast_to(self.kernel_quantizer.bits(kernel), ops.shape(kernel))  # per-tensor bits too
        total = ops.sum(self.product(bits_in[None], bits_w))
        if bias is not None:
            total = total + ops.sum(ops.broadcast_to(self.bias_quantizer.bits(bias), ops.shape(bias)))
        return total

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            'activation': self.activation,
            'use_bias': self.use_bias,
            'kernel_initializer': keras.initializers.serialize(self.kernel_initializer),
            'bias_initializer': keras.initializers.serialize(self.bias_initializer),
            'kernel_regularizer': keras.regularizers.serialize(self.kernel_regularizer),
            'input_quantizer': serialize_quantizer(self.input_quantizer),
            'kernel_quantizer': serialize_quantizer(self.kernel_quantizer),
            'bias_quantizer': serialize_quantizer(self.bias_quantizer),
        }


@keras.saving.register_keras_serializable(package='hgq')
class QDense(QLinearBase):
    """Dense layer with quantized input, kernel and bias.

    >>> layer = QDense(32, activation='relu', beta=1e-5)
    """

    allowed_ranks = (2, 3, 4)

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(units) != units or units < 1:
            raise ValueError(f'{self.name}: units={units!r} must be a positive integer')
        self.units = int(units)

    def kernel_shape(self, input_shape: tuple) -> tuple[int, ...]:
        return (int(input_shape[-1]), self.units)

    def product(self, x: Any, kernel: Any) -> Any:
        return ops.matmul(x, kernel)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'units': self.units}


class QConvBase(QLinearBase):
    """N-D convolution (channels last) with quantized input, kernel and bias."""

    rank = 0

    def __init__(self, filters: int, kernel_size: int | tuple[int, ...], strides: int | tuple[int, ...] = 1,
                 padding: str = 'valid', **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(filters) != filters or filters < 1:
            raise ValueError(f'{self.name}: filters={filters!r} must be a positive integer')
        if padding not in ('valid', 'same'):
            raise ValueError(f'{self.name}: padding={padding!r} is not valid; use "valid" or "same"')
        self.filters = int(filters)
        self.kernel_size = self._tuple('kernel_size', kernel_size)
        self.strides = self._tuple('strides', strides)
        self.padding = padding

    def _tuple(self, name: str, value: int | tuple[int, ...]) -> tuple[int, ...]:
        t = (value,) * self.rank if isinstance(value, int) else tuple(value)
        if len(t) != self.rank or any(int(v) != v or v < 1 for v in t):
            raise ValueError(f'{self.name}: {name}={value!r} must be a positive int or {self.rank} positive ints')
        return tuple(int(v) for v in t)

    @property
    def allowed_ranks(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.rank + 2,)

    def kernel_shape(self, input_shape: tuple) -> tuple[int, ...]:
        return self.kernel_size + (int(input_shape[-1]), self.filters)

    def product(self, x: Any, kernel: Any) -> Any:
        return ops.conv(x, kernel, strides=self.strides, padding=self.padding, data_format='channels_last')

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        spatial = []
        for size, k, s in zip(input_shape[1:-1], self.kernel_size, self.strides):
            if size is None:
                spatial.append(None)
            elif self.padding == 'same':
                spatial.append(-(-size // s))
            else:
                spatial.append((size - k) // s + 1)
        return (input_shape[0], *spatial, self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'filters': self.filters, 'kernel_size': self.kernel_size,
                'strides': self.strides, 'padding': self.padding}


@keras.saving.register_keras_serializable(package='hgq')
class QConv1D(QConvBase):
    """1-D convolution over (batch, steps, channels)."""

    rank = 1


@keras.saving.register_keras_serializable(package='hgq')
class QConv2D(QConvBase):
    """2-D convolution over (batch, rows, cols, channels)."""

    rank = 2
