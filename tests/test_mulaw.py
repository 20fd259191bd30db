"""μ-law companding: tables vs the float64 formula, Keras == describe() on a dense grid, Keras == emulator,
save/load, μ sharing, gradients and clear errors. Backend-agnostic (runs on TensorFlow and JAX)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from gradients import training_step_gradients

from hgq import ir
from hgq.layers import QConv2D, QDense, QFlatten, QQuantize
from hgq.quantizers.schemes.mulaw import MuLawQuantizer, TieMu, mu_groups, tie_mu
from hgq.quantizers.schemes.mulaw_table import mulaw_tables
from hgq.training import calibrate

MIN_OUTPUTS = 100_000


def mulaw(bits=4, **kw):
    return {'scheme': 'mulaw', 'bits': bits, **kw}


def np_(v):
    return np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64)


def float64_tables(alpha, mu, bits, signed, level_f):
    """The definition in float64: levels α·F⁻¹(j/L) snapped to 2^-F, thresholds at companded midpoints."""
    if signed:
        t, lv = mulaw_tables(alpha, mu, bits, level_f)
    else:
        n = 2 ** bits - 1
        j = np.arange(n + 1, dtype=np.float64)
        lv = np.round(np.ldexp(alpha / mu * np.expm1(j / n * np.log1p(mu)), level_f)) * 2.0 ** -level_f
        t = alpha / mu * np.expm1((j[1:] - 0.5) / n * np.log1p(mu))
    fi = level_f + 1
    return np.ceil(np.ldexp(t, fi)) * 2.0 ** -fi, lv


@pytest.mark.parametrize('bits,mu,signed', [(3, 255.0, True), (4, 255.0, True), (5, 10.0, True), (4, 50.0, False),
                                            (2, 3.0, False)])
def test_tables_are_the_float64_definition(bits, mu, signed):
    """Stored tables (float32 Keras) vs float64: each entry within one grid step, and (measured) all equal here."""
    q = MuLawQuantizer(role='weight', bits=bits, mu=mu, signed=signed, name='q', level_frac_bits=10)
    w = np.random.default_rng(bits).normal(size=(50, 6)).astype(np.float32) * np.array([.1, .5, 1, 2, 3, 7], 'f')
    q(w)
    d = q.describe(w)
    alpha = q.alpha()
    n = 2 ** bits - 1 if signed else 2 ** bits
    assert d.levels.shape == (6, n) and d.thresholds.shape == (6, n - 1) and d.index_bits == bits
    t_diff = l_diff = 0
    for c in range(6):
        t, lv = float64_tables(alpha[c], mu, bits, signed, 10)
        assert np.all(np.abs(d.levels[c] - lv) <= 2.0 ** -10) and np.all(np.abs(d.thresholds[c] - t) <= 2.0 ** -11)
        t_diff += int(np.sum(d.thresholds[c] != t))
        l_diff += int(np.sum(d.levels[c] != lv))
        assert d.levels[c, -1] == np.round(alpha[c] * 1024) / 1024  # top level is α on the grid
    assert t_diff == 0 and l_diff == 0, (t_diff, l_diff)
    assert np.allclose(alpha, np.max(np.abs(w), axis=0), rtol=0, atol=0)


@pytest.mark.parametrize('role,signed,per_channel', [('weight', True, True), ('weight', True, False),
                                                     ('weight', False, True), ('activation', True, False),
                                                     ('activation', False, False)])
def test_describe_equals_keras_on_a_dense_grid(role, signed, per_channel):
    """describe()'s function == the Keras call (inference and training forward), on every input grid point."""
    q = MuLawQuantizer(role=role, bits=4, mu=100.0, signed=signed, per_channel=per_channel, name='q')
    channels = 3
    # a grid finer than the input cast (2^-9), over ±3 (beyond α = 2.5 to check saturation)
    grid = np.arange(-3 * 2**11, 3 * 2**11 + 1, dtype=np.float64) * 2.0**-11
    x = np.repeat(grid[:, None], channels, axis=1).astype(np.float32)
    if role == 'weight':
        init = np.zeros((8, channels), np.float32)
        init[0] = [2.5, 1.0, 0.3]
        q(init)
    else:
        q.build((None, channels))
        q.alpha_base.assign(2.5)
        q.initialized.assign(1.0)
        q.refresh()
    d = q.describe(None if role == 'activation' else init)
    got = np_(q(x, training=False))
    assert int(np.sum(got != d.quantize(x))) == 0
    if role == 'activation':
        trained = np_(q(x, training=True))  # the training forward uses the very tables it stores
        assert int(np.sum(trained != got)) == 0
    assert len(np.unique(got[:, 0])) == d.n_levels  # every level is reached on this grid


