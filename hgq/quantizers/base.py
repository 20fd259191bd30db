"""The protocol every quantizer implements, so layers never special-case a scheme.

A quantizer is a Keras layer (its parameters are tracked, saved and trained like any weight):

- ``call(x, training)``: the quantized tensor; differentiable with respect to x and to the
  quantizer's own parameters.
- ``bits(x)``: bit-width per element of the quantized tensor for the resource cost (EBOPs),
  differentiable with respect to the bit parameters; ``x`` is the tensor for quantizers whose
  width depends on the values (weights), ignored by those that track ranges (activations).
- ``describe(values)``: the exact function it computes after calibration, in this package's number
  vocabulary: a per-element :class:`FixedFormat`, or an :class:`IndexedFormat` (input cast,
  thresholds, levels). ``values`` are the weights for weight quantizers (their format may depend
  on them). The IR turns each kind into ops; layers never look inside.
- ``calibration_variables()``: the non-trainable variables calibration measures (and
  ``reset_range()`` clears); ``after_calibration()`` derives parameters from them (PTQ);
  ``unobserved()`` says whether some element never saw data (its width would read as 0).
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
from .indexed import Description

ROLES = ('weight', 'activation')


class Quantizer(keras.layers.Layer):
    """Base class of all quantizers; see the module docstring for the protocol."""

    def __init__(self, role: str = 'activation', **kwargs: Any) -> None:
        try:
            super().__init__(**kwargs)
        except ValueError as err:  # Keras rejects unknown arguments with ValueError; the registry names TypeErrors
            if 'Unrecognized keyword' in str(err):
                raise TypeError(str(err)) from err
            raise
        if role not in ROLES:
            raise ValueError(f'{type(self).__name__}: role={role!r} is not valid; use one of {ROLES}')
        self.role = role
        self.calibrating = False

    def bits(self, x: Any = None) -> Any:
        raise NotImplementedError(f'{type(self).__name__} does not report bit-widths')

    def describe(self, values: np.ndarray | None = None) -> Description:
        """The exact function this quantizer computes in inference (after calibration)."""
        raise NotImplementedError(f'{type(self).__name__} does not describe its exact function, so it cannot be '
                                  'exported; implement describe() returning a FixedFormat or an IndexedFormat')

    def output_format(self, values: np.ndarray | None = None) -> FixedFormat:
        """The fixed-point format of the values it outputs (the levels' format for indexed ones)."""
        d = self.describe(values)
        return d if isinstance(d, FixedFormat) else d.level_format()

    def calibration_variables(self) -> list[keras.Variable]:
        """Non-trainable variables that calibration measures on data; none by default."""
        return []

    def after_calibration(self) -> None:
        """Set parameters from freshly calibrated statistics (e.g. a PTQ step size); no-op by default."""

    def unobserved(self) -> bool:
        """True when some element's statistics were never observed; False by default."""
        return False

    def reset_range(self) -> None:
        """Forget tracked statistics (start of an epoch or of a calibration pass); no-op by default."""

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'role': self.role}
