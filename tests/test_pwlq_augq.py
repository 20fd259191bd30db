"""PWLQ and AuGQ: the tables are the stated definitions, describe() == Keras with ==, clear errors, save/load,
and Keras == emulator == hls4ml C-sim == Verilator on a jets-sized MLP and a small CNN (both schemes in weight
and activation slots, PTQ from 64 samples after one QAT epoch, 100,000 outputs per input scale, ×1 and ×4).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from exactness import check_backends, require_tools
from gradients import training_step_gradients

from hgq import ir
from hgq import layers as L
from hgq.quantizers.indexed import IndexedFormat
from hgq.quantizers.schemes.augq import AuGQQuantizer
from hgq.quantizers.schemes.pwlq import GAUSS_COEF, GAUSS_OFFSET, PWLQQuantizer
from hgq.training import calibrate
from hgq.training._walk import quantizers

F = 8  # level_frac_bits used throughout
ULP = 2.0**-F


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _grid(lo: float, hi: float) -> np.ndarray:
    """Every point of the input grid 2^-(F+1) in [lo, hi]."""
    return np.arange(np.floor(lo * 2 ** (F + 1)), np.ceil(hi * 2 ** (F + 1)) + 1) * 2.0 ** -(F + 1)


def _calibrated(q, data: np.ndarray):
    """An activation quantizer after a PTQ pass on `data` (what hgq.training.calibrate does per quantizer)."""
    q.build((None, *data.shape[1:]))
    q.reset_range()
    q.calibrating = True
    q(keras.ops.convert_to_tensor(data.astype(np.float32)))
    q.calibrating = False
    q.after_calibration()
    return q


def _nearest_up(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Nearest of the ascending `levels`, a tie going to the larger one (float64 reference)."""
    mids = (levels[1:] + levels[:-1]) / 2
    return levels[np.sum(x[:, None] >= mids[None, :], axis=1)]


def _pwlq_reference(x: np.ndarray, levels: np.ndarray, bits: int) -> np.ndarray:
    """Region first (|x| >= p: its tail), then the nearest level of that region."""
    n_tail = 2 ** (bits - 1)
    neg, centre, pos = levels[:n_tail], levels[n_tail:-n_tail], levels[-n_tail:]
    p = pos[0]
    return np.where(x >= p, _nearest_up(x, pos), np.where(x <= -p, _nearest_up(x, neg), _nearest_up(x, centre)))


# --- PWLQ ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('bits', [2, 3, 4])
@pytest.mark.parametrize('breakpoint', ['gaussian', 'search'])
def test_pwlq_weight_table_is_the_definition(bits, breakpoint):
    w = np.random.default_rng(bits).normal(size=(24, 8)).astype(np.float32)
    q = PWLQQuantizer(role='weight', bits=bits, breakpoint=breakpoint, name='d_kernel')
    d = q.describe(w)
    assert isinstance(d, IndexedFormat) and d.index_bits == bits + 1 and d.n_levels == 2 ** (bits + 1) - 1
    assert np.array_equal(d.quantize(w), _np(q(w)))  # describe == call
    lv = d.levels
    n_tail = 2 ** (bits - 1)
    p, m = lv[-n_tail], lv[-1]
    assert m == np.round(np.abs(w).max() / ULP) * ULP
    if breakpoint == 'gaussian':
        sigma = float(np.std(w))
        want = sigma * np.log(GAUSS_COEF * float(np.abs(w).max()) / sigma + GAUSS_OFFSET)
        assert abs(p - want) <= ULP
    centre = lv[n_tail:-n_tail]
    k = np.arange(-(2 ** (bits - 1) - 1), 2 ** (bits - 1))
    assert np.all(np.abs(centre - k * 2 * p / (2**bits - 1)) <= ULP / 2 + 1e-9)
    j = np.arange(n_tail)
    assert np.all(np.abs(lv[-n_tail:] - (p + j * (m - p) / (n_tail - 1))) <= ULP / 2 + 1e-9)
    assert np.array_equal(lv, -lv[::-1])  # symmetric
    x = _grid(-1.5 * m, 1.5 * m)
    assert np.array_equal(d.quantize(x), _pwlq_reference(x, lv, bits))


