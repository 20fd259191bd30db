"""Learned activation integer bits (`HGQQuantizer(trainable_i=True)`): gradients, init, serialization, exactness.

di <= 0 is an offset below the tracked range's integer bits: the EBOPs push it down (through the width), the loss
pulls it up where saturation clips values it wants larger, a fresh model starts at the range (di = 0), and the
exported format (range + di, the inference overflow mode) is what Keras, the emulator and the RTL compute.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from exactness import check_backends, require_tools
from gradients import training_step_gradients

import hgq.ir as ir
from hgq import layers as L
from hgq.quantizers.hgq_quantizer import HGQQuantizer
from hgq.training import calibrate


def _grad_of(step, name: str, added: bool = False) -> np.ndarray:
    grads = step.added_grads if added else step.grads
    for v, g in zip(step.variables, grads):
        if v.path.endswith('/' + name) or v.name == name:
            assert g is not None, f'no gradient path to {v.path}'
            return np.asarray(g)
    raise AssertionError(f'no trainable variable {name}: {[v.path for v in step.variables]}')


def test_ebops_pressure_pushes_di_down() -> None:
    layer = L.QDense(4, beta=1.0, input_quantizer=HGQQuantizer(trainable_i=True))
    x = np.random.default_rng(0).normal(0, 2, size=(256, 6))
    step = training_step_gradients(layer, x, lambda y: 0.0 * keras.ops.sum(y))
    g = _grad_of(step, 'di', added=True)
    assert g.shape == (6,)
    assert np.all(g > 0), g  # gradient descent lowers di: fewer integer bits, fewer EBOPs


def test_overflow_pulls_di_up_and_clips_in_training() -> None:
    q = HGQQuantizer(trainable_i=True, granularity='tensor', f_init=3)
    x = np.linspace(-5, 5, 100, dtype='float32')[:, None]  # no exact 0
    wants_larger = keras.ops.convert_to_tensor(np.sign(x))
    q.build(x.shape)
    q.di.assign(np.full(q.di.shape, -2.0))  # range needs i = 3; i = 1 clips to [-2, 2 - 2^-3]
    step = training_step_gradients(q, x, lambda y: -keras.ops.sum(y * wants_larger))  # wants larger |y|
    y = step.output.ravel()
    assert y.max() == 2 - 2**-3 and y.min() == -2
    assert float(_grad_of(step, 'di').ravel()[0]) < 0  # descent raises di
    gx = step.grad_x.ravel()
    assert np.all(gx[np.abs(x.ravel()) > 2.1] == 0) and np.all(gx[np.abs(x.ravel()) < 1.9] != 0)


def test_fresh_model_is_not_zeroed_and_equals_range_format() -> None:
    x = np.random.default_rng(1).normal(0, 3, size=(512, 5)).astype('float32')
    outs = []
    for trainable_i in (False, True):
        q = HGQQuantizer(trainable_i=trainable_i, f_init=2)
        outs.append(np.asarray(q(x, training=True)))
        assert np.count_nonzero(outs[-1]) > 0.9 * x.size
        fmt = q.describe()
        outs.append(fmt.i)
    assert np.array_equal(outs[0], outs[2]) and np.array_equal(outs[1], outs[3])


def test_weight_role_and_wrap_refuse_trainable_i() -> None:
    with pytest.raises(ValueError, match="trainable_i=True is for role='activation'"):
        HGQQuantizer(role='weight', trainable_i=True)
    with pytest.raises(ValueError, match='needs a saturating overflow_mode'):
        HGQQuantizer(trainable_i=True, overflow_mode='WRAP')


def test_di_stays_in_bounds_after_an_optimizer_step() -> None:
    q = HGQQuantizer(trainable_i=True)
    q.build((None, 3))
    q.di.assign(np.array([-40.0, 0.5, -1.0]))
    opt = keras.optimizers.SGD(0.0)  # no step: only the constraint acts
    opt.apply([keras.ops.zeros(v.shape) for v in q.trainable_variables], q.trainable_variables)
    assert np.asarray(q.di.value).tolist() == [-32.0, 0.0, -1.0]


def _model(trainable_i: bool = True) -> keras.Model:
    x = keras.Input((6,))
    y = L.QDense(8, input_quantizer=HGQQuantizer(trainable_i=trainable_i, f_init=2))(x)
    y = L.QActivation('relu', output_quantizer=HGQQuantizer(trainable_i=trainable_i, f_init=2))(y)
    y = L.QDense(3, input_quantizer=HGQQuantizer(trainable_i=trainable_i, f_init=1))(y)
    return keras.Model(x, y)


def _activation_quantizers(model: keras.Model) -> list[HGQQuantizer]:
    from hgq.training._walk import quantizers

    return [q for q in quantizers(model) if isinstance(q, HGQQuantizer) and q.trainable_i]


def test_serialization_round_trip(tmp_path: Path) -> None:
    model = _model()
    x = np.random.default_rng(0).normal(0, 2, size=(2000, 6)).astype('float32')
    calibrate(model, x)
    for n, q in enumerate(_activation_quantizers(model)):
        q.di.assign(-np.full(q.di.shape, float(n % 3)))
    model.save(tmp_path / 'm.keras')
    back = keras.models.load_model(tmp_path / 'm.keras')
    qs, qb = _activation_quantizers(model), _activation_quantizers(back)
    assert len(qs) == len(qb) == 3
    for a, b in zip(qs, qb):
        assert b.trainable_i and np.array_equal(np.asarray(a.di.value), np.asarray(b.di.value))
        fa, fb = a.describe(), b.describe()
        assert np.array_equal(fa.i, fb.i) and np.array_equal(fa.f, fb.f)
    assert np.array_equal(model.predict(x, verbose=0), back.predict(x, verbose=0))


def test_calibration_keeps_the_learned_offset() -> None:
    model = _model()
    x = np.random.default_rng(0).normal(0, 2, size=(2000, 6)).astype('float32')
    calibrate(model, x)
    q = _activation_quantizers(model)[0]
    before = q.describe().i.copy()
    q.di.assign(np.full(q.di.shape, -2.0))
    calibrate(model, x)
    assert np.array_equal(q.describe().i, before - 2)


def test_learned_i_model_exact_on_every_backend(tmp_path: Path) -> None:
    require_tools()
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, size=(4000, 6))
    calibrate(model, x.astype('float32'))
    for q in _activation_quantizers(model):
        q.di.assign(-rng.integers(0, 3, size=q.di.shape).astype('float32'))
    graph = ir.from_model(model)
    xs = x.astype('float32')
    # the offset is in the exported formats, and inputs beyond it saturate (x4 scale below)
    assert any(np.any(q.describe().i < q.describe().i - np.asarray(q.di.value)) for q in _activation_quantizers(model))
    assert np.array_equal(np.asarray(ir.predict(graph, xs)).ravel(), model.predict(xs, verbose=0).ravel())
    counts = check_backends(model, x, tmp_path, name='learned_i')
    print(counts)
    assert counts['outputs'] == 2 * 4000 * 3
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
