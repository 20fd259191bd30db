"""Activation ranges: forget them (each epoch) and measure them once on data (before export).

The integer bits of an activation come from the min/max its quantizer has seen. During training
those ranges accumulate, so stale extremes from early epochs would keep bits the current weights no
longer need: `ResetRanges` clears them at epoch begin. Before export, `calibrate` measures them on
representative data so that the exported formats (and `exact_ebops`) are exact for that data.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ._backend import model_function, values_of
from ._walk import calibration_variables, quantizers


def reset_ranges(model: keras.layers.Layer) -> int:
    """Call `reset_range()` on every quantizer of the model; returns how many quantizers there are."""
    found = quantizers(model)
    for q in found:
        q.reset_range()
    return len(found)


class ResetRanges(keras.callbacks.Callback):
    """Reset all tracked activation ranges at the start of every `every_n_epochs`-th epoch (0, n, 2n, ...)."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        super().__init__()
        if isinstance(every_n_epochs, bool) or int(every_n_epochs) != every_n_epochs or every_n_epochs < 1:
            raise ValueError(f'ResetRanges: every_n_epochs={every_n_epochs!r} must be a positive integer')
        self.every_n_epochs = int(every_n_epochs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch % self.every_n_epochs == 0:
            reset_ranges(self.model)


def _as_arrays(x: Any) -> list[np.ndarray]:
    leaves = [np.asarray(keras.ops.convert_to_numpy(v) if keras.ops.is_tensor(v) else v)
              for v in keras.tree.flatten(x)]
    if not leaves:
        raise ValueError('calibrate: no calibration data given')
    for leaf in leaves:
        if leaf.dtype.kind not in 'biuf' or leaf.ndim == 0:
            raise TypeError(f'calibrate: calibration data must be numeric arrays with a batch axis, got dtype '
                            f'{leaf.dtype} and shape {leaf.shape}')
    return leaves


def _check_data(leaves: list[np.ndarray]) -> int:
    sizes = {leaf.shape[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f'calibrate: all inputs must have the same number of samples, got {sorted(sizes)}')
    n = sizes.pop()
    if n == 0:
        raise ValueError('calibrate: calibration data has no samples')
    n_nan = sum(int(np.isnan(leaf).sum()) for leaf in leaves if leaf.dtype.kind == 'f')
    n_inf = sum(int(np.isinf(leaf).sum()) for leaf in leaves if leaf.dtype.kind == 'f')
    if n_nan or n_inf:
        raise ValueError(f'calibrate: calibration data contains {n_nan} NaN and {n_inf} Inf values; calibration '
                         'data must be finite (the ranges it measures become the fixed-point formats)')
    return n


def _calibration_pass(model: keras.Model, weights: list[Any], state: list[Any], batch: Any) -> list[Any]:
    """One inference-mode forward pass with quantizers observing; returns the updated non-trainable values."""
    _, new_state = model.stateless_call(weights, state, batch, training=False)
    return new_state


def calibrate(model: keras.Model, x: Any, batch_size: int = 1024) -> None:
    """Measure every activation range on `x` from scratch, without changing anything else in the model.

    `x`: an array, or a list/dict of arrays for a multi-input model (inputs only, no labels).

    Why it works this way: the passes run in inference mode (batch-norm layers use their moving
    statistics, Dropout is off: the model the hardware will compute) with every quantizer's
    `calibrating` flag set, so activation quantizers observe their ranges and apply no overflow.
    They run statelessly (`model.stateless_call`, compiled): every variable is threaded through as a
    value, and at the end only the variables the quantizers name in `calibration_variables()` are written
    back (then each quantizer's `after_calibration()` runs), so nothing else
    changes, and nothing at all if calibration fails part-way.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f'calibrate: batch_size={batch_size!r} must be a positive integer')
    batch_size = int(batch_size)
    leaves = _as_arrays(x)
    n = _check_data(leaves)

    trainable, non_trainable = model.trainable_variables, model.non_trainable_variables
    keep = {id(v) for q in quantizers(model) for v in calibration_variables(q)}
    tracked = [i for i, v in enumerate(non_trainable) if id(v) in keep]
    if len(tracked) != len(keep):
        raise ValueError('calibrate: some quantizer calibration variables are not tracked by the model, so they '
                         'cannot be calibrated; build the model from hgq.layers so Keras tracks every quantizer')

    # Start from reset ranges, computed by each quantizer's own reset_range() but applied to copies only.
    with keras.StatelessScope(state_mapping=[(v, v.value) for v in non_trainable]) as scope:
        reset_ranges(model)
    state = [keras.ops.copy(scope.get_current_value(v)) for v in non_trainable]
    weights = values_of(trainable)

    step = model_function(model, _calibration_pass)
    all_quantizers = quantizers(model)
    for q in all_quantizers:
        q.calibrating = True
    try:
        for start in range(0, n, batch_size):
            batch = keras.tree.pack_sequence_as(
                x, [keras.ops.convert_to_tensor(leaf[start:start + batch_size]) for leaf in leaves])
            state = step(weights, state, batch)
    finally:
        for q in all_quantizers:
            q.calibrating = False
    for i in tracked:
        non_trainable[i].assign(state[i])
    for q in all_quantizers:
        q.after_calibration()
