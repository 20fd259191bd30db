"""Shared machinery of the quantized layers: quantizer construction, beta, EBOPs bookkeeping."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from ..quantizers.base import Quantizer
from ..quantizers.hgq_quantizer import HGQQuantizer
from ..quantizers.registry import make_scheme

QuantizerSpec = Quantizer | dict[str, Any] | None


def make_quantizer(layer_name: str, argument: str, spec: QuantizerSpec, role: str,
                   default: dict[str, Any] | None = None) -> Quantizer | None:
    """The quantizer for a layer argument: an instance, a dict of HGQQuantizer arguments, a dict naming a
    registered scheme ({'scheme': 'lsq', ...}), a serialized config, or None (then `default`: a dict of
    HGQQuantizer arguments, or None for no quantizer)."""
    if spec is None:
        spec = default
    if spec is None:
        return None
    name = f'{layer_name}_{argument}'
    if isinstance(spec, Quantizer):
        return spec
    if isinstance(spec, dict):
        if 'class_name' in spec and 'config' in spec:
            return keras.saving.deserialize_keras_object(spec)
        if 'scheme' in spec:
            return make_scheme(spec, role, name, f'{layer_name}: {argument}')
        return HGQQuantizer(role=role, name=name, **spec)
    raise TypeError(f'{layer_name}: {argument}={spec!r} is not valid; give a Quantizer, a dict of HGQQuantizer '
                    'arguments (e.g. {"f_init": 4, "overflow_mode": "WRAP"}) or None for the default')


def build_quantizer(q: Quantizer, shape: tuple) -> None:
    """Build a quantizer unless Keras already did while deserializing it (loading a saved model)."""
    if not q.built:
        q.build(shape)


def serialize_quantizer(q: Quantizer | None) -> dict[str, Any] | None:
    """The quantizer's config without its build state: the owning layer builds it for its own input shape."""
    if q is None:
        return None
    config = keras.saving.serialize_keras_object(q)
    config.pop('build_config', None)
    return config


def check_rank(layer: keras.layers.Layer, input_shape: tuple, allowed: tuple[int, ...]) -> None:
    """Raise a clear error when a layer receives a tensor of the wrong rank (batch axis included)."""
    if len(input_shape) not in allowed:
        ranks = ' or '.join(str(r) for r in allowed)
        raise ValueError(f'{type(layer).__name__} {layer.name!r}: expected input of rank {ranks} '
                         f'(batch axis included), got shape {tuple(input_shape)}')


class QLayer(keras.layers.Layer):
    """A layer with a resource cost: it owns `beta` and reports its EBOPs.

    In training, `call` of a subclass computes its differentiable EBOPs, adds beta·EBOPs to the
    loss and stores the figure in the non-trainable variable `ebops` (read by callbacks).
    """

    def __init__(self, beta: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not float(beta) >= 0.0:
            raise ValueError(f'{self.name}: beta={beta!r} must be a non-negative number')
        self.beta_init = float(beta)

    def build_cost_variables(self) -> None:
        self.beta = self.add_weight(name='beta', shape=(), initializer=keras.initializers.Constant(self.beta_init),
                                    trainable=False)
        self.ebops = self.add_weight(name='ebops', shape=(), initializer='zeros', trainable=False)

    #: the loss cost instead of EBOPs: hook(layer, ebops, kernel, bias) -> differentiable cost; set per instance by
    #: hgq.training.lut_cost.use_cost (training code owns the cost models; layers only call them)
    cost_hook: Any = None

    def compute_ebops(self) -> Any:
        """Differentiable EBOPs from the current bit-widths (0 for layers without multiplications)."""
        return ops.zeros((), dtype='float32')

    def loss_cost(self, ebops: Any, kernel: Any = None, bias: Any = None) -> Any:
        """The cost that beta multiplies in the loss: EBOPs, or the cost_hook's (e.g. the LUT cost)."""
        return ebops if self.cost_hook is None else self.cost_hook(self, ebops, kernel, bias)

    def record_cost(self, training: bool | None) -> None:
        if not training:
            return
        ebops = self.compute_ebops()
        # the stored figure keeps the variable's dtype: on JAX a changed dtype recompiles the train step
        self.ebops.assign(ops.cast(ops.stop_gradient(ebops), self.ebops.dtype))
        self.add_loss(self.beta * self.loss_cost(ebops))

    def quantizers(self) -> dict[str, Quantizer]:
        """Named quantizers of this layer (for calibration, reports and export)."""
        return {n: q for n, q in vars(self).items() if isinstance(q, Quantizer)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'beta': self.beta_init}
