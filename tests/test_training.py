"""hgq.training: Pareto front and checkpoints, beta schedules, calibration, EBOPs logging, progress."""

import io
import json
import math
import os
import zipfile

import keras
import numpy as np
import pytest

import hgq.layers as L
from hgq.training import (
    BetaScheduler,
    BudgetController,
    Constant,
    EBOPsLogger,
    Linear,
    Log,
    ParetoCheckpoint,
    ParetoFront,
    Piecewise,
    PowerLawLUTs,
    ProgressBar,
    ResetRanges,
    calibrate,
    exact_ebops,
    next_beta,
    read_index,
    reset_ranges,
    resume_epoch,
    total_ebops,
)
from hgq.training._backend import variable_numpy

RNG = np.random.default_rng(7)
ACC_EBOPS = {'acc': 'max', 'ebops': 'min'}


def tiny_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, L.QDense(3)(inputs))


class Recorder(keras.callbacks.Callback):
    """Copies of the logs each later callback sees."""

    def __init__(self):
        super().__init__()
        self.batches, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


# ---------------------------------------------------------------- ParetoFront (no Keras)
def test_front_rejects_dominated_and_removes_what_new_points_dominate():
    front = ParetoFront(ACC_EBOPS)
    assert front.add('a', {'acc': 0.5, 'ebops': 100}) == (True, [])
    assert front.add('b', {'acc': 0.4, 'ebops': 120}) == (False, [])  # worse on both
    assert front.add('c', {'acc': 0.7, 'ebops': 300}) == (True, [])  # a trade-off
    assert front.add('d', {'acc': 0.6, 'ebops': 90, 'loss': 9.0}) == (True, ['a'])  # extra keys ignored
    assert front.add('e', {'acc': 0.8, 'ebops': 80}) == (True, ['c', 'd'])
    assert front.ids() == ['e']
    assert dict(front) == {'e': {'acc': 0.8, 'ebops': 80.0}}


def test_front_ties():
    front = ParetoFront(ACC_EBOPS)
    front.add('a', {'acc': 0.5, 'ebops': 100})
    assert front.add('same', {'acc': 0.5, 'ebops': 100}) == (False, [])  # equal everywhere: dominated
    assert front.add('worse', {'acc': 0.5, 'ebops': 101}) == (False, [])  # equal on one, worse on the other
    assert front.add('better', {'acc': 0.5, 'ebops': 99}) == (True, ['a'])  # equal on one, better on the other
    assert front.ids() == ['better']


def test_front_three_metrics():
    front = ParetoFront({'acc': 'max', 'ebops': 'min', 'latency': 'min'})
    assert front.add('a', {'acc': 0.9, 'ebops': 500, 'latency': 10})[0]
    assert front.add('b', {'acc': 0.8, 'ebops': 200, 'latency': 20})[0]
    assert front.add('c', {'acc': 0.8, 'ebops': 600, 'latency': 5})[0]  # only latency is better: kept
    assert front.add('d', {'acc': 0.85, 'ebops': 550, 'latency': 12}) == (False, [])  # a beats it on all three
    assert front.add('e', {'acc': 0.9, 'ebops': 200, 'latency': 5}) == (True, ['a', 'b', 'c'])


def test_front_matches_brute_force_with_ties():
    points = [tuple(int(v) for v in RNG.integers(0, 5, size=3)) for _ in range(60)]
    front = ParetoFront({'x': 'max', 'y': 'min', 'z': 'max'})
    for n, (x, y, z) in enumerate(points):
        front.add(str(n), {'x': x, 'y': y, 'z': z})

    def weakly_better(p, q):
        return p[0] >= q[0] and p[1] <= q[1] and p[2] >= q[2]

    expected = [str(n) for n, p in enumerate(points)
                if not any(weakly_better(q, p) and q != p for q in points) and p not in points[:n]]
    assert sorted(front.ids(), key=int) == expected


def test_front_bad_input():
    with pytest.raises(ValueError, match='direction'):
        ParetoFront({'acc': 'maximize'})
    front = ParetoFront(ACC_EBOPS)
    assert front.add('nan', {'acc': math.nan, 'ebops': 1}) == (False, [])
    assert front.add('inf', {'acc': 1.0, 'ebops': -math.inf}) == (False, [])
    with pytest.raises(KeyError, match='ebops'):
        front.add('x', {'acc': 0.5})
    front.add('a', {'acc': 0.5, 'ebops': 1})
    with pytest.raises(ValueError, match='already'):
        front.add('a', {'acc': 0.9, 'ebops': 0})


