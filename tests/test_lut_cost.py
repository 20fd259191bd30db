"""LUT cost terms: hand-computed values, monotone in bits, zero when pruned, gradients exist."""

import numpy as np
import pytest

from hgq.training.lut_cost import LUTCostCoefficients, dense_lut_cost, dense_lut_terms

C = LUTCostCoefficients(products=1.0, accumulation=2.0, saturation=3.0, terms=0.5)


def test_hand_computed_tiny_layer():
    bx = np.array([3.0, 2.0])
    bw = np.array([[4.0, 0.0], [1.0, 2.0]])
    t = {k: float(v) for k, v in dense_lut_terms(bx, bw, np.array([5.0, 6.0])).items()}
    assert t['products'] == pytest.approx(3 * 4 + 2 * 1 + 2 * 2)
    alive = np.tanh(4.0 * bw)  # live() of each weight
    assert t['accumulation'] == pytest.approx(float(np.sum(alive * (bx[:, None] + bw))), rel=1e-6)
    assert t['saturation'] == pytest.approx(11.0)
    assert t['terms'] == pytest.approx(float(np.sum(alive)), rel=1e-6)
    cost = float(dense_lut_cost(bx, bw, np.array([5.0, 6.0]), C))
    expected = t['products'] + 2 * t['accumulation'] + 3 * t['saturation'] + 0.5 * t['terms']
    assert cost == pytest.approx(expected, rel=1e-6)


def test_zero_when_fully_pruned():
    assert float(dense_lut_cost(np.array([3.0, 2.0]), np.zeros((2, 3)), None, C)) == 0.0


def test_monotone_in_bits():
    rng = np.random.default_rng(0)
    bx, bw = rng.uniform(0, 6, 4), rng.uniform(0, 6, (4, 3))
    base = float(dense_lut_cost(bx, bw, bx, C))
    assert float(dense_lut_cost(bx + 1, bw, bx, C)) > base
    assert float(dense_lut_cost(bx, bw + 1, bx, C)) > base
    assert float(dense_lut_cost(bx, bw, bx + 1, C)) > base


def _grad(fn, *args):
    """Gradient of fn w.r.t. every argument with the active Keras backend's autodiff."""
    import keras
    backend = keras.backend.backend()
    if backend == 'jax':
        import jax
        return [np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(args))))(*args)]
    if backend == 'tensorflow':
        import tensorflow as tf
        xs = [tf.Variable(a, dtype=tf.float32) for a in args]
        with tf.GradientTape() as tape:
            y = fn(*xs)
        return [g.numpy() for g in tape.gradient(y, xs)]
    import torch
    xs = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in args]
    fn(*xs).backward()
    return [x.grad.numpy() for x in xs]


def test_gradient_wrt_bits():
    bx, bw = np.array([3.0, 2.0], 'float32'), np.array([[4.0, 0.5], [1.0, 2.0]], 'float32')
    gx, gw = _grad(lambda a, b: dense_lut_cost(a, b, None, C), bx, bw)
    assert np.all(gx > 0) and np.all(gw > 0)
