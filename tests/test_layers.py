"""Every layer of hgq.layers: gradients of one training step, exact save/load, exact fixed-point
inference, clear argument errors, a safe default, and hand-computed EBOPs.

Runs on both backends:
    KERAS_BACKEND=tensorflow python -m pytest -q tests/test_layers.py
    KERAS_BACKEND=jax python -m pytest -q tests/test_layers.py
On JAX, layer calls go through the compiled helpers of tests/gradients.py (eager JAX compiles every
primitive for every new shape, which would make this file take minutes).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from gradients import (
    evaluate,
    run_inference,
    run_training_call,
    to_numpy,
    training_step_gradients,
)
from keras import ops

import hgq.layers as hl
from hgq.quantizers.base import Quantizer
from hgq.quantizers.fixed_point import quantize_np
from hgq.quantizers.hgq_quantizer import FixedQuantizer, HGQQuantizer

BETA = 1e-2  # > 0, so that every bit-width also gets the EBOPs regularizer's gradient


def normal(shape, scale=3.0, seed=0):
    """Inputs large enough that quantization errors are non-zero."""
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype('float32')


def random_bias(seed=5):
    # A zero bias is exact and costs no bits, so its f would get no gradient at all; start elsewhere.
    return keras.initializers.RandomNormal(stddev=1.0, seed=seed)


def own_quantizers(layer):
    return [v for v in vars(layer).values() if isinstance(v, Quantizer)]


def f64(v):
    return np.asarray(to_numpy(v), dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# 1. Gradients of one training step
# --------------------------------------------------------------------------------------------------
# name -> (factory, input shape with batch axis)
COST_BEARING = {
    'QDense': (lambda: hl.QDense(3, beta=BETA, bias_initializer=random_bias()), (4, 5)),
    'QDense_relu_rank3': (lambda: hl.QDense(3, activation='relu', beta=BETA, bias_initializer=random_bias()),
                          (3, 2, 5)),
    'QDenseBatchNorm': (lambda: hl.QDenseBatchNorm(3, beta=BETA), (8, 5)),
    'QConv1D': (lambda: hl.QConv1D(2, 3, beta=BETA, bias_initializer=random_bias()), (2, 6, 3)),
    'QConv2D': (lambda: hl.QConv2D(2, 2, padding='same', beta=BETA, bias_initializer=random_bias()),
                (2, 4, 4, 2)),
    'QConv1DBatchNorm': (lambda: hl.QConv1DBatchNorm(2, 3, beta=BETA), (3, 6, 3)),
    'QConv2DBatchNorm': (lambda: hl.QConv2DBatchNorm(2, 2, beta=BETA), (3, 4, 4, 2)),
    'QBatchNormalization': (lambda: hl.QBatchNormalization(beta=BETA), (8, 4)),
    'QActivation_tanh': (lambda: hl.QActivation('tanh', beta=BETA), (4, 5)),
    'QActivation_relu': (lambda: hl.QActivation('relu', beta=BETA), (4, 5)),
    'QQuantize': (lambda: hl.QQuantize(), (4, 5)),
    'QAveragePooling1D': (lambda: hl.QAveragePooling1D(2), (2, 6, 3)),
    'QAveragePooling2D': (lambda: hl.QAveragePooling2D(2), (2, 4, 4, 2)),
}
WITHOUT_EBOPS = ('QQuantize', 'QAveragePooling1D', 'QAveragePooling2D', 'QActivation_relu')

_steps = {}


def one_step(name):
    """(layer, StepGradients) of one training step; computed once per layer kind and shared by the tests."""
    if name not in _steps:
        factory, shape = COST_BEARING[name]
        layer = factory()
        layer.build(shape)
        target = normal(tuple(layer.compute_output_shape(shape)), scale=1.0, seed=99)

        def output_loss(y):  # mean((y - t)²), a fixed random t: no symmetry (batch norm) makes it flat
            return ops.mean(ops.square(y - target))

        _steps[name] = (layer, training_step_gradients(layer, normal(shape), output_loss))
    return _steps[name]


@pytest.mark.parametrize('name', list(COST_BEARING))
def test_one_step_gradients_reach_every_trainable_variable(name):
    layer, step = one_step(name)

    trainable_ids = {id(v) for v in step.variables}
    for q in own_quantizers(layer):
        if isinstance(q, HGQQuantizer):
            assert id(q.f) in trainable_ids, f'{q.name}.f is not trainable'
    if name == 'QActivation_relu':
        assert step.variables == []  # exact on fixed point: nothing to learn, nothing quantized
    else:
        assert len(step.variables) > 0

    assert np.all(np.isfinite(step.output))
    for v, g in zip(step.variables, step.grads):
        assert g is not None, f'{v.path}: no gradient'
        assert g.shape == tuple(v.shape), f'{v.path}: gradient shape {g.shape} != {tuple(v.shape)}'
        assert np.all(np.isfinite(g)), f'{v.path}: non-finite gradient'
        assert np.any(g != 0), f'{v.path}: gradient is all zeros'
    assert step.grad_x is not None and np.all(np.isfinite(step.grad_x)) and np.any(step.grad_x != 0)


@pytest.mark.parametrize('name', [n for n in COST_BEARING if n not in WITHOUT_EBOPS])
def test_ebops_loss_reaches_every_bit_width(name):
    """The added loss is beta·EBOPs, and on its own it gives every bit-width f a non-zero gradient."""
    layer, step = one_step(name)
    assert step.added_loss > 0, 'beta > 0 but the layer added no EBOPs loss'
    recorded = float(to_numpy(layer.ebops))  # the figure callbacks read
    np.testing.assert_allclose(step.added_loss, BETA * recorded, rtol=1e-6)
    if 'BatchNorm' not in name:  # folded batch norm costs its batch-statistics weights in training
        np.testing.assert_allclose(recorded, evaluate(layer.compute_ebops), rtol=1e-6)

    added = {id(v): g for v, g in zip(step.variables, step.added_grads)}
    fs = [q.f for q in own_quantizers(layer) if isinstance(q, HGQQuantizer)]
    assert fs
    for f in fs:
        g = added[id(f)]
        assert g is not None and np.all(np.isfinite(g)), f.path
        assert np.any(g != 0), f'{f.path}: EBOPs give no gradient to this bit-width'
        assert np.all(g >= 0), f'{f.path}: more bits must never lower the EBOPs'


@pytest.mark.parametrize('name', list(COST_BEARING))
def test_training_call_keeps_the_type_of_every_state_variable(name):
    """A training call must not change a state variable's dtype or weak type: on JAX that retraces and
    recompiles the whole train step at the next batch of every fit (seconds per model)."""
    _, step = one_step(name)
    assert step.state_kinds  # every one of these layers has state (ranges, EBOPs)
    for path, before, after in step.state_kinds:
        assert before == after, f'{path}: (dtype, weak_type) {before} -> {after}'


# --------------------------------------------------------------------------------------------------
# 2. Save / load exactness and config round trips
# --------------------------------------------------------------------------------------------------
# Two small functional models hold every exported layer (each model costs a compilation on JAX).
def dense_model():
    inp = keras.Input((5,))
    q = hl.QQuantize(name='quantize')(inp)
    fixed = hl.QQuantize(FixedQuantizer(k=1, i=2, f=3), name='fixed')(inp)
    y = hl.QDense(6, activation='relu', beta=BETA, name='dense_relu')(q)
    y = hl.QDenseBatchNorm(5, beta=BETA, name='dense_bn')(y)
    y = hl.QBatchNormalization(beta=BETA, name='batchnorm')(y)
    t = hl.QActivation('tanh', beta=BETA, name='tanh')(y)
    a = hl.QAdd(name='add')([t, fixed])
    c = hl.QConcatenate(axis=-1, name='concat')([a, y])                              # (10,)
    c = hl.QReshape((2, 5), name='reshape')(c)
    c = hl.QFlatten(name='flatten')(c)
    out = hl.QActivation('relu', name='relu')(c)
    probs = hl.QSoftmax(name='softmax')(out)
    return keras.Model(inp, [out, probs], name='dense_model'), [(5,)]


def conv_model():
    in1 = keras.Input((6, 3))
    y = hl.QConv1D(4, 3, padding='same', beta=BETA, name='conv1d')(in1)             # (6, 4)
    y = hl.QConv1DBatchNorm(4, 2, beta=BETA, name='conv1d_bn')(y)                   # (5, 4)
    y = hl.QMaxPooling1D(2, name='maxpool1d')(y)                                    # (2, 4)
    y1 = hl.QAveragePooling1D(2, name='avgpool1d')(y)                               # (1, 4)
    in2 = keras.Input((4, 4, 2))
    y = hl.QConv2D(3, 2, padding='same', beta=BETA, name='conv2d')(in2)            # (4, 4, 3)
    y = hl.QMaxPooling2D(2, name='maxpool2d')(y)                                   # (2, 2, 3)
    y = hl.QConv2DBatchNorm(3, 1, beta=BETA, name='conv2d_bn')(y)                  # (2, 2, 3)
    y2 = hl.QAveragePooling2D(2, name='avgpool2d')(y)                              # (1, 1, 3)
    return keras.Model([in1, in2], [y1, y2], name='conv_model'), [(6, 3), (4, 4, 2)]


MODELS = {'dense': dense_model, 'conv': conv_model}
COVERED = {  # every exported layer class is in one of the models above
    'dense': (hl.QQuantize, hl.QDense, hl.QDenseBatchNorm, hl.QBatchNormalization, hl.QActivation, hl.QAdd,
              hl.QConcatenate, hl.QReshape, hl.QFlatten, hl.QSoftmax),
    'conv': (hl.QConv1D, hl.QConv1DBatchNorm, hl.QMaxPooling1D, hl.QAveragePooling1D,
             hl.QConv2D, hl.QConv2DBatchNorm, hl.QMaxPooling2D, hl.QAveragePooling2D),
}


def test_models_cover_every_exported_layer():
    covered = {cls for classes in COVERED.values() for cls in classes}
    exported = {getattr(hl, n) for n in hl.__all__} - {hl.QLayer}
    assert exported == covered


def _f_values(model):
    return {v.path: to_numpy(v).copy() for v in model.weights if v.path.endswith('/f')}


@pytest.mark.parametrize('name', list(MODELS))
def test_save_load_is_exact(name, tmp_path):
    model, in_shapes = MODELS[name]()
    for cls in COVERED[name]:
        assert any(type(layer) is cls for layer in model.layers), cls.__name__
    x = [normal((8, *s), seed=i) for i, s in enumerate(in_shapes)]
    target = [normal((8, *o.shape[1:]), scale=1.0, seed=3) for o in model.outputs]
    f_before = _f_values(model)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss='mse')
    model.fit(x, target, batch_size=8, epochs=1, verbose=0)  # one step

    # Training moved the bit-widths of every layer that has some, and tracked every activation range.
    f_after = _f_values(model)
    assert f_before, 'the model has no trainable bit-widths'
    owners = {p: la.name for la in model.layers for p in f_before if p.startswith(la.name + '/')}
    assert set(owners) == set(f_before)
    for owner in set(owners.values()):
        own = [p for p in f_before if owners[p] == owner]
        assert any(not np.array_equal(f_before[p], f_after[p]) for p in own), f'{owner}: no f moved'
    for v in model.non_trainable_weights:
        if v.path.endswith('range_min'):
            hi = next(w for w in model.non_trainable_weights if w.path == v.path[:-3] + 'max')
            assert np.all(to_numpy(v) <= to_numpy(hi)), f'{v.path}: range not tracked'

    # seen and unseen (overflowing) data
    x_test = [np.concatenate([xi, normal((8, *s), scale=5.0, seed=10 + i)]) for i, (xi, s) in
              enumerate(zip(x, in_shapes))]
    expected = run_inference(model, x_test)
    path = tmp_path / 'm.keras'
    model.save(path)
    loaded = keras.models.load_model(path)

    got = run_inference(loaded, x_test)
    for g, e in zip(keras.tree.flatten(got), keras.tree.flatten(expected)):
        assert np.array_equal(g, e), f'max |diff| = {np.max(np.abs(g - e))}'
    assert [type(la) for la in loaded.layers] == [type(la) for la in model.layers]
    for a, b in zip(model.layers, loaded.layers):
        assert a.name == b.name
        assert b.get_config() == a.get_config(), a.name
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(model.weights, loaded.weights):
        assert a.path == b.path
        assert np.array_equal(to_numpy(a), to_numpy(b)), a.path


@pytest.mark.parametrize('name', list(MODELS))
def test_config_round_trip(name):
    model, _ = MODELS[name]()
    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    for layer in layers:  # built layers, as model.save sees them
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert type(clone) is type(layer)
        assert clone.get_config() == config, layer.name
    # the registered-name serialization that model.save writes, layer by layer
    for layer in layers:
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(revived) is type(layer), layer.name
        assert revived.get_config() == layer.get_config(), layer.name


def test_config_round_trip_of_unbuilt_layers():
    for make in (lambda: hl.QDense(3, beta=BETA, kernel_quantizer={'granularity': 'channel', 'f_init': 4}),
                 lambda: hl.QConv2DBatchNorm(2, (2, 3), strides=(1, 2), padding='same', momentum=0.9),
                 lambda: hl.QActivation('sigmoid', output_quantizer={'round_mode': 'TRN', 'overflow_mode': 'WRAP'}),
                 lambda: hl.QQuantize(FixedQuantizer(k=0, i=3, f=1)),
                 lambda: hl.QAveragePooling1D(3, output_quantizer={'f_init': 2})):
        layer = make()
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_config_of_a_built_layer_builds_afresh():
    """A config is a recipe: re-used on a wider input (clone_model, a grown model) it must build new quantizers.

    The config of a built layer must not carry the quantizers' built state (their `build_config`), or the
    clone's quantizers stay built for the old shape and the call fails (or silently broadcasts).
    """
    layer = hl.QDense(3)
    layer.build((None, 5))
    config = layer.get_config()
    for key in ('input_quantizer', 'kernel_quantizer', 'bias_quantizer'):
        assert 'build_config' not in config[key], f'{key} config carries its build state'
    clone = hl.QDense.from_config(config)
    run_training_call(clone, normal((2, 7)))
    assert tuple(clone.input_quantizer.f.shape) == (7,)
    assert tuple(clone.kernel_quantizer.f.shape) == (7, 3)


# --------------------------------------------------------------------------------------------------
# 3. Inference is exact fixed point
# --------------------------------------------------------------------------------------------------
def _check_input_quantizer(iq, x):
    """The input quantizer in inference: on its 2^-f grid, inside its tracked range, equal to numpy."""
    fmt = iq.fixed_format()
    xq = f64(run_inference(iq, x))
    f = fmt.f.astype(np.float64)
    assert np.array_equal(xq * 2.0 ** f, np.round(xq * 2.0 ** f)), 'not on the 2^-f grid'
    lo, hi = -fmt.k * 2.0 ** fmt.i, 2.0 ** fmt.i - 2.0 ** -f
    assert np.all(xq >= lo) and np.all(xq <= hi), 'outside the fixed-point range'
    assert np.any(xq == hi) or np.any(xq == lo), 'the scale-6 data should saturate somewhere'
    assert np.array_equal(xq, fmt.quantize(x))
    assert np.array_equal(xq, quantize_np(x, fmt.k, fmt.i, fmt.f, 'RND', 'SAT'))
    np.testing.assert_array_equal(evaluate(iq.bits), fmt.bits)  # EBOPs see the exported widths
    return xq


def _expected_dense(layer, xq):
    """x_q @ w_q + b_q in float64 from the exported formats; checks the keras weight values on the way."""
    kq, bq = layer.kernel_quantizer, layer.bias_quantizer
    kernel, bias = f64(layer.kernel), f64(layer.bias)
    wq = kq.fixed_format(kernel).quantize(kernel)
    bq_ = bq.fixed_format(bias).quantize(bias)
    assert np.array_equal(f64(evaluate(lambda: kq(layer.kernel, training=False))), wq)
    assert np.array_equal(f64(evaluate(lambda: bq(layer.bias, training=False))), bq_)
    assert np.array_equal(kq.fixed_format(kernel).quantize(wq), wq)  # the format holds its values exactly
    y = xq @ wq + bq_  # every partial sum fits float32's mantissa here, so keras must match exactly
    return np.maximum(y, 0.0) if layer.activation == 'relu' else y


def test_qdense_inference_is_exact_fixed_point():
    inp = keras.Input((4,))
    linear = hl.QDense(3, beta=BETA, bias_initializer=random_bias(), name='linear')
    relu = hl.QDense(3, activation='relu', beta=BETA, bias_initializer=random_bias(6), name='relu')
    model = keras.Model(inp, [linear(inp), relu(inp)])
    x_train = normal((16, 4))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss='mse')
    target = normal((16, 3), scale=1.0, seed=2)
    model.fit(x_train, [target, target], batch_size=16, epochs=1, verbose=0)  # one step
    # per-element widths on one head, including f = 2.5 (round half to even: 2, in numpy and in keras.ops)
    relu.input_quantizer.f.assign(np.array([3.2, 4.7, 0.0, 2.5], dtype='float32'))
    relu.kernel_quantizer.f.assign(np.array([[2, 5, 1], [3.4, 6, 4], [1.6, 2, 3], [7, 4, 0]], dtype='float32'))
    relu.bias_quantizer.f.assign(np.array([1, 3, 4.2], dtype='float32'))

    x = np.concatenate([x_train, normal((16, 4), scale=6.0, seed=7)])  # in range, and overflowing (SAT)
    expected = [_expected_dense(layer, _check_input_quantizer(layer.input_quantizer, x)) for layer in (linear, relu)]
    for got, want, name in zip(run_inference(model, x), expected, ('linear', 'relu')):
        got = f64(got)
        assert np.array_equal(got, want), f'{name}: max |diff| = {np.max(np.abs(got - want))}'
    for got, want in zip(model.predict(x, verbose=0), expected):
        assert np.array_equal(f64(got), want)


def test_qconv1d_inference_is_exact_fixed_point():
    layer = hl.QConv1D(2, 3, padding='same', bias_initializer=random_bias(), name='c')
    x = normal((4, 5, 2))
    layer.build(x.shape)
    run_training_call(layer, x)  # tracks the input range
    xq = f64(run_inference(layer.input_quantizer, x))
    np.testing.assert_array_equal(xq, layer.input_quantizer.fixed_format().quantize(x))
    kernel, bias = f64(layer.kernel), f64(layer.bias)
    wq = layer.kernel_quantizer.fixed_format(kernel).quantize(kernel)
    bq = layer.bias_quantizer.fixed_format(bias).quantize(bias)
    padded = np.pad(xq, ((0, 0), (1, 1), (0, 0)))
    expected = np.stack([np.einsum('bkc,kco->bo', padded[:, t:t + 3], wq) for t in range(5)], axis=1) + bq
    assert np.array_equal(f64(run_inference(layer, x)), expected)


def test_qactivation_tanh_is_a_quantized_table():
    layer = hl.QActivation('tanh')
    x = normal((6, 3))
    layer.build(x.shape)
    run_training_call(layer, x)
    xq = layer.input_quantizer.fixed_format().quantize(x)
    table = np.tanh(xq).astype(np.float32)
    got = f64(run_inference(layer, x))
    # the table values, quantized to the output format (float32 tanh may differ by an ulp: allow one step
    # where the exact value sits within 1e-6 of a rounding boundary, nowhere else)
    expected = layer.output_quantizer.fixed_format().quantize(table)
    step = 2.0 ** -layer.output_quantizer.fixed_format().f
    mismatch = got != expected
    near_tie = np.abs((np.tanh(xq) / step) % 1.0 - 0.5) < 1e-6
    assert not np.any(mismatch & ~near_tie), np.argwhere(mismatch)
    assert np.array_equal(got * 2.0 ** layer.output_quantizer.fixed_format().f,
                          np.round(got * 2.0 ** layer.output_quantizer.fixed_format().f))


def test_structure_layers_are_exact_and_cost_nothing():
    """Max pooling, add, concatenate, flatten and reshape move fixed-point values without changing them."""
    q = hl.QQuantize(FixedQuantizer(k=1, i=2, f=3))
    xn = f64(run_inference(q, normal((2, 4, 4, 2))))
    assert np.array_equal(xn, quantize_np(normal((2, 4, 4, 2)), 1, 2, 3, 'TRN', 'WRAP'))
    x = xn.astype('float32')
    np.testing.assert_array_equal(run_inference(hl.QMaxPooling2D(2), x), xn.reshape(2, 2, 2, 2, 2, 2).max(axis=(2, 4)))
    x1 = x[:, :, 0, :]
    np.testing.assert_array_equal(run_inference(hl.QMaxPooling1D(2), x1), x1.reshape(2, 2, 2, 2).max(axis=2))
    np.testing.assert_array_equal(run_inference(hl.QAdd(), [x, x]), 2 * xn)
    np.testing.assert_array_equal(run_inference(hl.QConcatenate(), [x, x]), np.concatenate([xn, xn], axis=-1))
    np.testing.assert_array_equal(run_inference(hl.QFlatten(), x), xn.reshape(2, -1))
    np.testing.assert_array_equal(run_inference(hl.QReshape((8, 4)), x), xn.reshape(2, 8, 4))
    for cls in (hl.QMaxPooling1D, hl.QMaxPooling2D, hl.QAdd, hl.QConcatenate, hl.QFlatten, hl.QReshape):
        assert not issubclass(cls, hl.QLayer)


def test_average_pooling_output_is_on_its_grid():
    layer = hl.QAveragePooling2D(2, output_quantizer={'f_init': 2})
    x = normal((2, 4, 4, 1))
    layer.build(x.shape)
    run_training_call(layer, x)
    fmt = layer.output_quantizer.fixed_format()
    mean = x.astype(np.float64).reshape(2, 2, 2, 2, 2, 1).mean(axis=(2, 4))
    got = f64(run_inference(layer, x))
    np.testing.assert_array_equal(got, fmt.quantize(mean))
    assert np.array_equal(got * 4, np.round(got * 4))


# --------------------------------------------------------------------------------------------------
# 4. Clear errors that name the argument
# --------------------------------------------------------------------------------------------------
ERRORS = {
    'round_mode': (lambda: hl.QDense(4, kernel_quantizer={'round_mode': 'ROUND_UP'}), 'round_mode'),
    'overflow_mode': (lambda: hl.QDense(4, input_quantizer={'overflow_mode': 'CLIP'}), 'overflow_mode'),
    'impossible_width': (lambda: FixedQuantizer(k=1, i=-5, f=2), r'k\+i\+f'),
    'sign_bit': (lambda: FixedQuantizer(k=2, i=3, f=2), r'k=2'),
    'non_integer_bits': (lambda: FixedQuantizer(k=1, i=3.5, f=2), r'i=3\.5'),
    'f_init': (lambda: HGQQuantizer(f_init=float('nan')), 'f_init'),
    'role': (lambda: HGQQuantizer(role='bias'), 'role'),
    'tanh_in_dense': (lambda: hl.QDense(4, activation='tanh'), 'activation'),
    'tanh_in_conv': (lambda: hl.QConv2D(2, 3, activation='tanh'), 'activation'),
    'unknown_activation': (lambda: hl.QActivation('no_such_function'), 'activation'),
    'granularity': (lambda: hl.QDense(4, kernel_quantizer={'granularity': 'row'}), 'granularity'),
    'granularity_quantize': (lambda: hl.QQuantize({'granularity': 'batch'}), 'granularity'),
    'padding_conv2d': (lambda: hl.QConv2D(2, 3, padding='causal'), 'padding'),
    'padding_conv1d_bn': (lambda: hl.QConv1DBatchNorm(2, 3, padding='full'), 'padding'),
    'kernel_size': (lambda: hl.QConv2D(2, (3,)), 'kernel_size'),
    'strides': (lambda: hl.QConv1D(2, 3, strides=0), 'strides'),
    'units': (lambda: hl.QDense(0), 'units'),
    'filters': (lambda: hl.QConv1D(-1, 3), 'filters'),
    'beta': (lambda: hl.QDense(4, beta=-1.0), 'beta'),
    'momentum': (lambda: hl.QBatchNormalization(momentum=1.5), 'momentum'),
    'epsilon': (lambda: hl.QDenseBatchNorm(3, epsilon=0.0), 'epsilon'),
    'avgpool_round_mode': (lambda: hl.QAveragePooling1D(2, output_quantizer={'round_mode': 'UP'}), 'round_mode'),
}


@pytest.mark.parametrize('case', list(ERRORS))
def test_bad_argument_raises_naming_it(case):
    make, pattern = ERRORS[case]
    with pytest.raises(ValueError, match=pattern):
        make()


RANK_ERRORS = {
    'QConv2D_rank3': (lambda: hl.QConv2D(2, 3), (2, 8, 3)),
    'QConv1D_rank4': (lambda: hl.QConv1D(2, 3), (2, 8, 8, 3)),
    'QConv2DBatchNorm_rank3': (lambda: hl.QConv2DBatchNorm(2, 3), (2, 8, 3)),
    'QDense_rank1': (lambda: hl.QDense(4), (5,)),
    'QBatchNormalization_rank1': (lambda: hl.QBatchNormalization(), (5,)),
}


@pytest.mark.parametrize('case', list(RANK_ERRORS))
def test_wrong_input_rank_raises_naming_the_rank(case):
    make, shape = RANK_ERRORS[case]
    with pytest.raises(ValueError, match=r'rank .*got shape'):
        make().build(shape)
    with pytest.raises(ValueError, match='rank'):  # the same through an ordinary call on data
        make()(np.zeros(shape, dtype='float32'))
    with pytest.raises(ValueError, match='rank'):  # and through the functional API
        make()(keras.Input(shape[1:]))


def test_bad_quantizer_spec_type_names_the_argument():
    with pytest.raises(TypeError, match='kernel_quantizer'):
        hl.QDense(4, kernel_quantizer=3, name='d')


# --------------------------------------------------------------------------------------------------
# 5. A fresh default layer is not silently zeroed
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('n_in', [16, 64, 1024, 4096])
def test_default_qdense_weights_survive_quantization(n_in):
    layer = hl.QDense(256)
    layer.build((None, n_in))
    wq = evaluate(lambda: layer.kernel_quantizer(layer.kernel))
    nonzero = np.mean(wq != 0)
    assert nonzero > 0.9, f'only {nonzero:.1%} of the quantized weights are non-zero'


# --------------------------------------------------------------------------------------------------
# 6. EBOPs of tiny hand-computed layers
# --------------------------------------------------------------------------------------------------
def _assign(var, value):
    var.assign(np.asarray(value, dtype='float32'))


def test_qdense_ebops_by_hand():
    layer = hl.QDense(2, beta=BETA)
    layer.build((None, 2))
    _assign(layer.kernel, [[0.5, 0.0], [-0.75, 1.5]])
    _assign(layer.bias, [0.25, -1.0])
    _assign(layer.kernel_quantizer.f, [[2, 3], [2, 1]])
    _assign(layer.bias_quantizer.f, [2, 0])
    _assign(layer.input_quantizer.f, [3, 1])
    # Weights: bits = k + i + f of the narrowest format holding q = round(w, 2^-f):
    #   w00 =  0.5,  f=2: q= 0.5  unsigned, i=ceil(log2(0.5+0.25))=0  -> 0+0+2 = 2 bits
    #   w01 =  0,    f=3: q= 0    pruned                                  -> 0 bits
    #   w10 = -0.75, f=2: q=-0.75 signed,   i=ceil(log2(0.75))=0      -> 1+0+2 = 3 bits
    #   w11 =  1.5,  f=1: q= 1.5  unsigned, i=ceil(log2(1.5+0.5))=1   -> 0+1+1 = 2 bits
    # Bias:  b0 = 0.25, f=2: unsigned, i=ceil(log2(0.25+0.25))=-1     -> 0-1+2 = 1 bit
    #        b1 = -1,   f=0: signed,   i=ceil(log2(1))=0              -> 1+0+0 = 1 bit
    # Inputs, ranges tracked from the data below:
    #   x0 in [1, 3],    f=3: unsigned, i=ceil(log2(3+1/8))=2          -> 0+2+3 = 5 bits
    #   x1 in [-2, 0.5], f=1: signed, i=max(ceil(log2(0.5+0.5))=0, ceil(log2(2))=1)=1 -> 1+1+1 = 3 bits
    # EBOPs = 5·(2+0) + 3·(3+2) + (1+1) = 10 + 15 + 2 = 27
    x = np.array([[1.0, -2.0], [3.0, 0.5], [2.0, 0.0]], dtype='float32')
    _, added = run_training_call(layer, x)

    np.testing.assert_array_equal(evaluate(lambda: layer.kernel_quantizer.bits(layer.kernel)), [[2, 0], [3, 2]])
    np.testing.assert_array_equal(evaluate(lambda: layer.bias_quantizer.bits(layer.bias)), [1, 1])
    np.testing.assert_array_equal(evaluate(layer.input_quantizer.bits), [5, 3])
    assert float(evaluate(layer.compute_ebops)) == 27.0
    assert float(to_numpy(layer.ebops)) == 27.0  # recorded by the training call
    assert added == pytest.approx(BETA * 27.0, rel=1e-6)


def test_qconv1d_ebops_by_hand():
    layer = hl.QConv1D(1, 2, use_bias=False)
    layer.build((None, 3, 1))
    _assign(layer.kernel, [[[0.5]], [[-1.25]]])   # (taps, in, out)
    _assign(layer.kernel_quantizer.f, [[[1]], [[2]]])
    _assign(layer.input_quantizer.f, [[2], [0], [1]])
    # Weights: w0 = 0.5, f=1: unsigned, i=ceil(log2(0.5+0.5))=0 -> 0+0+1 = 1 bit
    #          w1 = -1.25, f=2: signed, i=ceil(log2(1.25))=1 -> 1+1+2 = 4 bits
    # Inputs:  x0 in [0.25, 0.75], f=2: unsigned, i=ceil(log2(0.75+0.25))=0 -> 0+0+2 = 2 bits
    #          x1 in [-3, 2],      f=0: signed, i=max(ceil(log2(2+1)), ceil(log2(3)))=2 -> 1+2+0 = 3 bits
    #          x2 in [1, 1.5],     f=1: unsigned, i=ceil(log2(1.5+0.5))=1 -> 0+1+1 = 2 bits
    # Two output positions ('valid'): y0 = x0·w0 + x1·w1, y1 = x1·w0 + x2·w1
    # EBOPs = 2·1 + 3·4 + 3·1 + 2·4 = 2 + 12 + 3 + 8 = 25
    x = np.array([[[0.25], [-3.0], [1.0]], [[0.75], [2.0], [1.5]]], dtype='float32')
    run_training_call(layer, x)
    np.testing.assert_array_equal(evaluate(layer.input_quantizer.bits), [[2], [3], [2]])
    assert float(evaluate(layer.compute_ebops)) == 25.0


def test_qbatchnormalization_ebops_by_hand():
    bn = hl.QBatchNormalization(epsilon=1e-3)
    bn.build((None, 2))
    _assign(bn.gamma, [0.75, 2.0])
    _assign(bn.offset, [0.5, 0.0])
    _assign(bn.moving_mean, [0.0, 0.0])
    _assign(bn.moving_variance, [1.0 - 1e-3, 0.25 - 1e-3])   # sqrt(var + eps) = 1 and 0.5 (to an ulp)
    _assign(bn.scale_quantizer.f, [2, 1])
    _assign(bn.offset_quantizer.f, [1, 3])
    _assign(bn.input_quantizer.f, [1, 2])
    _assign(bn.input_quantizer.range_min, [-1.0, 0.0])
    _assign(bn.input_quantizer.range_max, [1.0, 0.75])
    # scale  = γ/√(σ²+ε) = [0.75, 4]: 0.75, f=2 -> 0+0+2 = 2 bits; 4, f=1 -> unsigned i=ceil(log2(4.5))=3 -> 4 bits
    # offset = β - μ·scale = [0.5, 0]: 0.5, f=1 -> 0+0+1 = 1 bit; 0 -> pruned, 0 bits
    # inputs: [-1, 1],   f=1 -> signed, i=max(ceil(log2(1+0.5)), ceil(log2(1)))=1 -> 1+1+1 = 3 bits
    #         [0, 0.75], f=2 -> unsigned, i=ceil(log2(0.75+0.25))=0 -> 0+0+2 = 2 bits
    # EBOPs = 3·2 + 2·4 + (1 + 0) = 15
    assert float(evaluate(bn.compute_ebops)) == 15.0


def test_qactivation_table_ebops_by_hand():
    act = hl.QActivation('tanh')
    act.build((None, 2))
    _assign(act.input_quantizer.f, [2, 0])
    _assign(act.output_quantizer.f, [3, 4])
    run_training_call(act, np.array([[-1.5, 3.0], [0.5, -4.0]], dtype='float32'))
    # inputs: x0 in [-1.5, 0.5], f=2 -> signed, i=max(ceil(log2(0.5+0.25)), ceil(log2(1.5)))=1 -> 1+1+2 = 4 bits
    #         x1 in [-4, 3],     f=0 -> signed, i=max(ceil(log2(3+1)), ceil(log2(4)))=2 -> 1+2+0 = 3 bits
    # outputs (tanh of the quantized inputs, tracked in training):
    #   tanh([-1.5, 0.5]) = [-0.905, 0.462], f=3: q = [-0.875, 0.5]; signed,
    #       i = max(ceil(log2(0.5+0.125)), ceil(log2(0.875))) = 0 -> 1+0+3 = 4 bits
    #   tanh([-4, 3]) = [-0.99933, 0.99505], f=4: q = [-1, 1]; signed,
    #       i = max(ceil(log2(1+0.0625)), ceil(log2(1))) = 1 -> 1+1+4 = 6 bits
    # EBOPs = 4·4 + 3·6 = 34
    np.testing.assert_array_equal(evaluate(act.input_quantizer.bits), [4, 3])
    np.testing.assert_array_equal(evaluate(act.output_quantizer.bits), [4, 6])
    assert float(evaluate(act.compute_ebops)) == 34.0


def test_asq_trains_and_matches_the_emulator_on_this_backend() -> None:
    """ASQ's first training step initializes its step (a variable assignment that once failed under JAX); after
    training, Keras inference equals the exact emulator."""
    from hgq import ir
    from hgq.training import calibrate

    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    out = hl.QDense(3, input_quantizer={'scheme': 'asq', 'bits': 3})(hl.QDense(8, activation='relu')(inp))
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(512, 8)).astype('float32')
    model.compile(keras.optimizers.Adam(3e-3), 'mse')
    model.fit(x, np.zeros((512, 3)), epochs=1, batch_size=128, verbose=0)
    calibrate(model, x[:64])
    got = np.asarray(model(x, training=False))
    assert np.sum(got != np.asarray(ir.predict(ir.from_model(model), x))) == 0
    assert np.unique(got).size > 3  # not a zeroed layer
