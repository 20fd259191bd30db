"""POST (power-of-√2 weights): Keras inference == emulator with ==, save/load, clear errors, gradients.

Each model trains one epoch (α moves off its percentile init), calibrates, and is compared on at
least 100,000 outputs, in range and with inputs ×4.
"""

import keras
import numpy as np
import pytest

from hgq import ir
from hgq.layers import QConv2D, QDense, QFlatten, QQuantize
from hgq.quantizers.schemes.post import POSTQuantizer
from hgq.training import calibrate

MIN_OUTPUTS = 100_000


def post(base='sqrt2', bits=4):
    return {'scheme': 'post', 'bits': bits, 'base': base}


def jets_mlp(base):
    inp = keras.Input((16,))
    x = QQuantize({'overflow_mode': 'SAT'})(inp)
    for n, act in ((64, 'relu'), (32, 'relu'), (32, 'relu'), (5, None)):
        x = QDense(n, activation=act, kernel_quantizer=post(base), bias_quantizer=post(base))(x)
    return keras.Model(inp, x)


def small_cnn(base):
    inp = keras.Input((8, 8, 2))
    x = QQuantize({'overflow_mode': 'SAT'})(inp)
    x = QConv2D(4, 3, activation='relu', kernel_quantizer=post(base))(x)
    x = QFlatten()(x)
    x = QDense(5, kernel_quantizer=post(base, bits=3))(x)
    return keras.Model(inp, x)


def data(shape, n, seed):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def trained(build, base, shape):
    model = build(base)
    model.compile(keras.optimizers.Adam(0.01), 'mse')
    y = np.zeros((256, *model.output_shape[1:]), dtype=np.float32)
    model.fit(data(shape, 256, 1), y, epochs=1, batch_size=64, verbose=0)
    calibrate(model, data(shape, 64, 0))
    return model


@pytest.mark.parametrize('base', ['sqrt2', 'pow2'])
@pytest.mark.parametrize('build,shape', [(jets_mlp, (16,)), (small_cnn, (8, 8, 2))], ids=['mlp', 'cnn'])
def test_post_keras_equals_emulator(build, shape, base):
    model = trained(build, base, shape)
    graph = ir.from_model(model)
    n = -(-MIN_OUTPUTS // model.output_shape[-1])
    for scale in (1.0, 4.0):
        x = data(shape, n, 2) * scale
        got = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float64)
        mismatches = int(np.sum(got != ir.predict(graph, x)))
        assert got.size >= MIN_OUTPUTS
        assert mismatches == 0, f'{mismatches} of {got.size} outputs differ at ×{scale}'


def test_post_levels_are_the_stated_set():
    q = POSTQuantizer(role='weight', bits=4, base='sqrt2', level_frac_bits=8, name='q')
    w = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = keras.ops.convert_to_numpy(q(w))
    d = q.describe(w)
    alpha = keras.ops.convert_to_numpy(q.alpha).astype(np.float64)
    assert np.allclose(alpha, np.percentile(np.abs(w), 99, axis=0), atol=1e-6)
    mags = np.round(alpha[:, None] * np.sqrt(2.0) ** -np.arange(7) * 256) / 256
    expect = np.sort(np.concatenate([-mags, np.zeros((3, 1)), mags], axis=1), axis=1)
    assert d.levels.shape == (3, 15) and np.array_equal(d.levels, expect)
    assert np.array_equal(y, d.quantize(w)) and set(np.unique(y[:, 0])) <= set(expect[0])
    # nearest level: no level of the set is closer than the chosen one (ties go up)
    dist = np.abs(w[..., None] - d.levels[None])
    assert np.all(np.abs(w - y) <= dist.min(axis=-1) + 1e-9)


def test_post_pow2_levels_are_shifts_of_alpha():
    q = POSTQuantizer(role='weight', bits=3, base='pow2', level_frac_bits=10, name='q')
    w = np.linspace(-1, 1, 40, dtype=np.float32).reshape(20, 2)
    d = q.describe(w)
    a = d.levels[:, -1:]
    assert np.array_equal(np.abs(d.levels), np.abs(np.round(a * np.array([1, .5, .25, 0, .25, .5, 1]) * 1024) / 1024))


def test_post_save_load_round_trip(tmp_path):
    model = trained(jets_mlp, 'sqrt2', (16,))
    path = tmp_path / 'm.keras'
    model.save(path)
    loaded = keras.models.load_model(path)
    x = data((16,), 2000, 3)
    a = keras.ops.convert_to_numpy(model(x, training=False))
    b = keras.ops.convert_to_numpy(loaded(x, training=False))
    assert np.array_equal(a, b)
    assert loaded.layers[2].kernel_quantizer.get_config()['base'] == 'sqrt2'


def test_post_gradients_flow_to_weights_and_alpha():
    import tensorflow as tf
    q = POSTQuantizer(role='weight', bits=4, name='q')
    w = tf.Variable(np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))
    q(w)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(q(w) * 3.0)
    gw, ga = tape.gradient(loss, [w, q.alpha])
    assert np.all(gw.numpy() == 3.0)
    assert ga is not None and np.any(ga.numpy() != 0)


@pytest.mark.parametrize('kwargs,needle', [
    ({'role': 'activation'}, 'weights only'),
    ({'bits': 1}, 'bits=1'),
    ({'base': 'e'}, "base='e'"),
    ({'level_frac_bits': -1}, 'level_frac_bits=-1'),
])
def test_post_clear_errors(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        POSTQuantizer(**{'role': 'weight', **kwargs}, name='d_kernel')


def test_post_in_activation_slot_names_layer_and_argument():
    with pytest.raises(ValueError, match='dense_x_input_quantizer: scheme "post" quantizes weights only'):
        QDense(4, name='dense_x', input_quantizer={'scheme': 'post'})
