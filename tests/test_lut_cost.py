"""LUT cost: hand-computed terms, zero when pruned, gradients, the layer hook in training, config key."""

import keras
import numpy as np
import pytest

from hgq.layers import QDense
from hgq.training import BudgetController, calibrate, exact_ebops
from hgq.training.lut_cost import (
    DEFAULT_COEFFICIENTS,
    TERMS,
    LUTCostCoefficients,
    LUTEstimate,
    LUTLogger,
    dense_lut_cost,
    dense_lut_terms,
    layer_lut_terms,
    live,
    lut_estimate,
    model_lut_terms,
    use_cost,
)

C = LUTCostCoefficients(products=1.0, accumulation=2.0, terms=0.5, activations=0.25, saturation=3.0, other=0.0)
RNG = np.random.default_rng(5)


def test_hand_computed_tiny_layer():
    bx = np.array([3.0, 2.0])
    bw = np.array([[4.0, 0.0], [1.0, 2.0]])
    bb = np.array([2.0, 0.0])
    t = {k: float(v) for k, v in dense_lut_terms(bx, bw, bx, bb).items()}
    assert t['products'] == pytest.approx(3 * 4 + 2 * 1 + 2 * 2)
    assert t['terms'] == pytest.approx(3)  # three live weights, both inputs live
    assert t['accumulation'] == pytest.approx((3 + 4) + (2 + 1) + (2 + 2) + 2)  # + the bias bits
    assert t['activations'] == pytest.approx(5.0)
    assert t['saturation'] == pytest.approx(5.0)
    assert t['other'] == 0.0
    cost = float(dense_lut_cost(bx, bw, bx, C, bb))
    expected = t['products'] + 2 * t['accumulation'] + 0.5 * t['terms'] + 0.25 * 5 + 3 * 5
    assert cost == pytest.approx(expected, rel=1e-6)
    assert float(dense_lut_terms(bx, bw, None)['saturation']) == 0.0  # WRAP: no clamp logic


def test_live_is_exact_on_integer_widths():
    np.testing.assert_array_equal(np.asarray(live(np.array([-1.0, 0.0, 1.0, 2.0, 7.0]))), [0, 0, 1, 1, 1])


def test_zero_when_fully_pruned():
    assert float(dense_lut_cost(np.array([3.0, 2.0]), np.zeros((2, 3)), None, C)) == pytest.approx(0.25 * 5)
    assert float(dense_lut_cost(np.zeros(2), np.zeros((2, 3)), None, C)) == 0.0


def test_monotone_in_bits():
    bx, bw = RNG.integers(1, 6, 4).astype(float), RNG.integers(1, 6, (4, 3)).astype(float)
    base = float(dense_lut_cost(bx, bw, bx, C))
    assert float(dense_lut_cost(bx + 1, bw, bx, C)) > base
    assert float(dense_lut_cost(bx, bw + 1, bx, C)) > base
    assert float(dense_lut_cost(bx, bw, bx + 1, C)) > base


def test_coefficients_refuse_negative_values():
    with pytest.raises(ValueError, match=r'LUTCostCoefficients.terms=-1 must be a finite number >= 0'):
        LUTCostCoefficients(terms=-1)


def _grad(fn, *args):
    """Gradient of fn w.r.t. every argument with the active Keras backend's autodiff."""
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
    bx, bw = np.array([3.0, 2.0], 'float32'), np.array([[4.0, 1.0], [1.0, 2.0]], 'float32')
    gx, gw = _grad(lambda a, b: dense_lut_cost(a, b, a, C), bx, bw)
    assert np.all(gx > 0) and np.all(gw > 0)
    # one bit from pruning, a weight also sees the live-term overhead it would save (slope 1 at b = 1)
    _, gw1 = _grad(lambda a, b: dense_lut_cost(a, b, None, LUTCostCoefficients(0, 0, 1.0, 0, 0, 0)), bx, bw)
    np.testing.assert_allclose(gw1, (bw == 1.0).astype('float32'))


