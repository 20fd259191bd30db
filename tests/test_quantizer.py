"""The HGQ quantizer: surrogate gradients, exact inference, calibrated formats, bad arguments."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from hgq.quantizers.fixed_point import quantize_np
from hgq.quantizers.hgq_quantizer import FixedQuantizer, HGQQuantizer

RNG = np.random.default_rng(11)


def value_and_grads(quantizer, x, upstream):
    """Forward value and gradients of sum(q(x)·upstream) w.r.t. the quantizer's f and x, per backend."""
    backend = keras.backend.backend()
    if backend == 'tensorflow':
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = quantizer(xt, training=True)
            loss = tf.reduce_sum(y * upstream)
        gf, gx = tape.gradient(loss, [quantizer.f, xt])
        return y.numpy(), gf.numpy(), gx.numpy()
    if backend == 'jax':
        import jax

        trainable = [v.value for v in quantizer.trainable_variables]
        non_trainable = [v.value for v in quantizer.non_trainable_variables]

        def loss_fn(tv, xin):
            y, _ = quantizer.stateless_call(tv, non_trainable, xin, training=True)
            return (y * upstream).sum(), y

        (_, y), (gtv, gx) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(trainable, x)
        return np.asarray(y), np.asarray(gtv[0]), np.asarray(gx)
    pytest.skip(f'no gradient helper for backend {backend}')


@pytest.mark.parametrize('granularity', ['element', 'channel', 'tensor'])
def test_surrogate_gradient_equals_formula(granularity):
    q = HGQQuantizer(role='weight', granularity=granularity, f_init=2.3)
    x = (RNG.normal(size=(6, 5)) * 3).astype(np.float32)
    upstream = RNG.normal(size=(6, 5)).astype(np.float32)
    q.build(x.shape)
    y, gf, gx = value_and_grads(q, x, upstream)
    expected_y = quantize_np(x, 1, 60, 2, 'RND', 'WRAP')  # f = round(2.3) = 2
    assert np.array_equal(y.astype(np.float64), expected_y)
    per_element = (-math.log(2.0) * (y - x) * upstream).astype(np.float64)
    if granularity == 'channel':
        per_element = per_element.sum(axis=0, keepdims=True)
    elif granularity == 'tensor':
        per_element = per_element.sum(keepdims=True)
    np.testing.assert_allclose(gf, per_element, rtol=1e-5, atol=1e-7)
    assert np.array_equal(gx, upstream)  # straight-through for x


@pytest.mark.parametrize('overflow_mode', ['SAT', 'WRAP', 'SAT_SYM'])
@pytest.mark.parametrize('round_mode', ['RND', 'TRN', 'RND_CONV'])
def test_activation_inference_equals_calibrated_format(overflow_mode, round_mode):
    q = HGQQuantizer(role='activation', f_init=3, overflow_mode=overflow_mode, round_mode=round_mode)
    data = (RNG.normal(size=(512, 8)) * RNG.uniform(0.1, 6, size=8)).astype(np.float32)
    q.build(data.shape)
    q(data, training=True)  # tracks the range
    fmt = q.fixed_format()
    for scale in (1.0, 4.0):  # in range, then overflowing
        x = (RNG.normal(size=(4096, 8)) * RNG.uniform(0.1, 6, size=8) * scale).astype(np.float32)
        got = ops.convert_to_numpy(q(x, training=False)).astype(np.float64)
        expected = fmt.quantize(x)
        assert int(np.sum(got != expected)) == 0
    assert np.all(fmt.k == (fmt.quantize(data.min(axis=0)) < 0))


def test_training_forward_never_overflows_and_tracks_range():
    q = HGQQuantizer(role='activation', f_init=2, overflow_mode='WRAP')
    x = (RNG.normal(size=(256, 4)) * 10).astype(np.float32)
    q.build(x.shape)
    y = ops.convert_to_numpy(q(x, training=True))
    assert np.array_equal(y.astype(np.float64), quantize_np(x, 1, 60, 2, 'RND', 'WRAP'))
    assert np.array_equal(ops.convert_to_numpy(q.range_max), x.max(axis=0))
    assert np.array_equal(ops.convert_to_numpy(q.range_min), x.min(axis=0))
    q.reset_range()
    assert np.all(np.isinf(ops.convert_to_numpy(q.range_max)))


def test_unseen_range_does_not_zero_outputs():
    q = HGQQuantizer(role='activation')
    x = RNG.normal(size=(64, 3)).astype(np.float32)
    q.build(x.shape)
    y = ops.convert_to_numpy(q(x, training=False))
    assert np.mean(y != 0) > 0.9
    with pytest.raises(ValueError, match='calibrate'):
        q.fixed_format()


def test_weight_format_prunes_zeros_and_fits_values():
    q = HGQQuantizer(role='weight', f_init=3)
    w = np.array([0.01, -0.01, 0.5, -0.5, 1.0, -1.0, 3.3], dtype=np.float32)
    q.build(w.shape)
    fmt = q.fixed_format(w)
    assert fmt.bits.tolist() == [0, 0, 3, 3, 4, 4, 5]  # 0.5: ufixed<3,0>; -0.5: fixed<3,0>; ±1: <4,1>; 3.25: <5,2>
    assert np.array_equal(fmt.quantize(w), quantize_np(w, 1, 60, 3, 'RND', 'WRAP'))
    bits = ops.convert_to_numpy(q.bits(ops.convert_to_tensor(w)))
    assert bits.tolist() == fmt.bits.tolist()


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match='round_mode'):
        HGQQuantizer(round_mode='ROUND_UP')
    with pytest.raises(ValueError, match='overflow_mode'):
        HGQQuantizer(overflow_mode='CLAMP')
    with pytest.raises(ValueError, match='granularity'):
        HGQQuantizer(granularity='row')
    with pytest.raises(ValueError, match='f_init'):
        HGQQuantizer(f_init=float('nan'))
    with pytest.raises(ValueError, match='role'):
        HGQQuantizer(role='bias')
    with pytest.raises(ValueError, match='width'):
        FixedQuantizer(k=1, i=-5, f=2)
    with pytest.raises(ValueError, match='k='):
        FixedQuantizer(k=2, i=3, f=2)


def test_fixed_quantizer_applies_its_format():
    q = FixedQuantizer(k=1, i=2, f=3, round_mode='RND', overflow_mode='SAT')
    x = (RNG.normal(size=(128, 4)) * 8).astype(np.float32)
    y = ops.convert_to_numpy(q(x)).astype(np.float64)
    assert np.array_equal(y, quantize_np(x, 1, 2, 3, 'RND', 'SAT'))
    assert q.fixed_format().bits == 6