def jets_mlp(share='layer', learnable_mu=True):
    """16-32-16-5 with μ-law in every input, kernel and bias slot (unsigned after the ReLUs)."""
    kw = {'share': share, 'learnable_mu': learnable_mu}
    inp = keras.Input((16,))
    x = QQuantize({'overflow_mode': 'SAT'})(inp)
    x = QDense(32, activation='relu', input_quantizer=mulaw(5, **kw), kernel_quantizer=mulaw(4, **kw),
               bias_quantizer=mulaw(6, **kw))(x)
    x = QDense(16, activation='relu', input_quantizer=mulaw(4, signed=False, **kw),
               kernel_quantizer=mulaw(3, mu=20.0, **kw))(x)
    x = QDense(5, input_quantizer=mulaw(4, signed=False, **kw), kernel_quantizer=mulaw(4, **kw))(x)
    return keras.Model(inp, x)


def small_cnn(share='layer'):
    inp = keras.Input((8, 8, 1))
    x = QConv2D(4, 3, activation='relu', input_quantizer=mulaw(5, share=share),
                kernel_quantizer=mulaw(4, share=share))(inp)
    x = QFlatten()(x)
    x = QDense(10, input_quantizer=mulaw(4, signed=False, share=share), kernel_quantizer=mulaw(4, share=share))(x)
    return keras.Model(inp, x)


def data(shape, n, seed):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def trained(model, shape, callbacks=(), n=512):
    model.compile(keras.optimizers.Adam(0.01), 'mse')
    y = np.random.default_rng(5).normal(size=(n, *model.output_shape[1:])).astype(np.float32)
    model.fit(data(shape, n, 1), y, epochs=1, batch_size=64, verbose=0, callbacks=list(callbacks))
    calibrate(model, data(shape, 64, 0))
    return model


@pytest.fixture(scope='module')
def mlp():
    """One QAT-trained jets MLP (one μ for weights, one for activations), shared by the tests below."""
    model = jets_mlp('kind')
    init = {id(q): float(np_(q.log_mu)) for g in mu_groups(model).values() for q in g}
    kernels = [np_(layer.kernel) for layer in model.layers[2:]]
    trained(model, (16,), [TieMu()])
    # QAT: each kernel's α base came from its first training step, i.e. from the initial kernel
    # (kept as non-trainable state on every backend); the trainable scale then moved
    for layer, k0 in zip(model.layers[2:], kernels):
        q = layer.kernel_quantizer
        assert np.array_equal(np_(q.alpha_base), np.max(np.abs(k0), axis=0).astype(np.float32))
        assert np.any(np_(q.alpha_scale) != 1.0)
        assert float(np_(layer.input_quantizer.alpha_base)) != 1.0
    return model, init