# ---------------------------------------------------------------- ParetoCheckpoint
# (val_accuracy, ebops) per epoch: dominated points, removals, a tie, a late point that beats everything.
SEQUENCE = [(0.50, 900), (0.55, 950), (0.45, 1000), (0.60, 700), (0.60, 700), (0.40, 300),
            (0.58, 800), (0.65, 650), (0.70, 640), (0.40, 300)]


def expected_front(sequence):
    keep = []
    for n, p in enumerate(sequence):
        beaten = any(q[0] >= p[0] and q[1] <= p[1] and (q != p or m < n) for m, q in enumerate(sequence) if m != n)
        if not beaten:
            keep.append(f'epoch-{n + 1:05d}.keras')
    return keep


def run_epochs(callback, epochs):
    for epoch in epochs:
        acc, ebops = SEQUENCE[epoch]
        callback.on_epoch_end(epoch, {'loss': 1.0 - acc, 'val_accuracy': acc, 'ebops': float(ebops)})


def on_disk(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith('.keras'))


def test_checkpoint_files_match_front(tmp_path):
    model = tiny_model()
    callback = ParetoCheckpoint(tmp_path)
    callback.set_model(model)
    run_epochs(callback, range(len(SEQUENCE)))
    expected = expected_front(SEQUENCE)
    assert expected == ['epoch-00006.keras', 'epoch-00009.keras']  # the sequence exercises removal
    assert on_disk(tmp_path) == expected
    index = read_index(tmp_path)
    assert index['last_epoch'] == len(SEQUENCE) == resume_epoch(tmp_path)
    assert [c['file'] for c in index['checkpoints']] == expected
    assert [c['epoch'] for c in index['checkpoints']] == [6, 9]
    assert index['checkpoints'][1]['metrics'] == {'val_accuracy': 0.70, 'ebops': 640.0}
    assert [os.path.basename(c['file']) for c in callback.checkpoints] == expected
    for name in expected:
        with zipfile.ZipFile(tmp_path / name) as archive:
            assert 'config.json' in archive.namelist()
    assert sorted(os.listdir(tmp_path)) == sorted(expected + ['pareto.json'])  # no temp files left
    loaded = keras.saving.load_model(tmp_path / expected[-1])
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    fresh = ParetoCheckpoint(tmp_path, overwrite=True)
    assert os.listdir(tmp_path) == [] and resume_epoch(tmp_path) == 0 and len(fresh.front) == 0


def test_interrupted_run_ends_like_an_uninterrupted_one(tmp_path):
    model = tiny_model()
    whole = ParetoCheckpoint(tmp_path / 'whole')
    whole.set_model(model)
    run_epochs(whole, range(len(SEQUENCE)))

    first = ParetoCheckpoint(tmp_path / 'cut')
    first.set_model(model)
    run_epochs(first, range(5))
    # A crash during epoch 6: a half-written temp file, and a checkpoint saved before the index was updated.
    (tmp_path / 'cut' / '.tmp-0123abcd.keras').write_bytes(b'partial')
    (tmp_path / 'cut' / 'epoch-00006.keras').write_bytes(b'not in the index')
    assert resume_epoch(tmp_path / 'cut') == 5

    second = ParetoCheckpoint(tmp_path / 'cut')
    assert not (tmp_path / 'cut' / '.tmp-0123abcd.keras').exists()
    assert not (tmp_path / 'cut' / 'epoch-00006.keras').exists()
    assert second.front.ids() == first.front.ids()
    second.set_model(model)
    with pytest.raises(ValueError, match='initial_epoch'):
        second.on_epoch_begin(0)  # fit without initial_epoch: refused before the epoch is trained
    with pytest.raises(ValueError, match='initial_epoch'):
        run_epochs(second, [3])  # re-running a recorded epoch would overwrite the front
    run_epochs(second, range(5, len(SEQUENCE)))

    assert on_disk(tmp_path / 'cut') == on_disk(tmp_path / 'whole') == expected_front(SEQUENCE)
    assert read_index(tmp_path / 'cut') == read_index(tmp_path / 'whole')


