"""Keep per-batch callback hooks off the training loop's fast path.

Keras dispatches batch hooks asynchronously only while no callback overrides `on_train_batch_end`
(`keras.src.utils.python_utils.is_default`); one override makes every step wait for the hooks, which
cost ~30% of a small model's step time on JAX (measured in bench/pareto_vs_hgq2.py). Callbacks whose
per-batch work is optional call `drop_batch_hook(self)` when it is not wanted.
"""

from __future__ import annotations

import keras


def drop_batch_hook(callback: keras.callbacks.Callback) -> None:
    """Replace this instance's `on_train_batch_end` by Keras's default no-op (which Keras recognises)."""
    callback.on_train_batch_end = keras.callbacks.Callback.on_train_batch_end.__get__(callback)
