"""The latest training state (model + optimizer), saved atomically after every epoch, for resuming.

The Pareto checkpoints keep only the epochs worth exporting; to continue an interrupted run one also
needs where it stopped. `LatestCheckpoint` writes `last.keras` (weights, optimizer state, config) and
then `last.json` (the number of completed epochs), each by an atomic rename, so that a crash leaves
either the previous pair or the new one. Place it before `ParetoCheckpoint` in the callbacks: then
the Pareto index never records an epoch that `last.json` does not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras

from .files import save_model_atomic, write_json_atomic

MODEL_NAME = 'last.keras'
STATE_NAME = 'last.json'


def latest_state(directory: str | os.PathLike) -> tuple[Path, int] | None:
    """(path of last.keras, completed epochs), or None when the directory holds no saved state."""
    state = Path(directory) / STATE_NAME
    model = Path(directory) / MODEL_NAME
    if not state.is_file() or not model.is_file():
        return None
    epochs = int(json.loads(state.read_text(encoding='utf-8'))['epochs'])
    return model, epochs


class LatestCheckpoint(keras.callbacks.Callback):
    """Save the model with its optimizer state to `directory/last.keras` at the end of every epoch."""

    def __init__(self, directory: str | os.PathLike) -> None:
        super().__init__()
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        save_model_atomic(self.model, os.path.join(self.directory, MODEL_NAME))
        write_json_atomic(os.path.join(self.directory, STATE_NAME), {'epochs': int(epoch) + 1})