# ---------------------------------------------------------------- on models
def mlp(overflow='SAT', beta=0.0):
    inputs = keras.Input((6,))
    h = QDense(5, activation='relu', beta=beta, name='d0', input_quantizer={'overflow_mode': overflow, 'f_init': 3},
               kernel_quantizer={'f_init': 3})(inputs)
    out = QDense(3, beta=beta, name='d1', input_quantizer={'overflow_mode': 'WRAP', 'f_init': 2},
                 kernel_quantizer={'f_init': 2})(h)
    return keras.Model(inputs, out)


@pytest.fixture(scope='module')
def calibrated():
    keras.utils.set_random_seed(3)
    model = mlp()
    x = RNG.normal(size=(64, 6)).astype('float32')
    model.layers[1].kernel.assign(np.where(RNG.random((6, 5)) < 0.4, 0.0, RNG.normal(size=(6, 5))))  # pruned
    calibrate(model, x)
    return model, x


def numpy_bits(layer):
    bx = np.broadcast_to(keras.ops.convert_to_numpy(layer.input_quantizer.bits()), layer.in_shape)
    bw = keras.ops.convert_to_numpy(layer.kernel_quantizer.bits(layer.kernel))
    bb = keras.ops.convert_to_numpy(layer.bias_quantizer.bits(layer.bias))
    return np.asarray(bx, float), np.asarray(bw, float), np.asarray(bb, float)


def test_model_terms_equal_dense_lut_terms_of_its_bits(calibrated):
    model, _ = calibrated
    expected = {t: 0.0 for t in TERMS}
    cost = 0.0
    for layer, sat in zip(model.layers[1:], (True, False)):
        bx, bw, bb = numpy_bits(layer)
        if sat:
            assert (bw == 0).sum() >= 6  # d0's pruned weights are there
        for t, v in dense_lut_terms(bx, bw, bx if sat else None, bb).items():
            expected[t] += float(v)
        cost += float(dense_lut_cost(bx, bw, bx if sat else None, DEFAULT_COEFFICIENTS, bb))
    got = model_lut_terms(model)
    assert got == pytest.approx(expected, rel=1e-6)
    assert got['saturation'] > 0 and got['saturation'] < got['activations']  # only d0 saturates
    assert got['products'] + sum(numpy_bits(layer)[2].sum() for layer in model.layers[1:]) == \
        pytest.approx(exact_ebops(model))
    assert lut_estimate(model) == pytest.approx(cost, rel=1e-6)
    assert LUTEstimate()(model) == pytest.approx(cost, rel=1e-6)
    assert BudgetController(1000, 'luts').cost(model) == pytest.approx(cost, rel=1e-6)  # a LUT budget steers on it


def test_dead_logic_is_not_counted():
    """A neuron with no live input is a constant (folded into the next bias); one that no live weight reads
    is removed with the weights that feed it: neither costs LUTs, as in da4ml and Yosys."""
    keras.utils.set_random_seed(4)
    model = mlp('WRAP')
    d0, d1 = model.layers[1:]
    k0, k1 = RNG.normal(size=(6, 5)), RNG.normal(size=(5, 3))
    k0[:, 0] = 0.0  # neuron 0: no live input, a constant relu(0.75)
    k1[1, :] = 0.0  # neuron 1: read by nothing
    d0.kernel.assign(k0)
    d0.bias.assign(np.array([0.75, 0.5, 0.25, 0.5, 0.25]))
    d1.kernel.assign(k1)
    calibrate(model, RNG.normal(size=(64, 6)).astype('float32'))
    (bx0, bw0, bb0), (bx1, bw1, bb1) = numpy_bits(d0), numpy_bits(d1)
    assert bx1[0] > 0 and bw0[:, 1].sum() > 0  # both cost bits before the masks
    used = np.ones(5)
    used[1] = 0.0
    bw0_eff, bb0_eff = bw0 * used, bb0 * used
    bx0_eff = bx0 * (bw0_eff > 0).any(axis=1)
    bx1_eff = bx1 * np.array([0, 0, 1, 1, 1]) * (bw1 > 0).any(axis=1)
    expected = {t: float(a) + float(b) for (t, a), b in zip(dense_lut_terms(bx0_eff, bw0_eff, None, bb0_eff).items(),
                                                          dense_lut_terms(bx1_eff, bw1, None, bb1).values())}
    got = model_lut_terms(model)
    assert got == pytest.approx(expected, rel=1e-6)
    unmasked = float(dense_lut_terms(bx0, bw0)['terms']) + float(dense_lut_terms(bx1, bw1)['terms'])
    assert got['terms'] < unmasked