def test_checkpoint_failed_save_keeps_the_old_front(tmp_path, monkeypatch):
    model = tiny_model()
    callback = ParetoCheckpoint(tmp_path)
    callback.set_model(model)
    run_epochs(callback, [0])
    before = (tmp_path / 'pareto.json').read_text()

    written = []

    def broken_save(path, *args, **kwargs):
        written.append(os.fspath(path))
        with open(path, 'wb') as f:
            f.write(b'half a model')
        raise OSError('disk full')

    monkeypatch.setattr(model, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        run_epochs(callback, [3])  # dominates epoch 1, so it would replace it
    # Written to a temporary name in the same directory (so the rename is atomic), never to the final name.
    (path,) = written
    assert os.path.dirname(path) == str(tmp_path)
    assert os.path.basename(path).startswith('.tmp-') and path.endswith('.keras')
    assert sorted(os.listdir(tmp_path)) == ['epoch-00001.keras', 'pareto.json']
    assert (tmp_path / 'pareto.json').read_text() == before
    assert callback.front.ids() == ['epoch-00001.keras']
    monkeypatch.undo()
    run_epochs(callback, [3])
    assert on_disk(tmp_path) == ['epoch-00004.keras']


def test_checkpoint_missing_metric_and_metric_mismatch(tmp_path):
    callback = ParetoCheckpoint(tmp_path)
    callback.set_model(tiny_model())
    with pytest.raises(ValueError, match=r"'ebops'.*EBOPsLogger.*\['loss', 'val_accuracy'\]"):
        callback.on_epoch_end(0, {'loss': 0.3, 'val_accuracy': 0.9})
    assert not (tmp_path / 'pareto.json').exists()
    run_epochs(callback, [0])
    with pytest.raises(ValueError, match='same metrics'):
        ParetoCheckpoint(tmp_path, {'accuracy': 'max', 'ebops': 'min'})


# ---------------------------------------------------------------- schedules
def test_schedules_exact_values():
    assert [Constant(3e-5)(e) for e in (0, 1, 100)] == [3e-5] * 3
    assert [Linear(0.0, 1e-4, 4)(e) for e in range(7)] == pytest.approx(
        [0.0, 2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4, 1e-4], rel=1e-12, abs=0)
    assert [Linear(2.0, 1.0, 2)(e) for e in range(4)] == [2.0, 1.5, 1.0, 1.0]
    assert [Log(1e-6, 1e-4, 2)(e) for e in range(4)] == pytest.approx([1e-6, 1e-5, 1e-4, 1e-4], rel=1e-12, abs=0)
    piecewise = Piecewise([(0, Constant(0.0)), (3, Linear(1e-5, 3e-5, 2)), (6, Log(1e-5, 1e-3, 2))])
    assert [piecewise(e) for e in range(10)] == pytest.approx(
        [0, 0, 0, 1e-5, 2e-5, 3e-5, 1e-5, 1e-4, 1e-3, 1e-3], rel=1e-12, abs=0)


@pytest.mark.parametrize('make, match', [
    (lambda: Constant(-1e-6), 'non-negative'),
    (lambda: Linear(1e-5, -1e-5, 3), 'non-negative'),
    (lambda: Linear(0, 1, 0), 'epochs'),
    (lambda: Log(0.0, 1e-4, 3), 'positive'),
    (lambda: Log(1e-6, -1e-4, 3), 'positive'),
    (lambda: Piecewise([(0, Constant(0)), (5, Constant(1)), (3, Constant(2))]), 'increasing'),
    (lambda: Piecewise([(0, Constant(0)), (0, Constant(1))]), 'increasing'),
    (lambda: Piecewise([(2, Constant(0))]), 'epoch 0'),
    (lambda: Piecewise([]), 'at least one'),
])
def test_schedule_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_beta_scheduler_sets_every_layer():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.QDense(2)(L.QActivation('tanh')(L.QDense(3)(inputs))))
    callback = BetaScheduler(Linear(0.0, 1e-3, 4))
    callback.set_model(model)
    callback.on_epoch_begin(2)
    betas = [float(layer.beta) for layer in model.layers if isinstance(layer, L.QLayer)]
    assert betas == pytest.approx([5e-4] * 3, rel=1e-6)
    logs = {'loss': 1.0}
    callback.on_epoch_end(2, logs)
    assert logs['beta'] == pytest.approx(5e-4, rel=1e-12)
    with pytest.raises(ValueError, match='non-negative'):
        bad = BetaScheduler(lambda epoch: -1.0)
        bad.set_model(model)
        bad.on_epoch_begin(0)


