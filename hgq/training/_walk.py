"""Find every layer, cost-bearing layer and quantizer of a model, however deeply nested.

Why a walker of our own: `QLayer.quantizers()` lists only a layer's direct quantizers, while
QQuantize and the average-pooling layers own quantizers without being QLayers, and models may
nest models. Keras tracks sub-layers in `_layers`; we also look at plain attributes so that a
quantizer assigned while tracking was off is still found.
"""

from __future__ import annotations

from collections.abc import Iterator

import keras

from ..layers.base import QLayer
from ..quantizers.base import Quantizer


def iter_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Every layer reachable from `model` (itself included), each once, parents before children."""
    seen: set[int] = set()
    stack: list[keras.layers.Layer] = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        children = list(getattr(layer, '_layers', None) or [])
        children += [v for v in vars(layer).values() if isinstance(v, keras.layers.Layer)]
        stack.extend(reversed(children))


def qlayers(model: keras.layers.Layer) -> list[QLayer]:
    """Built cost-bearing layers (the ones that own `beta` and `ebops`)."""
    return [layer for layer in iter_layers(model) if isinstance(layer, QLayer) and hasattr(layer, 'ebops')]


def quantizers(model: keras.layers.Layer) -> list[Quantizer]:
    """Every quantizer in the model, including those owned by layers that are not QLayers."""
    return [layer for layer in iter_layers(model) if isinstance(layer, Quantizer)]


def calibration_variables(quantizer: Quantizer) -> list[keras.Variable]:
    """The variables calibration measures, as the quantizer names them (protocol, not attribute names)."""
    return [v for v in quantizer.calibration_variables() if isinstance(v, keras.Variable)]
