"""PTQ (hgq.workflow.ptq, `hgq ptq`): a trained float model becomes an exact, calibrated hgq model.

A float MLP (Dense, BatchNormalization, ReLU, Dropout) trained a few epochs on the toy jets task and a small
CNN (Conv2D + BatchNormalization folded, ReLU, MaxPooling2D, Flatten) trained on toy images (which quadrant
holds a bright 2x2 blob) are quantized from 64 calibration samples and checked: accuracy close to the float
model, Keras == emulator == hls4ml C-sim == Verilator with `==` on 100,000 outputs per input scale (×1 and ×4),
QAT fine-tuning, clear errors, the CLI.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from exactness import check_backends, require_tools

import hgq.ir as ir
from hgq import layers as L
from hgq.cli import main
from hgq.data.toy import make_toy_jets
from hgq.workflow.ptq import PTQError, quantize_model

LSQ4 = {'scheme': 'lsq', 'bits': 4}
POST4 = {'scheme': 'post', 'bits': 4}
# 4-bit PTQ of these toy models loses about 0.02-0.03 accuracy (measured: MLP 0.520 float, 0.488 lsq4; CNN 0.978
# float, 0.963 post4/lsq4); 0.08 is loose, but far tighter than what broken weights or ranges give (chance 0.2/0.25)
ACCURACY_LOSS = 0.08


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """6x6 noise images with a +1.5 2x2 blob somewhere in quadrant y (4 classes)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.5, size=(n, 6, 6, 1)).astype('float32')
    r, c = 3 * (y // 2) + rng.integers(0, 2, n), 3 * (y % 2) + rng.integers(0, 2, n)
    for dr in (0, 1):
        for dc in (0, 1):
            x[np.arange(n), r + dr, c + dc, 0] += 1.5
    return x, y


@pytest.fixture(scope='module')
def jets() -> dict[str, np.ndarray]:
    x, y = make_toy_jets(8000, seed=0)
    xt, yt = make_toy_jets(20_000, seed=1)
    return {'x': x, 'y': y, 'xt': xt, 'yt': yt}


def _fit(model: keras.Model, x: np.ndarray, y: np.ndarray, epochs: int = 3) -> keras.Model:
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=256, verbose=0)
    return model


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0, batch_size=4096), axis=1) == y))


@pytest.fixture(scope='module')
def float_mlp(jets: dict[str, np.ndarray]) -> keras.Model:
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name='d1'),
                              keras.layers.BatchNormalization(name='bn1'), keras.layers.Activation('relu', name='a1'),
                              keras.layers.Dropout(0.1), keras.layers.Dense(16, activation='relu', name='d2'),
                              keras.layers.Dense(5, name='out')], name='float_mlp')
    return _fit(model, jets['x'], jets['y'])


@pytest.fixture(scope='module')
def images() -> dict[str, np.ndarray]:
    x, y = blobs(8000, 0)
    xt, yt = blobs(25_000, 1)  # 4 outputs each: 100,000 outputs per input scale
    return {'x': x, 'y': y, 'xt': xt, 'yt': yt}


@pytest.fixture(scope='module')
def float_cnn(images: dict[str, np.ndarray]) -> keras.Model:
    keras.utils.set_random_seed(8)
    inp = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, name='c1')(inp)
    x = keras.layers.BatchNormalization(name='bn1')(x)
    x = keras.layers.ReLU(name='r1')(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(4, name='out')(x), name='float_cnn')
    return _fit(model, images['x'], images['y'])


@pytest.fixture(scope='module')
def ptq_mlp(float_mlp: keras.Model, jets: dict[str, np.ndarray]) -> keras.Model:
    return quantize_model(float_mlp, weights=LSQ4, activations=LSQ4, calibration=jets['x'][:64])