def test_beta_scheduler_reaches_the_loss_in_fit():
    """With a zero learning rate nothing moves, so loss(beta=1) - loss(beta=0) is exactly the EBOPs term."""
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss='mse')
    x = RNG.normal(size=(16, 4)).astype('float32')
    y = np.zeros((16, 3), 'float32')
    schedule = Piecewise([(0, Constant(0.0)), (1, Constant(1.0)), (2, Constant(0.5))])
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[BetaScheduler(schedule), EBOPsLogger()])
    loss, ebops = history.history['loss'], history.history['ebops']
    assert history.history['beta'] == [0.0, 1.0, 0.5]
    assert ebops[0] > 0
    assert loss[1] - loss[0] == pytest.approx(ebops[1], rel=1e-5)
    assert loss[2] - loss[0] == pytest.approx(0.5 * ebops[2], rel=1e-5)
    assert float(model.layers[-1].beta) == 0.5


def test_budget_controller_step_moves_beta_toward_the_budget():
    assert next_beta(1e-5, 4000.0, 2000.0) > 1e-5  # over budget: push harder
    assert next_beta(1e-5, 1000.0, 2000.0) < 1e-5  # under budget: relax
    assert next_beta(1e-5, 2000.0, 2000.0) == pytest.approx(1e-5)
    assert next_beta(1e-5, 1e9, 1.0, max_step=2.0) == pytest.approx(2e-5)  # one step at most x2
    assert next_beta(1e-5, 0.0, 100.0, max_step=2.0) == pytest.approx(5e-6)  # all pruned: relax
    assert next_beta(1e-5, 3000.0, 2000.0, gain=1.0) == pytest.approx(1.5e-5)
    lut = PowerLawLUTs()
    assert lut.luts(10_000) > lut.luts(5_000) > 0


@pytest.mark.parametrize('budget_factor, direction', [(0.01, 1), (100.0, -1)])
def test_budget_controller_in_fit_moves_beta_and_logs(budget_factor, direction):
    """A budget far below the model's EBOPs raises beta every epoch; far above lowers it."""
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='mse')
    x = RNG.normal(size=(32, 4)).astype('float32')
    y = np.zeros((32, 3), 'float32')
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    budget = budget_factor * total_ebops(model)
    controller = BudgetController(budget, 'ebops', beta_start=1e-6, max_step=2.0)
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[controller])
    betas = history.history['beta']
    assert betas[0] == pytest.approx(1e-6)
    assert all(direction * (b - a) > 0 for a, b in zip(betas, betas[1:]))
    assert float(model.layers[-1].beta) == pytest.approx(betas[-1])
    assert history.history['budget_ratio'][0] == pytest.approx(history.history['budget_cost'][0] / budget)
    with pytest.raises(ValueError, match='budget=0 must be a finite number > 0'):
        BudgetController(0, 'luts')
    with pytest.raises(ValueError, match="budget unit 'lut': valid units: ebops, luts"):
        BudgetController(10, 'lut')


# ---------------------------------------------------------------- calibration
def calibration_model():
    inputs = keras.Input((6,))
    x = L.QQuantize(name='inq')(inputs)
    x = L.QDenseBatchNorm(5, name='dbn')(x)
    x = L.QBatchNormalization(name='bn')(x)
    return keras.Model(inputs, L.QDense(2, name='out')(x))


def state(model, skip_ranges=True):
    return {v.path: variable_numpy(v).copy() for v in model.variables
            if not (skip_ranges and v.path.endswith(('range_min', 'range_max')))}


