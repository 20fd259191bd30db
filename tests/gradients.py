"""Backend-agnostic helpers for layer tests: gradients of one training step, training and inference calls.

`training_step_gradients(layer, x, output_loss)` differentiates

    loss = output_loss(layer(x, training=True)) + sum(layer.losses)

with respect to every trainable variable of the layer and to the input x, the way the backend's
own trainer does it: TensorFlow with a GradientTape over an eager call, JAX with `jax.grad` over
`Layer.stateless_call(..., training=True, return_losses=True)` under `jax.jit`. It also returns the
gradients of the added losses alone (the EBOPs regularizer), from the same call.

On JAX every helper runs under `jax.jit`: eager JAX compiles each primitive for each new shape
(about 0.1 s apiece on a busy 2-core machine), so one compiled graph per call is much faster.
On TensorFlow the helpers call the layer eagerly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np


@dataclass
class StepGradients:
    output: np.ndarray                    # the layer's output in the training call
    output_loss: float                    # output_loss(output)
    added_loss: float                     # sum of the losses the layer added (beta * EBOPs)
    variables: list[Any]                  # layer.trainable_variables, in order
    grads: list[np.ndarray | None]        # d(output_loss + added)/d(variable); None: the backend saw no path
    added_grads: list[np.ndarray | None]  # d(added)/d(variable): the regularizer's share alone
    grad_x: np.ndarray | None             # d(output_loss + added)/d(input)
    # (path, (dtype, weak_type) before, after) of each non-trainable variable across the training call.
    # A change on JAX (a weak-typed value assigned to a float32 variable) makes jax.jit retrace and
    # recompile a model's whole train step at the next batch.
    state_kinds: list[tuple[str, tuple, tuple]]


def _kind(v: Any) -> tuple:
    return str(v.dtype), bool(getattr(v, 'weak_type', False))


def backend() -> str:
    return keras.backend.backend()


def to_numpy(v: Any) -> np.ndarray | None:
    return None if v is None else np.asarray(keras.ops.convert_to_numpy(v))


def _assign_back(layer: keras.layers.Layer, values: list[Any]) -> None:
    """Keep the state a stateless JAX call produced (tracked ranges, EBOPs, moving statistics)."""
    for var, value in zip(layer.non_trainable_variables, values):
        var.assign(value)


def training_step_gradients(layer: keras.layers.Layer, x: np.ndarray,
                            output_loss: Callable[[Any], Any]) -> StepGradients:
    """Gradients of output_loss(layer(x, training=True)) + sum(added losses); builds the layer if needed.

    Like a trainer, it keeps the non-trainable state that the training call updated.
    """
    x = np.asarray(x, dtype='float32')
    if not layer.built:
        layer.build(tuple(x.shape))
    variables = list(layer.trainable_variables)
    state = list(layer.non_trainable_variables)
    before = [_kind(v.value) for v in state]

    if backend() == 'tensorflow':
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xt)
            y = layer(xt, training=True)
            out_loss = output_loss(y)
            added = tf.add_n([tf.cast(v, tf.float32) for v in layer.losses]) if layer.losses else tf.constant(0.0)
            loss = out_loss + added
        grads = tape.gradient(loss, variables + [xt])
        added_grads = tape.gradient(added, variables) if variables else []
        del tape
        after = [_kind(v.value) for v in state]
        return StepGradients(to_numpy(y), float(out_loss), float(added), variables,
                             [to_numpy(g) for g in grads[:-1]], [to_numpy(g) for g in added_grads],
                             to_numpy(grads[-1]), [(v.path, b, a) for v, b, a in zip(state, before, after)])

    if backend() == 'jax':
        import jax
        import jax.numpy as jnp

        non_trainable = [v.value for v in layer.non_trainable_variables]

        def losses(tv, xin):
            y, new_non_trainable, added_losses = layer.stateless_call(tv, non_trainable, xin, training=True,
                                                                      return_losses=True)
            added = sum((jnp.asarray(v, dtype=jnp.float32) for v in added_losses), jnp.float32(0.0))
            out_loss = output_loss(y)
            return jnp.stack([out_loss + added, added]), (y, out_loss, added, new_non_trainable)

        # one forward pass, one (vectorized) backward pass for both losses, compiled once
        step = jax.jit(jax.jacrev(losses, argnums=(0, 1), has_aux=True))
        (g_vars, g_x), (y, out_loss, added, new_non_trainable) = step([v.value for v in variables], jnp.asarray(x))
        g_added = [g[1] for g in g_vars]
        g_vars, g_x = [g[0] for g in g_vars], g_x[0]
        after = [_kind(v) for v in new_non_trainable]  # jit keeps weak types in its outputs
        _assign_back(layer, new_non_trainable)
        return StepGradients(to_numpy(y), float(out_loss), float(added), variables,
                             [to_numpy(g) for g in g_vars], [to_numpy(g) for g in g_added], to_numpy(g_x),
                             [(v.path, b, a) for v, b, a in zip(state, before, after)])

    raise NotImplementedError(f'no gradient helper for backend {backend()!r}')


def _accepts_training(layer: keras.layers.Layer) -> bool:
    return 'training' in inspect.signature(layer.call).parameters


def _stateless(layer: keras.layers.Layer, training: bool) -> Callable:
    import jax

    kwargs = {'training': training} if _accepts_training(layer) else {}

    def call(tv, ntv, *xs):
        out, new_ntv, losses = layer.stateless_call(tv, ntv, *xs, return_losses=True, **kwargs)
        return out, new_ntv, losses

    return jax.jit(call)


def _ensure_built(layer: keras.layers.Layer, xs: tuple) -> None:
    if not layer.built:
        shapes = [[tuple(np.shape(t)) for t in x] if isinstance(x, (list, tuple)) else tuple(np.shape(x)) for x in xs]
        layer.build(*shapes)


def run_inference(layer: keras.layers.Layer, *xs: Any) -> np.ndarray:
    """layer(*xs, training=False) as numpy (a model works too); builds the layer if needed."""
    _ensure_built(layer, xs)
    if backend() == 'jax':
        out, _, _ = _stateless(layer, False)([v.value for v in layer.trainable_variables],
                                             [v.value for v in layer.non_trainable_variables], *xs)
    else:
        out = layer(*xs, training=False)
    return keras.tree.map_structure(to_numpy, out)


def run_training_call(layer: keras.layers.Layer, *xs: Any) -> tuple[np.ndarray, float]:
    """layer(*xs, training=True): the output and the sum of the added losses; the layer keeps its new state."""
    _ensure_built(layer, xs)
    if backend() == 'jax':
        out, new_ntv, losses = _stateless(layer, True)([v.value for v in layer.trainable_variables],
                                                       [v.value for v in layer.non_trainable_variables], *xs)
        _assign_back(layer, new_ntv)
        return to_numpy(out), float(sum(float(to_numpy(v)) for v in losses))
    out = layer(*xs, training=True)
    return to_numpy(out), float(sum(float(to_numpy(v)) for v in layer.losses))


def evaluate(fn: Callable[[], Any]) -> np.ndarray:
    """fn() as numpy; fn reads layer variables (e.g. `lambda: layer.compute_ebops()`). Compiled on JAX."""
    if backend() == 'jax':
        import jax

        return to_numpy(jax.jit(fn)())
    return to_numpy(fn())