def test_mlp_lsq_close_to_float_and_exact(float_mlp, ptq_mlp, jets, tmp_path) -> None:
    kinds = [type(layer).__name__ for layer in ptq_mlp.layers[1:]]
    assert kinds == ['QDenseBatchNorm', 'QActivation', 'Dropout', 'QDense', 'QDense'], kinds  # BN folded
    # after a ReLU the LSQ activations are unsigned (one more level for the same bits); the input stays signed
    assert [ptq_mlp.get_layer(n).input_quantizer.signed for n in ('d1', 'd2', 'out')] == [True, False, False]
    f_acc, q_acc = _accuracy(float_mlp, jets['xt'], jets['yt']), _accuracy(ptq_mlp, jets['xt'], jets['yt'])
    print(f'float {f_acc:.4f}, PTQ lsq4 {q_acc:.4f}')
    assert f_acc > 0.45 and q_acc > f_acc - ACCURACY_LOSS
    require_tools()
    counts = check_backends(ptq_mlp, jets['xt'], tmp_path)
    print(counts)
    assert counts['outputs'] == 2 * 100_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts


def test_cnn_post_weights_lsq_activations_close_to_float_exact_and_fine_tunes(float_cnn, images, tmp_path) -> None:
    x, y, xt, yt = images['x'], images['y'], images['xt'], images['yt']
    model = quantize_model(float_cnn, weights=POST4, activations=LSQ4, calibration=x[:64])
    assert [type(layer).__name__ for layer in model.layers[1:]] == ['QConv2DBatchNorm', 'QActivation', 'QMaxPooling2D',
                                                                'QFlatten', 'QDense']
    f_acc, q_acc = _accuracy(float_cnn, xt, yt), _accuracy(model, xt, yt)
    print(f'float {f_acc:.4f}, PTQ post4/lsq4 {q_acc:.4f}')
    assert f_acc > 0.9 and q_acc > f_acc - ACCURACY_LOSS
    require_tools()
    counts = check_backends(model, xt, tmp_path)
    print(counts)
    assert counts['outputs'] == 2 * 100_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
    # QAT from the PTQ model: the loss falls, and the fine-tuned model is still exact
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y, verbose=0, batch_size=4096)
    model.fit(x, y, epochs=1, batch_size=256, verbose=0)
    after = model.evaluate(x, y, verbose=0, batch_size=4096)
    assert after < before, (before, after)
    graph = ir.from_model(model)
    want = ir.predict(graph, xt[:4000].astype(np.float64))
    assert int((model.predict(xt[:4000], verbose=0) != want).sum()) == 0


def test_batch_norm_fold_matches_float_at_high_precision(float_mlp, float_cnn, jets, images) -> None:
    """With wide HGQ formats the PTQ model equals the float one up to rounding: the fold (μ − bias) is right."""
    wide_w, wide_a = {'f_init': 14}, {'f_init': 12}
    for model, x in ((float_mlp, jets['x'][:512]), (float_cnn, images['x'][:512])):
        q = quantize_model(model, weights=wide_w, activations=wide_a, calibration=x)  # no input beyond its ranges
        diff = np.abs(model.predict(x, verbose=0) - q.predict(x, verbose=0)).max()
        assert diff < 2e-2, (model.name, diff)


def test_every_mapped_layer_keras_equals_emulator() -> None:
    """Conv1D, standalone BatchNormalization (after a ReLU: no fold), pooling 1-D, Reshape, Add, Concatenate,
    a model input straight into Add/MaxPooling (a QQuantize goes first), Activation('linear')."""
    inp = keras.Input((8, 2))
    a = keras.layers.Conv1D(3, 3, padding='same', activation='relu', name='c1')(inp)
    a = keras.layers.BatchNormalization(name='bn')(a)
    b = keras.layers.Conv1D(3, 1, name='c2')(inp)
    s = keras.layers.Add(name='add')([a, b])
    m = keras.layers.MaxPooling1D(2, name='mp')(inp)
    p = keras.layers.AveragePooling1D(2, name='ap')(keras.layers.ReLU(name='r')(s))
    c = keras.layers.Concatenate(name='cat')([keras.layers.Reshape((8,))(m), keras.layers.Flatten()(p)])
    out = keras.layers.Dense(4, name='out')(keras.layers.Activation('linear')(c))
    x = np.random.default_rng(3).normal(size=(2000, 8, 2)).astype('float32')
    model = quantize_model(keras.Model(inp, out), weights=LSQ4, activations={'scheme': 'lsq', 'bits': 6},
                           calibration=x[:64])
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    assert kinds['bn'] == 'QBatchNormalization' and kinds['mp_quantize'] == 'QQuantize' and kinds['ap'] == \
        'QAveragePooling1D' and 'c2' in kinds and kinds['cat'] == 'QConcatenate', kinds
    assert model.get_layer('ap').output_quantizer.signed is False  # the mean of ReLU outputs is >= 0
    want = ir.predict(ir.from_model(model), x.astype(np.float64) * 4)
    assert int((model.predict(x * 4, verbose=0) != want).sum()) == 0