def test_layer_terms_are_differentiable_in_the_bit_parameters(calibrated):
    model, _ = calibrated
    layer = model.layers[1]
    q_in, q_w = layer.input_quantizer, layer.kernel_quantizer
    f_in, f_w = keras.ops.convert_to_numpy(q_in.f), keras.ops.convert_to_numpy(q_w.f)

    def cost(a, b):
        with keras.StatelessScope(state_mapping=[(q_in.f, a), (q_w.f, b)]):
            terms = layer_lut_terms(layer)
        return sum(float(c) * terms[t] for t, c in DEFAULT_COEFFICIENTS.as_dict().items())

    g_in, g_w = _grad(cost, f_in, f_w)
    bw = numpy_bits(layer)[1]
    assert np.all(g_in > 0)  # every input element is live
    assert np.all(g_w[bw > 0] > 0) and np.all(g_w[bw == 0] == 0)  # pruned weights stay pruned


@pytest.mark.parametrize('overflow', ['SAT', 'WRAP'])
def test_luts_cost_is_the_loss_term(overflow):
    """SGD(0): nothing moves, so loss(beta=1) - loss(beta=0) is exactly the LUT cost, which the logger sees."""
    from hgq.training import BetaScheduler, Constant, Piecewise

    keras.utils.set_random_seed(1)
    model = mlp(overflow)
    assert use_cost(model, 'luts') == 2
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss='mse')
    x, y = RNG.normal(size=(16, 6)).astype('float32'), np.zeros((16, 3), 'float32')
    schedule = Piecewise([(0, Constant(0.0)), (1, Constant(1.0))])
    h = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[BetaScheduler(schedule), LUTLogger()]).history
    assert h['loss'][1] - h['loss'][0] == pytest.approx(h['lut_estimate'][1], rel=1e-4)
    assert h['lut_estimate'][1] > 0


def test_training_with_luts_cost_lowers_the_estimate():
    keras.utils.set_random_seed(2)
    model = mlp('SAT', beta=1e-2)
    use_cost(model, 'luts')
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss='mse')
    x, y = RNG.normal(size=(256, 6)).astype('float32'), RNG.normal(size=(256, 3)).astype('float32')
    h = model.fit(x, y, batch_size=64, epochs=6, verbose=0, callbacks=[LUTLogger()]).history
    assert h['lut_estimate'][-1] < 0.8 * h['lut_estimate'][0]
    assert float(keras.ops.convert_to_numpy(model.layers[1].ebops)) > 0  # EBOPs still recorded
    use_cost(model, 'ebops')
    assert all(layer.cost_hook is None for layer in model.layers[1:])


def test_bad_cost_names_the_valid_values():
    with pytest.raises(ValueError, match=r"cost = 'lut' is not valid; valid values: ebops, luts"):
        use_cost(mlp(), 'lut')


def test_config_cost_key():
    from hgq.workflow.config import ConfigError, resolve

    assert resolve({}, {'n': 1}, {'hidden': 8})['training']['cost'] == 'ebops'
    assert resolve({'training': {'cost': 'luts'}}, {'n': 1}, {'hidden': 8})['training']['cost'] == 'luts'
    with pytest.raises(ConfigError, match=r"config: training.cost = 'LUT': valid values: ebops, luts"):
        resolve({'training': {'cost': 'LUT'}}, {'n': 1}, {'hidden': 8})
