"""EBOPs of a whole model: the running figure from training and the exact figure after calibration.

Each QLayer stores the EBOPs of its last training step in its non-trainable `ebops` variable, so
reading them costs no forward pass; `exact_ebops` recomputes them from the current bit-widths and
ranges, which is the figure to report once `calibrate` has fixed the activation ranges.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ._backend import model_function, values_of, variable_numpy
from ._hooks import drop_batch_hook
from ._walk import qlayers, quantizers


def total_ebops(model: keras.layers.Layer) -> float:
    """Sum of the `ebops` variables of every QLayer (as recorded by the last training step)."""
    return float(sum(float(variable_numpy(layer.ebops)) for layer in qlayers(model)))


def _layer_ebops(model: keras.layers.Layer, values: list[Any]) -> list[Any]:
    """compute_ebops() of every QLayer on the given variable values (pure, so it can be compiled)."""
    with keras.StatelessScope(state_mapping=list(zip(model.variables, values, strict=True))):
        return [layer.compute_ebops() for layer in qlayers(model)]


def exact_ebops(model: keras.layers.Layer, check_calibrated: bool = True) -> float:
    """EBOPs recomputed from the current bit-widths and tracked ranges.

    An activation range never observed reads as 0 bits, which would under-count silently, so by
    default this raises unless every cost-bearing layer's activation ranges have been observed
    (run `hgq.training.calibrate(model, x)` first).
    """
    layers = qlayers(model)
    if check_calibrated:
        missing = sorted({q.name for layer in layers for q in quantizers(layer) if q.unobserved()})
        if missing:
            raise ValueError(f'exact_ebops: activation ranges of {missing} were never observed, so their bit-widths '
                             'would count as 0; run hgq.training.calibrate(model, x) on representative data first')
    if not layers:
        return 0.0
    values = model_function(model, _layer_ebops, tensorflow=False)(values_of(model.variables))
    return float(sum(float(np.asarray(keras.ops.convert_to_numpy(v))) for v in values))


class EBOPsLogger(keras.callbacks.Callback):
    """Put the model's EBOPs into the logs as `key`, so History, progress bars and checkpoints see it.

    Place it before the callbacks that read `logs[key]` (ParetoCheckpoint, ProgressBar).
    `batch_logs=True` also updates it after every batch, which costs a device sync every step; by
    default it is written at epoch end only.
    """

    def __init__(self, key: str = 'ebops', batch_logs: bool = False) -> None:
        super().__init__()
        self.key = key
        self.batch_logs = bool(batch_logs)
        if not self.batch_logs:
            drop_batch_hook(self)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.batch_logs and logs is not None:
            logs[self.key] = total_ebops(self.model)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs[self.key] = total_ebops(self.model)
