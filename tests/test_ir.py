"""Keras inference == the exact integer emulator, with ==, for every layer type and whole models.

Each case trains one epoch (so formats are heterogeneous), calibrates, traces the IR and compares
at least 100,000 outputs on in-range inputs and on inputs scaled x4 to force overflow.
"""

import keras
import numpy as np
import pytest

from hgq import ir
from hgq.layers import (
    QActivation,
    QAdd,
    QAveragePooling1D,
    QAveragePooling2D,
    QBatchNormalization,
    QConcatenate,
    QConv1D,
    QConv1DBatchNorm,
    QConv2D,
    QConv2DBatchNorm,
    QDense,
    QDenseBatchNorm,
    QFlatten,
    QMaxPooling1D,
    QMaxPooling2D,
    QQuantize,
    QReshape,
)
from hgq.training import calibrate

MIN_OUTPUTS = 100_000


def sat(mode):
    return {'overflow_mode': mode}


def single(layer_fn, shape, overflow):
    inp = keras.Input(shape)
    x = QQuantize({'overflow_mode': overflow})(inp)
    return keras.Model(inp, layer_fn(overflow)(x))


def two_branch(merge, shape, overflow):
    inp = keras.Input(shape)
    x = QQuantize(sat(overflow))(inp)
    a = QDense(8, activation='relu', input_quantizer=sat(overflow))(x)
    b = QDense(8, input_quantizer=sat(overflow))(x)
    return keras.Model(inp, merge()([a, b]))


CASES = {
    'dense': (lambda o: single(lambda o: QDense(16, input_quantizer=sat(o)), (12,), o), (12,)),
    'dense_relu_channel': (lambda o: single(lambda o: QDense(16, activation='relu', input_quantizer=sat(o),
                                                              kernel_quantizer={'granularity': 'channel'}), (12,), o),
                           (12,)),
    'dense_bn': (lambda o: single(lambda o: QDenseBatchNorm(16, activation='relu', input_quantizer=sat(o)), (12,), o),
                 (12,)),
    'conv1d_same_stride': (lambda o: single(lambda o: QConv1D(4, 3, strides=2, padding='same',
                                                               input_quantizer=sat(o)), (17, 3), o), (17, 3)),
    'conv1d_bn': (lambda o: single(lambda o: QConv1DBatchNorm(4, 3, input_quantizer=sat(o)), (12, 2), o), (12, 2)),
    'conv2d_valid': (lambda o: single(lambda o: QConv2D(4, 3, input_quantizer=sat(o)), (8, 8, 2), o), (8, 8, 2)),
    'conv2d_same_bn': (lambda o: single(lambda o: QConv2DBatchNorm(3, (3, 2), strides=(2, 1), padding='same',
                                                                    input_quantizer=sat(o)), (7, 6, 2), o), (7, 6, 2)),
    'batchnorm': (lambda o: single(lambda o: QBatchNormalization(input_quantizer=sat(o)), (6, 5), o), (6, 5)),
    'tanh_table': (lambda o: single(lambda o: QActivation('tanh', input_quantizer={'overflow_mode': o, 'f_init': 4},
                                                          output_quantizer=sat(o)), (20,), o), (20,)),
    'sigmoid_table': (lambda o: single(lambda o: QActivation('sigmoid', input_quantizer={'overflow_mode': o}),
                                       (20,), o), (20,)),
    'relu': (lambda o: single(lambda o: QActivation('relu'), (20,), o), (20,)),
    'maxpool1d': (lambda o: single(lambda o: QMaxPooling1D(2), (12, 3), o), (12, 3)),
    'maxpool2d': (lambda o: single(lambda o: QMaxPooling2D((2, 2)), (8, 8, 3), o), (8, 8, 3)),
    'avgpool1d': (lambda o: single(lambda o: QAveragePooling1D(3, output_quantizer=sat(o)), (12, 3), o), (12, 3)),
    'avgpool2d': (lambda o: single(lambda o: QAveragePooling2D((2, 2), output_quantizer=sat(o)), (8, 8, 3), o),
                  (8, 8, 3)),
    'flatten': (lambda o: single(lambda o: QFlatten(), (4, 5), o), (4, 5)),
    'reshape': (lambda o: single(lambda o: QReshape((5, 4)), (4, 5), o), (4, 5)),
    'add': (lambda o: two_branch(QAdd, (10,), o), (10,)),
    'concat': (lambda o: two_branch(QConcatenate, (10,), o), (10,)),
}


def make_data(shape, n, seed):
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.2, 3.0, size=shape)
    return (rng.normal(size=(n, *shape)) * scales).astype(np.float32)


def train_and_calibrate(model, shape):
    x = make_data(shape, 512, 0)
    y = np.zeros((512, *model.output_shape[1:]), dtype=np.float32)
    model.compile(keras.optimizers.Adam(0.01), 'mse')
    model.fit(make_data(shape, 512, 1), y, epochs=1, batch_size=64, verbose=0)
    calibrate(model, x)
    return x


def compare(model, graph, x):
    got = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float64)
    ref = ir.predict(graph, x)
    return int(np.sum(got != ref)), got.size