def test_pwlq_search_is_no_worse_than_gaussian_on_laplace_weights():
    w = np.random.default_rng(5).laplace(size=(64, 16)).astype(np.float32)
    err = {}
    for bp in ('gaussian', 'search'):
        q = PWLQQuantizer(role='weight', bits=3, breakpoint=bp)
        err[bp] = float(np.sum((_np(q(w)) - w) ** 2))
    assert err['search'] <= err['gaussian'] * 1.02, err


def test_pwlq_activation_search_on_the_histogram_beats_the_gaussian_fit_on_laplace_data():
    data = np.random.default_rng(6).laplace(size=(64, 32)).astype(np.float32)
    err = {}
    for bp in ('gaussian', 'search'):
        q = _calibrated(PWLQQuantizer(bits=3, breakpoint=bp), data)
        err[bp] = float(np.sum((q.describe().quantize(data) - data) ** 2))
    assert err['search'] <= err['gaussian'], err


@pytest.mark.parametrize('bits,breakpoint', [(2, 'gaussian'), (3, 'gaussian'), (3, 'search')])
def test_pwlq_activation_describe_equals_call_on_a_dense_grid(bits, breakpoint):
    data = np.random.default_rng(1).normal(size=(64, 10)) * 1.7
    q = _calibrated(PWLQQuantizer(bits=bits, breakpoint=breakpoint, name='a'), data)
    d = q.describe()
    m = d.levels[-1]
    assert m == np.round(np.abs(data.astype(np.float32)).max() / ULP) * ULP
    x = _grid(-4 * m, 4 * m)
    x = np.concatenate([x, x + 2.0**-12, [1e4, -1e4]])  # off-grid inputs and far beyond the range
    assert np.array_equal(_np(q(keras.ops.convert_to_tensor(x[:, None].astype(np.float32)))), d.quantize(x[:, None]))
    assert np.array_equal(d.quantize(_grid(-4 * m, 4 * m)), _pwlq_reference(_grid(-4 * m, 4 * m), d.levels, bits))


def test_degenerate_data_gives_valid_tables():
    for q in (PWLQQuantizer(role='weight', bits=3), AuGQQuantizer(role='weight', intervals=3, bits=2)):
        for w in (np.zeros((4, 3)), np.full((4, 3), 0.7)):
            d = q.describe(w.astype(np.float32))
            assert np.all(np.diff(d.levels) >= 0) and np.all(np.diff(d.thresholds) >= 0)
            assert np.array_equal(d.quantize(w), _np(q(w.astype(np.float32))))


# --- AuGQ ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('intervals,bits', [(1, 3), (3, 2), (4, 1), (5, 3)])
def test_augq_weight_table_is_the_definition(intervals, bits):
    w = np.random.default_rng(intervals).normal(size=(32, 6)).astype(np.float32)
    q = AuGQQuantizer(role='weight', intervals=intervals, bits=bits, name='d_kernel')
    d = q.describe(w)
    assert d.index_bits == int(np.ceil(np.log2(intervals))) + bits and d.n_levels == intervals * 2**bits
    assert np.array_equal(d.quantize(w), _np(q(w)))
    per = 2**bits
    lv = d.levels.reshape(intervals, per)
    edges = d.thresholds[per - 1::per]  # the threshold after each interval's midpoints
    lo, hi = lv[0, 0], lv[-1, -1]
    assert lo == np.round(w.min() / ULP) * ULP and hi == np.round(w.max() / ULP) * ULP
    assert np.all(np.abs(edges - (lo + np.arange(1, intervals) * (hi - lo) / intervals)) <= ULP / 2)
    member = np.sum(w.reshape(-1, 1) >= edges[None, :], axis=1)
    x = _grid(lo - 1, hi + 1)
    x_interval = np.sum(x[:, None] >= edges[None, :], axis=1)
    for k in range(intervals):
        inside = w.reshape(-1)[member == k]
        if inside.size:  # fitted to the min/max of the values inside, b-bit affine in between
            a, c = np.round(inside.min() / ULP) * ULP, np.round(inside.max() / ULP) * ULP
            assert lv[k, 0] == a and lv[k, -1] == c
            assert np.all(np.abs(lv[k] - (a + np.arange(per) * (c - a) / (per - 1))) <= ULP / 2)
        sel = x_interval == k
        assert np.array_equal(d.quantize(x[sel]), _nearest_up(x[sel], lv[k]))


