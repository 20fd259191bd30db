"""Compiled, cached functions of a model's variables, per backend; reading variables as numpy.

Why: on JAX every op run eagerly is compiled on its first use for each shape, so an eager pass
over a model with many small fixed-point ops takes seconds (measured: ~15 s for a 4-layer model),
where one compiled pass takes a fraction and is reused. TensorFlow runs eager ops quickly, but a
graph still pays off over many batches.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(fn: Callable[..., Any], tensorflow: bool = True) -> Callable[..., Any]:
    """`fn` compiled with jax.jit, or tf.function when `tensorflow`; unchanged on other backends."""
    backend = keras.backend.backend()
    if backend == 'jax':
        import jax

        return jax.jit(fn)
    if backend == 'tensorflow' and tensorflow:
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    return fn


def model_function(model: keras.layers.Layer, body: Callable[..., Any], tensorflow: bool = True) -> Callable[..., Any]:
    """`body(model, *args)` compiled once per model and body, then reused.

    `body` must be pure: model variables enter as arguments (stateless_call, StatelessScope). The
    cache holds models weakly and the compiled function refers to its model weakly, so nothing is
    kept alive by it.
    """
    per_model = _FUNCTIONS.setdefault(model, {})
    fn = per_model.get((body, tensorflow))
    if fn is None:
        ref = weakref.ref(model)
        fn = per_model[(body, tensorflow)] = compiled(lambda *args: body(ref(), *args), tensorflow)
    return fn


def variable_numpy(variable: keras.Variable) -> np.ndarray:
    """A variable's value as numpy, avoiding the numpy-2 `__array__(copy=...)` deprecation path of
    `keras.ops.convert_to_numpy(variable)` (TensorFlow variables convert through `.numpy()`)."""
    value = variable.value
    return np.asarray(value.numpy() if hasattr(value, 'numpy') else value)


def values_of(variables: list[keras.Variable]) -> list[Any]:
    """Current values as backend tensors (copies: a TensorFlow variable passed as itself would make the
    compiled function retrace when tensors come in on the next call)."""
    return [keras.ops.copy(v.value) for v in variables]