@pytest.mark.parametrize('overflow', ['SAT', 'WRAP'])
@pytest.mark.parametrize('case', sorted(CASES))
def test_layer_keras_equals_emulator(case, overflow):
    build, shape = CASES[case]
    model = build(overflow)
    train_and_calibrate(model, shape)
    graph = ir.from_model(model)
    per_sample = int(np.prod(model.output_shape[1:]))
    n = -(-MIN_OUTPUTS // per_sample)
    for scale in (1.0, 4.0):
        mismatches, total = compare(model, graph, make_data(shape, n, 7) * scale)
        assert total >= MIN_OUTPUTS
        assert mismatches == 0, f'{case}/{overflow} x{scale}: {mismatches} of {total} outputs differ'


def jets_mlp():
    return keras.Sequential([
        keras.Input((16,)),
        QDense(64, activation='relu', beta=1e-6),
        QDense(32, activation='relu', beta=1e-6, input_quantizer={'overflow_mode': 'WRAP'}),
        QDense(32, activation='relu', beta=1e-6),
        QDense(5, beta=1e-6),
    ])


def small_cnn():
    return keras.Sequential([
        keras.Input((12, 12, 1)),
        QConv2D(4, 3, activation='relu'),
        QMaxPooling2D(2),
        QConv2DBatchNorm(6, 3, activation='relu', input_quantizer={'overflow_mode': 'WRAP'}),
        QFlatten(),
        QDense(10),
    ])


@pytest.mark.parametrize('builder,shape', [(jets_mlp, (16,)), (small_cnn, (12, 12, 1))])
def test_model_keras_equals_emulator(builder, shape):
    model = builder()
    train_and_calibrate(model, shape)
    graph = ir.from_model(model)
    n = MIN_OUTPUTS // int(np.prod(model.output_shape[1:])) + 1
    for scale in (1.0, 4.0):
        mismatches, total = compare(model, graph, make_data(shape, n, 3) * scale)
        assert mismatches == 0, f'{builder.__name__} x{scale}: {mismatches} of {total} outputs differ'


def test_unsupported_layer_is_named():
    model = keras.Sequential([keras.Input((4,)), QDense(3), keras.layers.Dense(2, name='plain_dense')])
    train_and_calibrate(model, (4,))
    with pytest.raises(ValueError, match='plain_dense'):
        ir.from_model(model)


def test_uncalibrated_model_is_refused():
    model = keras.Sequential([keras.Input((4,)), QDense(3)])
    model.build((None, 4))
    with pytest.raises(ValueError, match='calibrate'):
        ir.from_model(model)


def test_emulator_rejects_bad_inputs():
    model = keras.Sequential([keras.Input((4,)), QDense(3)])
    train_and_calibrate(model, (4,))
    graph = ir.from_model(model)
    with pytest.raises(ValueError, match='shape'):
        ir.predict(graph, np.zeros((2, 5)))
    with pytest.raises(ValueError, match='NaN'):
        ir.predict(graph, np.full((2, 4), np.nan))


def test_wide_accumulators_stay_exact_in_the_emulator():
    """Codes beyond 62 bits switch to Python ints: the emulator never rounds."""
    from hgq.ir.intmath import requantize

    codes = np.array([[2**61, -(2**61) - 3]], dtype=np.int64)
    out = requantize(codes, np.array([0, 0]), np.array([1, 1]), np.array([70, 70]), np.array([4, 4]), 'RND', 'WRAP')
    assert out.tolist() == [[2**65, -(2**65) - 48]]


def test_inferred_formats_hold_every_emulated_value():
    from hgq.quantizers import quantize_np

    model = small_cnn()
    train_and_calibrate(model, (12, 12, 1))
    graph = ir.from_model(model)
    infos = ir.analyze(graph)
    tensors = ir.run(graph, make_data((12, 12, 1), 2000, 5) * 4, return_all=True)
    for node in graph.nodes[1:]:
        info, values = infos[node.name], tensors[node.name].values()
        assert np.all(values >= info.lo) and np.all(values <= info.hi), node.name
        k, i, f = (np.broadcast_to(a, values.shape[1:]) for a in (info.fmt.k, info.fmt.i, info.fmt.f))
        assert np.array_equal(quantize_np(values, k, i, f, 'TRN', 'WRAP'), values), node.name


def test_wide_sums_warn_that_float32_is_inexact():
    wide = {'f_init': 14}
    model = keras.Sequential([keras.Input((64,)), QDense(4, input_quantizer=wide, kernel_quantizer=wide)])
    train_and_calibrate(model, (64,))
    with pytest.warns(UserWarning, match='float32'):
        graph = ir.from_model(model)
    assert ir.float32_inexact_nodes(graph)[0][1] > 24
    narrow = keras.Sequential([keras.Input((64,)), QDense(4)])
    train_and_calibrate(narrow, (64,))
    assert ir.float32_inexact_nodes(ir.from_model(narrow)) == []


def test_table_with_a_pruned_element_of_larger_f():
    """A pruned input element (code 0) may carry more fractional bits than the live ones."""
    from hgq.ir.graph import Format, Graph, Node

    in_fmt = Format.of([1, 0], [1, -6], [2, 4])  # element 1: width 0+(-6)+4 < 0, pruned
    table = np.tanh(np.arange(-8, 8) / 4.0)  # codes -8..7 at f=2
    nodes = [
        Node('x', 'input', [], (2,)),
        Node('q', 'quantize', ['x'], (2,), {'fmt': in_fmt, 'round_mode': 'TRN', 'overflow_mode': 'SAT'}),
        Node('t', 'table', ['q'], (2,), {'table': table, 'domain_f': 2, 'domain_min_code': -8,
                                         'out_fmt': Format.of(1, 0, 6), 'round_mode': 'RND', 'overflow_mode': 'SAT'}),
    ]
    x = np.array([[-2.0, 0.3], [1.25, -0.7], [0.5, 0.0]])
    got = ir.predict(Graph(nodes, ['x'], ['t']), x)
    from hgq.quantizers import quantize_np

    expected = quantize_np(np.tanh(np.stack([np.clip(np.floor(x[:, 0] * 4) / 4, -2, 1.75), np.zeros(3)], 1)),
                           1, 0, 6, 'RND', 'SAT')
    assert np.array_equal(got, expected)