def test_augq_activation_describe_equals_call_on_a_dense_grid():
    data = np.maximum(np.random.default_rng(2).normal(size=(64, 12)) * 2.0, 0.0)  # after a ReLU
    q = _calibrated(AuGQQuantizer(intervals=3, bits=2, name='a'), data)
    d = q.describe()
    assert d.levels[0] == 0.0 and d.levels[-1] == np.round(data.astype(np.float32).max() / ULP) * ULP
    x = _grid(-4, 4 * d.levels[-1])
    x = np.concatenate([x, x + 2.0**-12, [1e4, -1e4]])
    assert np.array_equal(_np(q(keras.ops.convert_to_tensor(x[:, None].astype(np.float32)))), d.quantize(x[:, None]))
    assert float(_np(q.bits())) == np.ceil(np.log2(np.round(d.levels[-1] / ULP) + 1))  # unsigned: no sign bit


def test_augq_calibration_in_batches_matches_one_batch_when_the_range_is_set_early():
    data = np.random.default_rng(3).normal(size=(64, 8))
    data[0, 0], data[0, 1] = 5.0, -5.0  # the first batch holds the extremes: the merge is exact
    one = _calibrated(AuGQQuantizer(intervals=4, bits=2), data).describe()
    q = AuGQQuantizer(intervals=4, bits=2)
    q.build((None, 8))
    q.calibrating = True
    for part in np.split(data.astype(np.float32), 4):
        q(keras.ops.convert_to_tensor(part))
    q.calibrating = False
    q.after_calibration()
    assert np.array_equal(q.describe().levels, one.levels)


def test_gradient_is_straight_through():
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    for q in (PWLQQuantizer(role='weight', bits=3), AuGQQuantizer(role='weight', intervals=2, bits=2),
              PWLQQuantizer(bits=2), AuGQQuantizer(intervals=3, bits=1)):
        g = training_step_gradients(q, x, lambda y: keras.ops.sum(y * 3.0))
        assert np.all(g.grad_x == 3.0)
        assert not q.trainable_weights  # nothing is learned: the tables follow the data
        if q.role == 'activation':  # the training call wrote its table from the tracked statistics
            assert float(_np(q.ready)) == 1.0 and np.any(_np(q.levels) != 0)


# --- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize('cls,kwargs,needle', [
    (AuGQQuantizer, {'intervals': 0}, 'intervals=0 must be an integer K >= 1'),
    (AuGQQuantizer, {'intervals': 2.5}, 'intervals=2.5'),
    (AuGQQuantizer, {'bits': 0}, r'bits=0 must be an integer in \[1, 8\]'),
    (AuGQQuantizer, {'bits': 9}, 'bits=9'),
    (AuGQQuantizer, {'intervals': 2**12, 'bits': 5}, '17-bit index'),
    (PWLQQuantizer, {'bits': 1}, r'bits=1 must be an integer in \[2, 8\]'),
    (PWLQQuantizer, {'breakpoint': 'laplace'}, "breakpoint='laplace' is not valid"),
    (PWLQQuantizer, {'level_frac_bits': 21}, 'level_frac_bits=21'),
])
def test_clear_errors_name_quantizer_and_argument(cls, kwargs, needle):
    with pytest.raises(ValueError, match=needle) as err:
        cls(**{'role': 'weight', **kwargs}, name='d_kernel')
    assert 'd_kernel' in str(err.value)


def test_layer_errors_name_layer_and_argument():
    with pytest.raises(ValueError, match='dense_x_kernel_quantizer: intervals=0'):
        L.QDense(4, name='dense_x', kernel_quantizer={'scheme': 'augq', 'intervals': 0})
    with pytest.raises(ValueError, match="dense_y_input_quantizer: breakpoint='laplace' is not valid"):
        L.QDense(4, name='dense_y', input_quantizer={'scheme': 'pwlq', 'breakpoint': 'laplace'})


def test_level_set_that_does_not_fit_is_refused():
    q = PWLQQuantizer(role='weight', bits=3, level_frac_bits=20, name='big_kernel')
    with pytest.raises(ValueError, match='big_kernel: the level set does not fit'):
        q.describe(np.array([[100.0, -3.0], [1.0, 2.0]], dtype=np.float32))


# --- models: save/load and every backend --------------------------------------------------------

def pwlq(bits=3, frac=F, **kw):
    return {'scheme': 'pwlq', 'bits': bits, 'level_frac_bits': frac, **kw}