def test_calibrate_sets_ranges_and_nothing_else():
    model = calibration_model()
    x = (RNG.normal(size=(48, 6)) * np.array([0.1, 1, 3, 10, 0.5, 2])).astype('float32')
    calibrate(model, x * 7 + 5, batch_size=16)  # stale ranges that calibration must forget
    for v in model.non_trainable_variables:  # state that a training-mode pass would move
        if not v.path.endswith(('range_min', 'range_max')):
            v.assign(RNG.uniform(0.5, 2.0, size=v.shape))
    before = state(model)
    calibrate(model, x, batch_size=16)  # ranges accumulate over 3 batches
    after = state(model)
    assert before.keys() == after.keys()
    assert any('moving_variance' in path for path in before) and any('ebops' in path for path in before)
    for path in before:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    quantizer = model.get_layer('inq').quantizer
    np.testing.assert_array_equal(variable_numpy(quantizer.range_min), x.min(axis=0))
    np.testing.assert_array_equal(variable_numpy(quantizer.range_max), x.max(axis=0))
    for name in ('dbn', 'bn', 'out'):
        q = model.get_layer(name).input_quantizer
        lo, hi = variable_numpy(q.range_min), variable_numpy(q.range_max)
        assert np.all(np.isfinite(lo)) and np.all(lo <= hi), name
    assert exact_ebops(model) > 0


def test_calibrate_multi_input_dict():
    a, b = keras.Input((3,), name='a'), keras.Input((2,), name='b')
    qa, qb = L.QQuantize(name='qa'), L.QQuantize(name='qb')
    model = keras.Model({'a': a, 'b': b}, L.QDense(1)(keras.layers.Concatenate()([qa(a), qb(b)])))
    data = {'a': RNG.normal(size=(9, 3)).astype('float32'), 'b': RNG.normal(size=(9, 2)).astype('float32')}
    calibrate(model, data, batch_size=4)
    for name, layer in (('a', qa), ('b', qb)):
        np.testing.assert_array_equal(variable_numpy(layer.quantizer.range_max),
                                      data[name].max(axis=0))


def test_calibrate_rejects_non_finite_data_and_changes_nothing_on_failure():
    model = calibration_model()
    x = RNG.normal(size=(20, 6)).astype('float32')
    calibrate(model, x)
    ranges = state(model, skip_ranges=False)
    for bad, match in ((math.nan, '3 NaN and 0 Inf'), (math.inf, '0 NaN and 3 Inf')):
        x_bad = x.copy()
        x_bad[[1, 4, 9], [0, 2, 5]] = bad
        with pytest.raises(ValueError, match=f'{match}.*must be finite'):
            calibrate(model, x_bad)
    with pytest.raises(Exception):  # noqa: B017 - the backend's own shape error, raised mid-calibration
        calibrate(model, np.zeros((20, 7), 'float32'))
    for path, value in state(model, skip_ranges=False).items():
        np.testing.assert_array_equal(value, ranges[path], err_msg=path)


def test_reset_ranges_and_callback():
    model = calibration_model()
    with pytest.raises(ValueError, match='calibrate'):
        exact_ebops(model)  # never observed: would count 0 bits
    calibrate(model, RNG.normal(size=(8, 6)).astype('float32'))
    quantizer = model.get_layer('inq').quantizer
    callback = ResetRanges(every_n_epochs=2)
    callback.set_model(model)
    callback.on_epoch_begin(1)
    assert np.all(np.isfinite(variable_numpy(quantizer.range_min)))
    callback.on_epoch_begin(2)
    assert np.all(variable_numpy(quantizer.range_min) == np.inf)
    assert np.all(variable_numpy(model.get_layer('out').input_quantizer.range_max) == -np.inf)
    assert reset_ranges(model) == 1 + 3 + 3 + 3  # QQuantize's own, and input/weight/bias (or scale/offset) of each
    with pytest.raises(ValueError, match='every_n_epochs'):
        ResetRanges(0)


# ---------------------------------------------------------------- EBOPs
def test_ebops_logger_writes_total_ebops():
    model = tiny_model()
    model.compile(optimizer='adam', loss='mse', metrics=['accuracy'])
    recorder = Recorder()
    x = RNG.normal(size=(32, 4)).astype('float32')
    history = model.fit(x, np.zeros((32, 3)), batch_size=16, epochs=2, verbose=0,
                        callbacks=[EBOPsLogger(batch_logs=True), recorder])
    assert len(recorder.batches) == 4 and all('ebops' in logs for logs in recorder.batches)
    assert recorder.epochs[-1]['ebops'] == total_ebops(model) == float(model.layers[-1].ebops) > 0
    assert history.history['ebops'] == [logs['ebops'] for logs in recorder.epochs]