def test_keras_equals_emulator(mlp):
    model, _ = mlp
    graph = ir.from_model(model)
    n = -(-MIN_OUTPUTS // model.output_shape[-1])
    for scale in (1.0, 4.0):
        x = data((16,), n, 2) * scale
        got = np_(model.predict(x, verbose=0, batch_size=4096))
        mismatches = int(np.sum(got != ir.predict(graph, x)))
        assert got.size >= MIN_OUTPUTS
        assert mismatches == 0, f'{mismatches} of {got.size} outputs differ at ×{scale}'


def test_ptq_sets_activation_range_from_calibration():
    model = small_cnn()
    x = data((8, 8, 1), 64, 0) * 1.5
    calibrate(model, x)
    q = model.layers[1].input_quantizer
    assert not q.unobserved()
    assert float(q.alpha()) == pytest.approx(float(np.max(np.abs(x))))
    d = q.describe()
    assert d.levels[-1] == np.round(float(q.alpha()) * 256) / 256
    graph = ir.from_model(model)  # PTQ only (never trained): still exact
    got = np_(model(x, training=False))
    assert int(np.sum(got != ir.predict(graph, x))) == 0


@pytest.mark.parametrize('share,n_groups', [('model', 1), ('kind', 2), ('layer', 6), ('tensor', 0)])
def test_sharing_modes_group_the_paper_way(share, n_groups):
    model = jets_mlp(share)
    groups = mu_groups(model)
    assert len(groups) == n_groups
    assert sum(len(g) for g in groups.values()) == (7 if n_groups else 0)
    first = model.layers[2]
    if share == 'layer':  # the first layer's kernel and bias share one μ, its input another
        assert groups[('layer', first.name, 'weight')] == [first.kernel_quantizer, first.bias_quantizer]
        assert groups[('layer', first.name, 'activation')] == [first.input_quantizer]
    if share == 'kind':
        assert len(groups[('kind', 'weight')]) == 4 and len(groups[('kind', 'activation')]) == 3


def test_shared_mu_is_tied_and_learned(mlp):
    model, init = mlp
    for g in mu_groups(model).values():
        values = [float(np_(q.log_mu)) for q in g]
        assert len(set(values)) == 1, values  # tied exactly
        assert any(v != init[id(q)] for v, q in zip(values, g))  # and learned


def test_save_load_round_trip_keeps_values_and_sharing(mlp, tmp_path):
    model, _ = mlp
    path = tmp_path / 'm.keras'
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = data((16,), 4000, 3) * 2
    assert np.array_equal(np_(model(x, training=False)), np_(loaded(x, training=False)))
    for a, b in zip(mu_groups(model).values(), mu_groups(loaded).values()):
        assert [np_(q.log_mu) for q in a] == [np_(q.log_mu) for q in b]
    q = loaded.layers[2].kernel_quantizer
    assert isinstance(q, MuLawQuantizer) and q.get_config()['share'] == 'kind'
    assert np.array_equal(q.describe(np_(loaded.layers[2].kernel)).levels,
                          model.layers[2].kernel_quantizer.describe(np_(model.layers[2].kernel)).levels)
    # training the loaded model keeps its groups tied
    loaded.compile(keras.optimizers.Adam(0.01), 'mse')
    loaded.fit(data((16,), 128, 4), np.ones((128, 5), 'f'), batch_size=64, verbose=0, callbacks=[TieMu()])
    for a, b in zip(mu_groups(model).values(), mu_groups(loaded).values()):
        assert len({float(np_(q.log_mu)) for q in b}) == 1
        assert float(np_(b[0].log_mu)) != float(np_(a[0].log_mu))


def test_untied_mu_drifts_without_the_callback():
    """The callback is what keeps a group shared: without it the members' μ come apart."""
    inp = keras.Input((4,))
    model = keras.Model(inp, QDense(3, input_quantizer=mulaw(4, share='model'),
                                    kernel_quantizer=mulaw(4, share='model'))(inp))
    trained(model, (4,), n=256)
    (members,) = mu_groups(model).values()
    assert len({float(np_(q.log_mu)) for q in members}) == 2
    assert tie_mu(model) == 1
    assert len({float(np_(q.log_mu)) for q in members}) == 1


def test_gradients_reach_x_alpha_and_mu():
    q = MuLawQuantizer(role='weight', bits=4, mu=50.0, per_channel=True, name='q')
    w = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    q(w)
    q.alpha_base.assign(np.full(4, 1.5, 'f'))
    q.refresh()
    g = training_step_gradients(q, w, lambda y: keras.ops.sum(y * y))
    grads = dict(zip([v.name for v in g.variables], g.grads))
    assert set(grads) == {'alpha_scale', 'log_mu'}
    assert grads['log_mu'] is not None and float(grads['log_mu']) != 0.0
    assert grads['alpha_scale'].shape == (4,) and np.all(grads['alpha_scale'] != 0)
    inside = np.abs(w) <= 1.5
    assert np.array_equal(g.grad_x, np.where(inside, 2 * g.output, 0.0).astype(np.float32))


def test_fixed_mu_is_not_trained():
    q = MuLawQuantizer(role='activation', bits=4, mu=8.0, learnable_mu=False, name='q')
    q.build((None, 3))
    assert [v.name for v in q.trainable_variables] == ['alpha_scale']
    assert q.mu == pytest.approx(8.0)


def test_bits_is_the_stored_level_width():
    q = MuLawQuantizer(role='weight', bits=3, mu=10.0, name='q')
    w = np.array([[0.75, -3.0], [0.1, 0.2]], np.float32)
    q(w)
    d = q.describe(w)
    fmt = d.level_format()
    width = np_(q.bits(keras.ops.convert_to_tensor(w)))
    # signed: 1 + ceil(log2(round(α·2^8) + 1)): an upper bound of the exported level format
    assert np.array_equal(width[0], [1 + np.ceil(np.log2(0.75 * 256 + 1)), 1 + np.ceil(np.log2(3 * 256 + 1))])
    assert np.all(width[0] >= fmt.k + fmt.i + fmt.f)


@pytest.mark.parametrize('kwargs,needle', [
    ({'mu': 0.0}, 'mu=0.0 must be a positive'),
    ({'mu': -3}, 'mu=-3 must be a positive'),
    ({'bits': 1}, r'bits=1 must be an integer in \[2, 8\]'),
    ({'bits': 9, 'signed': False}, r'bits=9 must be an integer in \[1, 8\]'),
    ({'share': 'net'}, "share='net' is not valid"),
    ({'level_frac_bits': 21}, 'level_frac_bits=21'),
    ({'percentile': 0}, 'percentile=0'),
])
def test_clear_errors_name_layer_and_argument(kwargs, needle):
    with pytest.raises(ValueError, match=f'dense_x_kernel_quantizer: {needle}'):
        QDense(4, name='dense_x', kernel_quantizer=mulaw(**{'bits': 4, **kwargs}))


def test_level_set_that_does_not_fit_is_refused():
    q = MuLawQuantizer(role='weight', bits=4, level_frac_bits=20, name='d_kernel')
    w = np.full((2, 2), 40.0, np.float32)
    with pytest.raises(ValueError, match='d_kernel: the level set .* needs 27-bit level codes'):
        q.describe(w)


def test_export_of_an_unset_activation_range_is_refused():
    q = MuLawQuantizer(role='activation', bits=4, name='d_input_quantizer')
    q.build((None, 3))
    assert q.unobserved()
    with pytest.raises(ValueError, match='d_input_quantizer: its range α was never set'):
        q.describe()
