"""Layers that move or combine fixed-point values without new arithmetic formats.

Max pooling, addition, concatenation, flattening and reshaping are exact on fixed-point inputs,
so they are Keras's own layers registered under hgq names (so the IR can recognize them).
Average pooling divides, so it quantizes its output.
"""

from __future__ import annotations

from typing import Any

import keras

from .base import QuantizerSpec, build_quantizer, make_quantizer, serialize_quantizer


def _register(base: type, doc: str) -> type:
    cls = type(f'Q{base.__name__}', (base,), {'__doc__': doc, '__module__': __name__})
    return keras.saving.register_keras_serializable(package='hgq')(cls)


QMaxPooling1D = _register(keras.layers.MaxPooling1D, 'Max pooling over steps; exact on fixed point.')
QMaxPooling2D = _register(keras.layers.MaxPooling2D, 'Max pooling over rows and columns; exact on fixed point.')
QAdd = _register(keras.layers.Add, 'Element-wise sum; exact (the result widens by at most one bit).')
QConcatenate = _register(keras.layers.Concatenate, 'Concatenation; exact, formats travel with the elements.')
QFlatten = _register(keras.layers.Flatten, 'Flatten; a relabelling of elements.')
QReshape = _register(keras.layers.Reshape, 'Reshape; a relabelling of elements.')


class _QuantizedAveragePooling:
    """Mixin: average pooling followed by an output quantizer (the mean is not on the input grid)."""

    def __init__(self, *args: Any, output_quantizer: QuantizerSpec = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output_quantizer = make_quantizer(self.name, 'output_quantizer', output_quantizer, 'activation', {})

    def build(self, input_shape: tuple) -> None:
        build_quantizer(self.output_quantizer, self.compute_output_shape(input_shape))
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.output_quantizer(super().call(x), training=training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'output_quantizer': serialize_quantizer(self.output_quantizer)}


@keras.saving.register_keras_serializable(package='hgq')
class QAveragePooling1D(_QuantizedAveragePooling, keras.layers.AveragePooling1D):
    """Average pooling over steps, output quantized."""


@keras.saving.register_keras_serializable(package='hgq')
class QAveragePooling2D(_QuantizedAveragePooling, keras.layers.AveragePooling2D):
    """Average pooling over rows and columns, output quantized."""