def augq(intervals=3, bits=2, frac=F):
    return {'scheme': 'augq', 'intervals': intervals, 'bits': bits, 'level_frac_bits': frac}


def jets_mlp() -> keras.Model:
    """16-32-5. Coarse grids (F = 4) keep the products, and so the RTL build, small (80 kB of Verilog)."""
    inp = keras.Input((16,))
    x = L.QDense(32, activation='relu', input_quantizer=pwlq(3, frac=4), kernel_quantizer=augq(4, 2, frac=4))(inp)
    x = L.QDense(5, input_quantizer=augq(3, 2, frac=4), kernel_quantizer=pwlq(3, frac=4, breakpoint='search'))(x)
    return keras.Model(inp, x)


def small_cnn() -> keras.Model:
    inp = keras.Input((8, 8, 1))
    x = L.QConv2D(4, 3, strides=2, activation='relu', input_quantizer=augq(2, 3, frac=4),
                  kernel_quantizer=pwlq(2, frac=4))(inp)
    x = L.QFlatten()(x)
    x = L.QDense(5, input_quantizer=pwlq(3, frac=6, breakpoint='search'), kernel_quantizer=augq(2, 2, frac=4))(x)
    return keras.Model(inp, x)


def _ptq(model: keras.Model, x: np.ndarray) -> keras.Model:
    """One QAT epoch (exercises the training path), then PTQ calibration from 64 samples."""
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss='mse')
    model.fit(x[:1024], np.zeros((1024, 5)), epochs=1, batch_size=128, verbose=0)
    calibrate(model, x[:64])
    return model


SHAPES = {'mlp': (16,), 'cnn': (8, 8, 1)}
BUILDERS = {'mlp': jets_mlp, 'cnn': small_cnn}


@pytest.fixture(scope='module')
def trained() -> dict:
    """Each model trained and calibrated once, with its 20,000 test inputs, shared by the tests below."""
    out = {}
    for name, shape in SHAPES.items():
        keras.utils.set_random_seed(99)
        x = np.random.default_rng(7).normal(size=(20_000, *shape)).astype(np.float32)
        out[name] = (_ptq(BUILDERS[name](), x), x)
    return out


def test_save_load_round_trip(tmp_path: Path, trained: dict):
    model, x = trained['mlp']
    model.save(tmp_path / 'm.keras')
    loaded = keras.models.load_model(tmp_path / 'm.keras')
    x = x[:2000] * 3
    assert np.array_equal(_np(model(x, training=False)), _np(loaded(x, training=False)))
    q = loaded.layers[1].input_quantizer
    assert isinstance(q, PWLQQuantizer) and q.get_config()['bits'] == 3
    assert np.array_equal(q.describe().levels, model.layers[1].input_quantizer.describe().levels)
    assert np.array_equal(q.describe().thresholds, model.layers[1].input_quantizer.describe().thresholds)


@pytest.mark.parametrize('name', ['mlp', 'cnn'])
def test_keras_equals_emulator(trained: dict, name: str):
    """The part of the exactness check that depends on the Keras backend (runs on TensorFlow and JAX)."""
    model, x = trained[name]
    tables = [q for q in quantizers(model) if isinstance(q, (PWLQQuantizer, AuGQQuantizer))]
    assert len(tables) == 4
    for q in tables:  # calibration and training wrote real tables (an all-zero one would be trivially exact)
        levels = _np(q.levels)
        assert float(_np(q.ready)) == 1.0 and len(np.unique(levels)) > q.n_levels // 2, (q.name, levels)
    graph = ir.from_model(model)
    for scale in (1.0, 4.0):
        xs = np.round(x[:4000] * scale * 64) / 64  # on a grid every backend represents exactly
        want = np.asarray(ir.predict(graph, xs.astype(np.float64)), dtype=np.float64)
        assert int((_np(model.predict(xs, verbose=0, batch_size=4096)) != want).sum()) == 0


@pytest.mark.tensorflow_only  # hls4ml and Verilator do not depend on the Keras backend: built once, in the TF run
@pytest.mark.parametrize('name', ['mlp', 'cnn'])
def test_exact_on_every_backend(tmp_path: Path, trained: dict, name: str):
    require_tools()
    model, x = trained[name]
    counts = check_backends(model, x, tmp_path, name=f'pwlq_augq_{name}')
    print(name, counts)
    assert counts['outputs'] == 200_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