def test_epoch_level_callbacks_leave_the_batch_loop_async():
    """Keras runs batch hooks asynchronously only when no callback overrides them (a ~30% step cost on JAX)."""
    from keras.src.callbacks.callback_list import CallbackList
    from keras.src.utils.python_utils import is_default

    quiet = [EBOPsLogger(), BetaScheduler(1e-5), ProgressBar(mode='overall', file=io.StringIO())]
    assert all(is_default(cb.on_train_batch_end) for cb in quiet)
    assert not is_default(EBOPsLogger(batch_logs=True).on_train_batch_end)
    assert not is_default(ProgressBar(mode='epoch', file=io.StringIO()).on_train_batch_end)
    if keras.backend.backend() == 'jax':  # the only thread-safe backend, where Keras dispatches asynchronously
        assert CallbackList(quiet, model=tiny_model())._async_train


def test_total_ebops_walks_nested_models():
    inner_inputs = keras.Input((4,))
    inner = keras.Model(inner_inputs, L.QDense(3, name='inner_dense')(inner_inputs), name='inner')
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.QDense(2, name='outer_dense')(inner(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss='mse')  # one training step that changes nothing
    model.fit(RNG.normal(size=(8, 4)).astype('float32'), np.zeros((8, 2)), batch_size=8, epochs=1, verbose=0)
    parts = [float(inner.get_layer('inner_dense').ebops), float(model.get_layer('outer_dense').ebops)]
    assert all(p > 0 for p in parts)
    assert total_ebops(model) == sum(parts)
    assert exact_ebops(model) == pytest.approx(sum(parts), rel=1e-6)


# ---------------------------------------------------------------- progress
def test_progress_bar():
    """Every display mode in one fit: a bar per epoch, a bar over epochs, and the plain-line fallback."""
    model = tiny_model()
    model.compile(optimizer='adam', loss='mse', metrics=['accuracy'])
    streams = {(mode, bar): io.StringIO() for mode in ('epoch', 'overall') for bar in (True, False)}
    bars = [ProgressBar(mode=mode, file=stream, bar=bar) for (mode, bar), stream in streams.items()]
    x = RNG.normal(size=(8, 4)).astype('float32')
    model.fit(x, np.zeros((8, 3)), batch_size=4, epochs=2, verbose=0, callbacks=[BetaScheduler(1e-6), *bars])
    for (mode, bar), stream in streams.items():
        text = stream.getvalue()
        assert all(key in text for key in ('loss=', 'accuracy=', 'ebops=', 'beta=1e-06')), (mode, bar, text)
        if bar:
            assert '\r' in text and ('epoch 2/2' in text if mode == 'epoch' else '2/2' in text), (mode, text)
        else:
            assert '\r' not in text and text.count('\n') == 2 and text.startswith('epoch 1/2 '), (mode, text)
    with pytest.raises(ValueError, match='mode'):
        ProgressBar(mode='batch')


def test_index_is_plain_json(tmp_path):
    callback = ParetoCheckpoint(tmp_path, {'loss': 'min'})
    callback.set_model(tiny_model())
    callback.on_epoch_end(0, {'loss': 0.25})
    with open(tmp_path / 'pareto.json') as f:
        data = json.load(f)
    assert data['metrics'] == {'loss': 'min'} and data['checkpoints'][0]['epoch'] == 1


def test_calibration_observes_inference_mode_activations():
    """Ranges after a batch-norm-folded layer are those of inference (moving statistics), not of batches."""
    from hgq.layers import QDense, QDenseBatchNorm

    rng = np.random.default_rng(3)
    model = keras.Sequential([keras.Input((6,)), QDenseBatchNorm(5, momentum=0.5, name='bn'), QDense(3, name='d')])
    model.compile(keras.optimizers.Adam(0.01), 'mse')
    x = (rng.normal(size=(256, 6)) * 3 + 2).astype('float32')
    model.fit(x, rng.normal(size=(256, 3)).astype('float32'), epochs=2, batch_size=32, verbose=0)
    calibrate(model, x)
    hidden = keras.ops.convert_to_numpy(keras.Model(model.inputs, model.get_layer('bn').output)(x, training=False))
    iq = model.get_layer('d').input_quantizer
    np.testing.assert_allclose(keras.ops.convert_to_numpy(iq.range_max), hidden.max(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(iq.range_min), hidden.min(axis=0), rtol=1e-5, atol=1e-6)
    assert not iq.calibrating
