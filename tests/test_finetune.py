"""Fine-tuning an imported QKeras model: `to_learnable` starts exactly at its formats, `hgq train --init` trains
it with learned bit-widths (EBOPs logged), and a bad --init file is one clear error."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from hgq.cli import main
from hgq.importers.learnable import LearnableConversionError, to_learnable
from hgq.importers.qkeras import import_qkeras
from hgq.quantizers.hgq_quantizer import FixedQuantizer, HGQQuantizer
from hgq.workflow import find_project

TOY = Path(__file__).parent / 'toy_project'


def _qkeras_h5(path: Path, weights: list[np.ndarray]) -> Path:
    """A legacy QKeras .h5 of the toy MLP 16-8-5 (8-bit inputs, weights and relu), written with h5py."""
    q = 'quantized_bits(8,2,alpha=1)'
    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 16]}},
              {'class_name': 'QActivation', 'config': {'name': 'qin', 'activation': 'quantized_bits(8,3,alpha=1)'}},
              {'class_name': 'QDense', 'config': {'name': 'd1', 'units': 8, 'activation': None,
                                                  'kernel_quantizer': q, 'bias_quantizer': q}},
              {'class_name': 'QActivation', 'config': {'name': 'r1', 'activation': 'quantized_relu(8,3)'}},
              {'class_name': 'QDense', 'config': {'name': 'd2', 'units': 5, 'activation': None,
                                                  'kernel_quantizer': q, 'bias_quantizer': q}}]
    with h5py.File(path, 'w') as h:
        h.attrs['model_config'] = json.dumps({'class_name': 'Functional', 'config': {'layers': layers}})
        g = h.create_group('model_weights')
        for name, (kernel, bias) in zip(('d1', 'd2'), (weights[:2], weights[2:])):
            lg = g.create_group(name)
            names = [f'{name}/kernel:0', f'{name}/bias:0']
            lg.attrs['weight_names'] = [n.encode() for n in names]
            for n, a in zip(names, (kernel, bias)):
                lg.create_dataset(n, data=a)
    return path


@pytest.fixture(scope='module')
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, keras.Model, object]:
    """An imported QKeras model of the toy project whose weights a float twin learned (a few seconds)."""
    project = find_project(TOY)
    config = project.config(None)
    data = project.load_data(config)
    keras.utils.set_random_seed(0)
    twin = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation='relu'), keras.layers.Dense(5)])
    twin.compile(keras.optimizers.Adam(0.03), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    twin.fit(data.x_train, data.y_train, epochs=15, batch_size=128, verbose=0)
    folder = tmp_path_factory.mktemp('qk')
    h5 = _qkeras_h5(folder / 'toy.h5', [np.asarray(w) for w in twin.get_weights()])
    out = folder / 'toy_imported.keras'
    assert main(['import-qkeras', str(h5), str(out)]) == 0
    return out, import_qkeras(h5), data


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(np.asarray(model.predict(x, verbose=0)), axis=1) == y))


def test_learnable_model_starts_exactly_at_the_imported_one(imported) -> None:
    _, model, data = imported
    learnable = to_learnable(model)
    x = np.concatenate([data.x_val, data.x_val * 4])  # x4: the fixed formats saturate
    assert int(np.sum(np.asarray(learnable(x)) != np.asarray(model(x)))) == 0
    fixed = {q.name: q for layer in model.layers if hasattr(layer, 'quantizers') for q in layer.quantizers().values()}
    n = rnd_conv = 0
    for layer in learnable.layers:
        for q in (layer.quantizers() if hasattr(layer, 'quantizers') else {}).values():
            assert isinstance(q, HGQQuantizer) and q.trainable_f, q.name
            old = fixed[q.name]
            assert isinstance(old, FixedQuantizer)
            values = np.asarray(layer.kernel if 'kernel' in q.name else layer.bias) if q.role == 'weight' else None
            fmt = q.fixed_format(values)
            assert np.all(fmt.f == old.f) and fmt.round_mode == old.round_mode, q.name
            assert fmt.overflow_mode in (old.overflow_mode, 'WRAP'), q.name
            if q.role == 'activation':  # weights: k, i from their values, at most the fixed ones
                assert np.all(fmt.k == old.k) and np.all(fmt.i == old.i), q.name
            else:
                assert np.all(fmt.k + fmt.i <= old.k + old.i), q.name
            n += 1
            rnd_conv += fmt.round_mode == 'RND_CONV'
    assert n == 8
    assert rnd_conv > 0  # QKeras' own quantizers round half to even; the importer's identity casts use TRN
    assert _accuracy(learnable, data.x_test, data.y_test) > 0.4  # 5 classes: chance is 0.2
    with pytest.raises(LearnableConversionError, match='no FixedQuantizer'):
        to_learnable(learnable)


def test_train_init_fine_tunes_the_imported_model(imported, tmp_path: Path, capsys) -> None:
    path, model, data = imported
    start_accuracy = _accuracy(model, data.x_test, data.y_test)
    out = tmp_path / 'ft'
    assert main(['train', str(TOY), '--init', str(path), '--out', str(out), '--epochs', '2']) == 0
    assert 'fixed formats become learnable' in capsys.readouterr().out
    run = json.loads((out / 'run.json').read_text())
    assert run['init'] == str(path.resolve())
    history = (out / 'history.csv').read_text().splitlines()
    assert len(history) == 3 and 'ebops' in history[0]
    from hgq.workflow.files import load_checkpoint

    tuned = load_checkpoint(out / 'last.keras')
    qs = [q for layer in tuned.layers if hasattr(layer, 'quantizers') for q in layer.quantizers().values()]
    assert qs and all(isinstance(q, HGQQuantizer) for q in qs)
    start_f = np.concatenate([np.full(np.size(q.f), 8.0) for q in qs if q.role == 'weight'])
    tuned_f = np.concatenate([np.asarray(q.f).ravel() for q in qs if q.role == 'weight'])
    assert np.any(tuned_f != start_f)  # the weight bits are learned
    assert abs(_accuracy(tuned, data.x_test, data.y_test) - start_accuracy) < 0.15
    # the same run folder with another --init is refused, not mixed in
    assert main(['train', str(TOY), '--out', str(out), '--epochs', '2']) == 2
    assert '--init' in capsys.readouterr().err


def test_bad_init_files_are_one_clear_error(tmp_path: Path, capsys) -> None:
    junk = tmp_path / 'junk.keras'
    junk.write_text('not a model')
    plain = tmp_path / 'plain.keras'
    keras.Sequential([keras.Input((16,)), keras.layers.Dense(5)]).save(plain)
    h5 = tmp_path / 'model.h5'
    h5.write_text('a QKeras file, not imported yet')
    nozip = tmp_path / 'empty.keras'
    with zipfile.ZipFile(nozip, 'w') as z:
        z.writestr('other.txt', '')
    cases = [(tmp_path / 'missing.keras', 'does not exist'), (junk, 'not a zip archive'),
             (nozip, 'without config.json'), (h5, "suffix '.h5'"),
             (plain, 'has no hgq quantized layers')]
    for path, match in cases:
        assert main(['train', str(TOY), '--init', str(path), '--out', str(tmp_path / 'r')]) == 2, path
        err = capsys.readouterr().err
        assert match in err and str(path) in err, err
