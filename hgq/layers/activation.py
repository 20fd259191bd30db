"""Quantizer layers and element-wise activations.

ReLU and the identity are exact on fixed point and need no table. Any other element-wise
function is a lookup table in hardware: its input quantizer fixes the table's domain and its
output quantizer the stored values, y = q_out(fn(q_in(x))).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from ..quantizers.base import Quantizer
from .base import QLayer, QuantizerSpec, build_quantizer, make_quantizer, serialize_quantizer

EXACT = ('relu', 'linear')


RECIPROCAL_FLOOR = 2.0**-24


def reciprocal(x: Any) -> Any:
    """1/max(x, 2^-24): a table function of its own (Keras has none); QSoftmax's inverse table uses it.

    Why the floor: a table's entries must be finite numbers, and the domain of a quantized sum holds 0
    (and, for signed formats, negatives); the output quantizer then saturates these entries.
    """
    return 1.0 / ops.maximum(x, RECIPROCAL_FLOOR)


#: element-wise functions hgq adds to Keras' activation names (tables only)
HGQ_FUNCTIONS = {'reciprocal': reciprocal}


@keras.saving.register_keras_serializable(package='hgq')
class QQuantize(keras.layers.Layer):
    """Quantize a tensor (typically the model input) with a trainable or fixed quantizer."""

    def __init__(self, quantizer: QuantizerSpec = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.quantizer: Quantizer = make_quantizer(self.name, 'quantizer', quantizer, 'activation', {})

    def build(self, input_shape: tuple) -> None:
        build_quantizer(self.quantizer, input_shape)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.quantizer(x, training=training)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'quantizer': serialize_quantizer(self.quantizer)}


@keras.saving.register_keras_serializable(package='hgq')
class QActivation(QLayer):
    """Element-wise activation; a quantized lookup table unless it is 'relu' or 'linear'.

    Args:
        activation: a Keras activation name ('tanh', 'sigmoid', 'relu', ...).
        input_quantizer / output_quantizer: the table's domain and values (defaults: HGQ
            quantizers for table functions, none for exact ones).

    EBOPs of a table: Σ bits(in)·bits(out) per element, a rough proxy documented in docs/ebops.md.
    """

    def __init__(self, activation: str, input_quantizer: QuantizerSpec = None,
                 output_quantizer: QuantizerSpec = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            self.fn = HGQ_FUNCTIONS.get(activation) or keras.activations.get(activation)
        except (ValueError, TypeError) as err:
            raise ValueError(f'{self.name}: activation={activation!r} is not a Keras activation name (or one of '
                             f'{sorted(HGQ_FUNCTIONS)})') from err
        if not isinstance(activation, str):
            raise ValueError(f'{self.name}: activation must be given by name so it can be saved, got {activation!r}')
        self.activation = activation
        self.is_table = activation not in EXACT
        default = {} if self.is_table else None
        self.input_quantizer = make_quantizer(self.name, 'input_quantizer', input_quantizer, 'activation', default)
        self.output_quantizer = make_quantizer(self.name, 'output_quantizer', output_quantizer, 'activation', default)

    def build(self, input_shape: tuple) -> None:
        self.in_shape = tuple(input_shape[1:])
        for q in (self.input_quantizer, self.output_quantizer):
            if q is not None:
                build_quantizer(q, input_shape)
        self.build_cost_variables()
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x, training=training)
        y = self.fn(x)
        if self.output_quantizer is not None:
            y = self.output_quantizer(y, training=training)
        self.record_cost(training)
        return y

    def compute_ebops(self) -> Any:
        if not self.is_table or self.input_quantizer is None or self.output_quantizer is None:
            return ops.zeros((), dtype='float32')
        bits_in = ops.broadcast_to(self.input_quantizer.bits(), self.in_shape)
        return ops.sum(bits_in * self.output_quantizer.bits())

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'activation': self.activation,
                'input_quantizer': serialize_quantizer(self.input_quantizer),
                'output_quantizer': serialize_quantizer(self.output_quantizer)}


@keras.saving.register_keras_serializable(package='hgq')
class QSoftmax(keras.layers.Layer):
    """Softmax over the last axis of a 1-D input, exact in hardware: every step is a fixed-point op.

        d = x - max(x)                  (exact)
        e = Q_e(exp(Q_d(d)))            (a table: `exp_table`, a QActivation with its own quantizers)
        s = sum(e)                      (exact)
        r = Q_r(1 / Q_s(s))             (a table: `inverse_table`)
        y = e · r                       (an exact product of variables)

    Why tables and not hls4ml's softmax: each table's input and output formats are quantizers like
    any other (learned or calibrated), so the hardware computes exactly what Keras computes; the
    EBOPs of both tables are counted by their QActivation layers. `exp_quantizers` and
    `inverse_quantizers` are (input, output) quantizer specs of the two tables.
    """

    def __init__(self, exp_quantizers: tuple[QuantizerSpec, QuantizerSpec] = (None, None),
                 inverse_quantizers: tuple[QuantizerSpec, QuantizerSpec] = (None, None), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exp_quantizers = tuple(exp_quantizers)
        self.inverse_quantizers = tuple(inverse_quantizers)
        if len(self.exp_quantizers) != 2 or len(self.inverse_quantizers) != 2:
            raise ValueError(f'{self.name}: exp_quantizers and inverse_quantizers are (input, output) pairs of '
                             'quantizer specs, e.g. ({"f_init": 3}, {"f_init": 6})')
        self.exp_table = QActivation('exponential', *self.exp_quantizers, name=f'{self.name}_exp')
        self.inverse_table = QActivation('reciprocal', *self.inverse_quantizers, name=f'{self.name}_inverse')

    def build(self, input_shape: tuple) -> None:
        if len(input_shape) != 2:
            raise ValueError(f'QSoftmax {self.name!r}: expected input of shape (batch, classes), got '
                             f'{tuple(input_shape)}; flatten first')
        self.exp_table.build(input_shape)
        self.inverse_table.build((input_shape[0], 1))
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        d = x - ops.max(x, axis=-1, keepdims=True)
        e = self.exp_table(d, training=training)
        r = self.inverse_table(ops.sum(e, axis=-1, keepdims=True), training=training)
        return e * r

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'exp_quantizers': list(self.exp_quantizers),
                'inverse_quantizers': list(self.inverse_quantizers)}
