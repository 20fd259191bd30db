"""The protocol every quantizer implements, so layers never special-case a scheme.

A quantizer is a Keras layer (its parameters are tracked, saved and trained like any weight):

- ``call(x, training)``: the quantized tensor; differentiable with respect to x and to the
  quantizer's own parameters.
- ``bits(x)``: bit-width per element of the quantized tensor for the resource cost (EBOPs),
  differentiable with respect to the bit parameters; ``x`` is the tensor for quantizers whose
  width depends on the values (weights), ignored by those that track ranges (activations).
- ``fixed_format(values)``: the exact per-element :class:`FixedFormat` it applies after calibration,
  for export. Schemes that are not plain fixed point (companding, intervals) will answer with
  their own export description instead; layers never look inside.
- ``role``: ``'weight'`` (quantizes constants: range from the values, no overflow) or
  ``'activation'`` (quantizes data: range from tracked statistics, overflow at inference).
- ``calibrating``: while True, an activation quantizer observes ranges in inference-mode calls
  (the layers then use their inference weights, e.g. batch-norm moving statistics) and applies
  no overflow, so the ranges measured are those the deployed model will see.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from .fixed_point import FixedFormat

ROLES = ('weight', 'activation')


class Quantizer(keras.layers.Layer):
    """Base class of all quantizers; see the module docstring for the protocol."""

    def __init__(self, role: str = 'activation', **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if role not in ROLES:
            raise ValueError(f'{type(self).__name__}: role={role!r} is not valid; use one of {ROLES}')
        self.role = role
        self.calibrating = False

    def bits(self, x: Any = None) -> Any:
        raise NotImplementedError(f'{type(self).__name__} does not report bit-widths')

    def fixed_format(self, values: np.ndarray | None = None) -> FixedFormat:
        raise NotImplementedError(f'{type(self).__name__} has no exact fixed-point format')

    def reset_range(self) -> None:
        """Forget tracked statistics (start of an epoch or of a calibration pass); no-op by default."""

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'role': self.role}
