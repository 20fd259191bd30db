"""Schemes beyond HGQ fixed point (LSQ): Keras inference == the emulator with ==, save/load, errors, gradients.

Each model trains one epoch (so steps move), calibrates, traces the IR and compares at least
100,000 outputs on in-range inputs and on inputs scaled x4 (saturation).
"""

import keras
import numpy as np
import pytest
from gradients import training_step_gradients

from hgq import ir
from hgq.layers import (
    QActivation,
    QAveragePooling2D,
    QBatchNormalization,
    QConv2D,
    QDense,
    QFlatten,
    QQuantize,
)
from hgq.quantizers.schemes.lsq import LSQQuantizer
from hgq.training import calibrate

MIN_OUTPUTS = 100_000


def lsq(bits=4, **kw):
    return {'scheme': 'lsq', 'bits': bits, **kw}


def jets_mlp():
    """16-64-32-32-5 with LSQ in every input, kernel and bias slot (unsigned after ReLUs)."""
    w = lsq(4)
    return keras.Sequential([
        keras.Input((16,)),
        QQuantize(lsq(8)),
        QDense(64, activation='relu', kernel_quantizer=w, bias_quantizer=lsq(8), input_quantizer=lsq(8)),
        QDense(32, activation='relu', kernel_quantizer=w, input_quantizer=lsq(4, signed=False)),
        QDense(32, activation='relu', kernel_quantizer=lsq(3), input_quantizer=lsq(5, signed=False)),
        QDense(5, kernel_quantizer=w, input_quantizer=lsq(4, signed=False)),
    ])


def small_cnn():
    """Conv, BN, activation and average pooling slots with LSQ."""
    return keras.Sequential([
        keras.Input((8, 8, 2)),
        QQuantize(lsq(6)),
        QConv2D(4, 3, kernel_quantizer=lsq(4), input_quantizer=lsq(6)),
        QBatchNormalization(input_quantizer=lsq(6), scale_quantizer=lsq(6), offset_quantizer=lsq(6)),
        QActivation('relu', input_quantizer=lsq(6), output_quantizer=lsq(4, signed=False)),
        QAveragePooling2D((2, 2), output_quantizer=lsq(4, signed=False)),
        QFlatten(),
        QDense(10, kernel_quantizer=lsq(4), input_quantizer=lsq(4, signed=False)),
    ])


def make_data(shape, n, seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, *shape)) * rng.uniform(0.2, 3.0, size=shape)).astype(np.float32)


def trained(builder, shape):
    model = builder()
    y = np.zeros((512, *model.output_shape[1:]), dtype=np.float32)
    model.compile(keras.optimizers.Adam(0.01), 'mse')
    model.fit(make_data(shape, 512, 1), y, epochs=1, batch_size=64, verbose=0)
    calibrate(model, make_data(shape, 512, 0))
    return model


def mismatches(model, graph, x):
    got = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float64)
    return int(np.sum(got != ir.predict(graph, x))), got.size


@pytest.mark.parametrize('builder,shape', [(jets_mlp, (16,)), (small_cnn, (8, 8, 2))])
def test_lsq_keras_equals_emulator(builder, shape):
    model = trained(builder, shape)
    graph = ir.from_model(model)
    n = MIN_OUTPUTS // int(np.prod(model.output_shape[1:])) + 1
    for scale in (1.0, 4.0):
        bad, total = mismatches(model, graph, make_data(shape, n, 3) * scale)
        assert total >= MIN_OUTPUTS
        assert bad == 0, f'{builder.__name__} x{scale}: {bad} of {total} outputs differ'


def test_lsq_describe_is_power_of_two_fixed_format():
    model = trained(jets_mlp, (16,))
    q = model.layers[1].kernel_quantizer
    d = q.describe(keras.ops.convert_to_numpy(model.layers[1].kernel))
    s = abs(float(keras.ops.convert_to_numpy(q.scale)))
    assert int(d.k) == 1 and int(d.k + d.i + d.f) == 4
    assert d.round_mode == 'RND' and d.overflow_mode == 'SAT'
    assert int(d.f) == -int(np.round(np.log2(s)))
    unsigned = model.layers[2].input_quantizer.describe()
    assert int(unsigned.k) == 0 and int(unsigned.i + unsigned.f) == 4


def test_lsq_save_load_round_trip(tmp_path):
    model = trained(jets_mlp, (16,))
    path = tmp_path / 'lsq.keras'
    model.save(path)
    loaded = keras.models.load_model(path)
    x = make_data((16,), 2000, 5) * 2
    a = keras.ops.convert_to_numpy(model(x, training=False))
    b = keras.ops.convert_to_numpy(loaded(x, training=False))
    assert int(np.sum(a != b)) == 0
    assert loaded.layers[2].input_quantizer.get_config() == model.layers[2].input_quantizer.get_config()


def test_lsq_steps_and_input_get_gradients():
    layer = QDense(8, kernel_quantizer=lsq(4), input_quantizer=lsq(6), bias_quantizer=lsq(8), name='d',
                   bias_initializer='random_normal')  # off the grid: a non-zero LSQ gradient
    x = make_data((16,), 64, 2)
    layer(x, training=True)  # initializes every step from data
    step = training_step_gradients(layer, x, lambda y: keras.ops.sum(y * y))
    names = [v.path for v in step.variables]
    for quantizer in ('kernel_quantizer', 'input_quantizer', 'bias_quantizer'):
        (i,) = [j for j, n in enumerate(names) if quantizer in n and n.endswith('scale')]
        assert step.grads[i] is not None and float(np.abs(step.grads[i]).sum()) > 0, names[i]
    assert step.grad_x is not None and float(np.abs(step.grad_x).sum()) > 0


def test_lsq_init_from_data():
    x = make_data((32,), 64, 2)
    q = LSQQuantizer(role='weight', bits=4, name='w')
    q(keras.ops.convert_to_tensor(x))
    expected = 2 * np.mean(np.abs(x)) / np.sqrt(7)
    assert np.isclose(float(keras.ops.convert_to_numpy(q.scale)), expected, rtol=1e-5)


def test_lsq_activation_init_from_calibration():
    """PTQ: an activation step never trained is set from calibration mean |x| (after_calibration)."""
    inp = keras.Input((16,))
    model = keras.Model(inp, QQuantize(lsq(4))(inp))
    x = make_data((16,), 256, 4)
    calibrate(model, x)
    q = model.layers[1].quantizer
    assert np.isclose(float(keras.ops.convert_to_numpy(q.scale)), 2 * np.mean(np.abs(x)) / np.sqrt(7), rtol=1e-4)
    assert not q.unobserved()


@pytest.mark.parametrize('kwargs,match', [
    ({'bits': 0}, 'bits=0'),
    ({'bits': 1}, 'signed=True'),
    ({'bits': 4, 'scale_init': -1.0}, 'scale_init'),
    ({'bits': 4, 'round_mode': 'NEAREST'}, 'round_mode'),
    ({'bits': 4, 'mu': 3}, 'does not take'),
])
def test_lsq_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        QDense(4, kernel_quantizer={'scheme': 'lsq', **kwargs}, name='dense_x')
    assert 'dense_x' in str(err.value)