def test_unsupported_layers_and_bad_arguments_are_named(jets) -> None:
    x = jets['x'][:64]
    ln = keras.Sequential([keras.Input((16,)), keras.layers.LayerNormalization(name='ln'), keras.layers.Dense(5)])
    with pytest.raises(PTQError, match=r"layer 'ln' \(LayerNormalization\) is not supported; supported layers: "
                                       r"InputLayer, Dense, Conv1D"):
        quantize_model(ln, calibration=x)
    tanh = keras.Sequential([keras.Input((16,)), keras.layers.Dense(5, activation='tanh', name='t')])
    with pytest.raises(PTQError, match=r"layer 't' \(Dense\) has activation='tanh'; only relu and linear"):
        quantize_model(tanh, calibration=x)
    plain = keras.Sequential([keras.Input((16,)), keras.layers.Dense(5, name='d')])
    with pytest.raises(PTQError, match=r"overrides name layers the model does not have: \['nope'\]"):
        quantize_model(plain, calibration=x, overrides={'nope': {'kernel_quantizer': LSQ4}})
    with pytest.raises(PTQError, match=r"unknown slots \['kernel'\]"):
        quantize_model(plain, calibration=x, overrides={'d': {'kernel': LSQ4}})
    with pytest.raises(ValueError, match=r'd_input_quantizer: scheme "post" quantizes weights only'):
        quantize_model(plain, activations=POST4, calibration=x)
    with pytest.raises(PTQError, match='calibration samples are required'):
        quantize_model(plain)
    q = quantize_model(plain, weights=LSQ4, calibration=x, overrides={'d': {'kernel_quantizer': POST4}})
    assert type(q.get_layer('d').kernel_quantizer).__name__ == 'POSTQuantizer'
    assert type(q.get_layer('d').bias_quantizer).__name__ == 'LSQQuantizer'
    assert isinstance(q.get_layer('d'), L.QDense)


def test_cli_round_trip_equals_the_library(float_mlp, ptq_mlp, jets, tmp_path, capsys) -> None:
    src, calib, out = tmp_path / 'float.keras', tmp_path / 'calib.npy', tmp_path / 'ptq.keras'
    float_mlp.save(src)
    np.save(calib, jets['x'][:1000])  # the CLI takes the first --samples 64 of them
    rc = main(['ptq', str(src), str(out), '--calibration', str(calib), '--scheme', 'lsq', '--bits', '4',
               '--weight-scheme', 'lsq', '--weight-bits', '4'])
    assert rc == 0, capsys.readouterr().err
    assert 'wrote' in capsys.readouterr().out
    loaded = keras.models.load_model(out)
    xt = jets['xt'][:4000]
    assert int((loaded.predict(xt, verbose=0) != ptq_mlp.predict(xt, verbose=0)).sum()) == 0
    assert main(['ptq', str(tmp_path / 'nope.keras'), str(out), '--calibration', str(calib)]) == 2
    assert 'nope.keras' in capsys.readouterr().err
    assert main(['ptq', str(src), str(out), '--calibration', str(calib), '--bits', '4']) == 2
    assert 'scheme "hgq" learns its bit-widths' in capsys.readouterr().err
    assert main(['ptq', str(src), str(tmp_path / 'x.h5'), '--calibration', str(calib)]) == 2
    assert 'must end with .keras' in capsys.readouterr().err
    assert main(['ptq', str(src), str(out), '--calibration', str(calib), '--scheme', 'nope']) == 2
    assert "scheme 'nope' is not known" in capsys.readouterr().err
