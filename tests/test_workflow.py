"""hgq train / hgq report on a tiny project: configs and their errors, data checks, resuming, the report."""

import json
import os
import shutil
from pathlib import Path

import pytest

from hgq.cli import main
from hgq.layers.overflow import activation_overflow_modes
from hgq.workflow import ConfigError, find_project, train
from hgq.workflow.config import QUANTIZERS, resolve
from hgq.workflow.files import load_checkpoint
from hgq.workflow.report import choose
from hgq.workflow.train import read_run

TOY = Path(__file__).parent / 'toy_project'
PROJECTS = Path(__file__).parents[1] / 'projects'


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------- configs
def test_config_defaults_and_overrides():
    config = resolve({'training': {'epochs': 7, 'beta': 1e-5}, 'model': {'hidden': 3}}, {'n': 1}, {'hidden': 8})
    assert config['training']['epochs'] == 7
    assert config['training']['beta'] == {'schedule': 'constant', 'value': 1e-5}
    assert config['training']['batch_size'] == 1024  # a default filled in
    assert config['model'] == {'hidden': 3} and config['data'] == {'n': 1}


def test_config_target_replaces_the_beta_schedule():
    config = resolve({'training': {'target': {'luts': 2000, 'gain': 0.3}}}, {'n': 1}, {'hidden': 8})
    assert config['training']['target'] == {'luts': 2000, 'gain': 0.3}
    assert resolve({}, {'n': 1}, {'hidden': 8})['training']['target'] is None


@pytest.mark.parametrize('given, match', [
    ({'trainig': {}}, r"unknown key 'trainig'; valid keys: data, model, quantizers, synth, training"),
    ({'training': {'epoch': 3}}, r"training: unknown key 'epoch'; valid keys: batch_size, beta, cost, epochs"),
    ({'model': {'hiden': 3}}, r"model: unknown key 'hiden'; valid keys: hidden"),
    ({'training': {'epochs': 0}}, r'training.epochs = 0: expected an integer >= 1'),
    ({'training': {'beta': {'schedule': 'cubic'}}}, r'schedule one of constant, linear, log'),
    ({'training': {'beta': {'schedule': 'log', 'start': 1e-7}}}, r'the log schedule needs start, end'),
    ({'training': {'beta': {'schedule': 'log', 'start': -1, 'end': 1}}}, r'beta.start = -1: expected a finite'),
    ({'training': {'optimizer': {'learning_rate': 0.1}}}, r'optimizer must be a mapping with a "name"'),
    ({'training': {'lr_schedule': 'step'}}, r'lr_schedule .* valid values: constant, cosine'),
    ({'synth': {'clock_ns': 0}}, r'synth.clock_ns = 0'),
    ({'training': {'target': 2000}}, r'training.target = 2000: expected a mapping with one of ebops, luts'),
    ({'training': {'target': {'lut': 2000}}}, r"training.target: unknown key 'lut'; valid keys: beta_start, ebops"),
    ({'training': {'target': {'luts': 2000, 'ebops': 10}}}, r'give exactly one budget, ebops or luts'),
    ({'training': {'target': {'luts': -5}}}, r'training.target.luts = -5: expected a finite number > 0'),
    ({'training': {'target': {'ebops': 5000, 'gain': 0}}}, r'training.target.gain = 0'),
    ({'training': {'target': {'luts': 900, 'mode': 'pid'}}}, r"training.target.mode = 'pid': valid modes: rate, "),
    ({'training': {'target': {'luts': 900, 'max_rate': 0}}}, r'training.target.max_rate = 0'),
    ({'training': {'target': {'luts': 2000}, 'beta': 1e-5}}, r'either target .* or beta .*, not both'),
])
def test_config_errors_name_the_key(given, match):
    with pytest.raises(ConfigError, match=match):
        resolve(given, {'n': 1}, {'hidden': 8})


def test_config_file_errors_name_the_file(tmp_path):
    project = find_project(TOY)
    with pytest.raises(ConfigError, match='does not exist'):
        project.config(tmp_path / 'nope.yaml')
    with pytest.raises(ConfigError, match='bad.yaml.*not valid YAML'):
        project.config(_write(tmp_path / 'bad.yaml', 'training: {epochs: [\n'))
    with pytest.raises(ConfigError, match="list.yaml.*must hold a mapping"):
        project.config(_write(tmp_path / 'list.yaml', '- 1\n- 2\n'))


def test_missing_project_lists_the_available_ones(tmp_path, capsys):
    assert main(['train', 'no_such_project', '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no project 'no_such_project'" in err and 'jets' in err and 'fashion_mnist' in err


def test_shipped_project_configs_are_valid():
    for name in ('jets', 'fashion_mnist'):
        config = find_project(name).config()
        assert config['training']['epochs'] >= 1
        assert find_project(PROJECTS / name).directory == (PROJECTS / name).resolve()


# ------------------------------------------------------------------------------------------- data checks
@pytest.mark.parametrize('poison, match', [
    ('nan', r'toy data: x_(train|val|test) has 1 NaN/Inf values \(first in sample \d+\); clean or drop'),
    ('shape', r'samples have shape \(12,\), the model takes \(16,\)'),
    ('labels', r'labels in \[0, 7\]; valid: 0..4'),
])
def test_bad_data_is_refused_with_a_clear_error(tmp_path, poison, match):
    project = find_project(TOY)
    config = project.config()
    config['data']['poison'] = poison
    data = project.load_data(config)
    with pytest.raises(ValueError, match=match):
        train(project, config, tmp_path / 'run', data=data)


# ------------------------------------------------------------------------------------------- train, resume, report
@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('run') / 'toy'
    assert main(['train', str(TOY), '--out', str(out)]) == 0
    return out


def test_train_writes_a_resumable_run(run_dir, capsys):
    run = read_run(run_dir)
    assert run['project'] == 'toy_project' and run['config']['training']['epochs'] == 4
    assert json.loads((run_dir / 'float.json').read_text())['test_accuracy'] > 0.4  # 5 classes: chance is 0.2
    index = json.loads((run_dir / 'checkpoints' / 'pareto.json').read_text())
    assert index['last_epoch'] == 4 and index['checkpoints']
    for entry in index['checkpoints']:
        assert (run_dir / 'checkpoints' / entry['file']).is_file()
    assert json.loads((run_dir / 'last.json').read_text()) == {'epochs': 4}
    # the default activation overflow policy (config quantizers.activation_overflow) is in every checkpoint
    entry = index['checkpoints'][0]
    modes = activation_overflow_modes(load_checkpoint(run_dir / 'checkpoints' / entry['file']))
    assert modes and set(modes.values()) == {QUANTIZERS['activation_overflow']}
    history = (run_dir / 'history.csv').read_text().splitlines()
    assert len(history) == 5 and 'ebops' in history[0] and 'beta' in history[0]
    # a finished run is not retrained; a changed config is refused, not mixed in
    assert main(['train', str(TOY), '--out', str(run_dir)]) == 0
    assert 'all 4 epochs are done' in capsys.readouterr().out
    assert main(['train', str(TOY), '--out', str(run_dir), '--epochs', '5']) == 2
    assert 'another config' in capsys.readouterr().err


def test_interrupted_run_resumes_after_the_last_saved_epoch(tmp_path, capsys, monkeypatch):
    import hgq.training

    project = find_project(TOY)
    config = project.config()
    config['training']['float_epochs'] = 0

    class Interrupt(Exception):
        pass

    class CrashAfterEpoch2(hgq.training.ParetoCheckpoint):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if epoch == 1:
                raise Interrupt  # as if the machine went down after epoch 2 was written

    with monkeypatch.context() as patch:
        patch.setattr(hgq.training, 'ParetoCheckpoint', CrashAfterEpoch2)
        with pytest.raises(Interrupt):
            train(project, config, tmp_path / 'run')
    assert json.loads((tmp_path / 'run' / 'last.json').read_text()) == {'epochs': 2}
    capsys.readouterr()
    index = train(project, config, tmp_path / 'run')
    assert 'resuming' in capsys.readouterr().out
    assert index['last_epoch'] == 4
    epochs = [int(line.split(',')[0]) for line in (tmp_path / 'run' / 'history.csv').read_text().splitlines()[1:]]
    assert epochs == [0, 1, 2, 3]  # each epoch once: 2 before the crash, 2 after


def test_choose_prefers_the_cheapest_within_tolerance():
    rows = [{'epoch': 1, 'val_accuracy': 0.80, 'exact_ebops': 900.0},
            {'epoch': 2, 'val_accuracy': 0.795, 'exact_ebops': 400.0},
            {'epoch': 3, 'val_accuracy': 0.70, 'exact_ebops': 100.0}]
    assert choose(rows, 0.01)['epoch'] == 2
    assert choose(rows, 0.0)['epoch'] == 1
    assert choose(rows, 0.01, epoch=3)['epoch'] == 3
    with pytest.raises(ConfigError, match=r'choose one of \[1, 2, 3\]'):
        choose(rows, 0.01, epoch=7)


def test_report_with_synthesis(run_dir, capsys):
    needs = {'g++': shutil.which('g++'), 'yosys': shutil.which('yosys')}
    missing = [k for k, v in needs.items() if v is None]
    if missing:
        if os.environ.get('CI') == 'true':
            pytest.fail(f'{missing} required in CI: apt-get install -y g++ yosys')
        pytest.skip(f'{missing} not installed')
    assert main(['report', str(run_dir), '--synth', '1']) == 0
    out = capsys.readouterr().out
    report = json.loads((run_dir / 'report' / 'report.json').read_text())
    for name in ('pareto.png', 'bitwidths.png', 'weight_bits.png', 'history.png', 'report.md'):
        assert (run_dir / 'report' / name).stat().st_size > 1000
    rows = report['front']
    assert len(rows) == len(json.loads((run_dir / 'checkpoints' / 'pareto.json').read_text())['checkpoints'])
    synthesized = [r for r in rows if 'LUT' in r]
    assert len(synthesized) == 1 and synthesized[0]['epoch'] == report['chosen']['epoch']
    assert synthesized[0]['LUT'] > 0 and synthesized[0]['mismatches'] == 0 and synthesized[0]['checked_outputs'] > 0
    for r in rows:
        assert 0.0 <= r['test_accuracy'] <= 1.0 and r['exact_ebops'] > 0
    assert f'chosen: epoch {report["chosen"]["epoch"]}' in out
    calibrated = Path(report['chosen']['calibrated_file'])
    assert calibrated.is_file() and calibrated.parent == run_dir / 'report'
    assert main(['export', str(calibrated), '--to', 'hls4ml', str(run_dir / 'hls'), '--check', '500']) == 0
    assert '0 mismatches in 2500 outputs' in capsys.readouterr().out
    assert main(['report', str(run_dir.parent / 'nope')]) == 2
    assert 'not an hgq training run' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- Fashion-MNIST
def test_fashion_mnist_reads_the_real_images():
    if not Path('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz').is_file():
        if os.environ.get('CI') == 'true':
            pytest.fail('Fashion-MNIST is required in CI: apt-get install -y dataset-fashion-mnist')
        pytest.skip('apt-get install dataset-fashion-mnist')
    import numpy as np

    project = find_project('fashion_mnist')
    data = project.load_data(project.config())
    assert data.x_train.shape == (54_000, 28, 28, 1) and data.x_val.shape == (6_000, 28, 28, 1)
    assert data.x_test.shape == (10_000, 28, 28, 1)
    assert data.x_train.min() == 0 and data.x_train.max() == 255 / 256  # exact in fixed point
    assert np.bincount(data.y_test).tolist() == [1000] * 10  # the official test set is balanced
    model = project.build_model(project.config())
    assert model.output_shape == (None, 10)


def test_fashion_mnist_missing_data_names_the_package(tmp_path):
    project = find_project('fashion_mnist')
    config = project.config()
    config['data']['path'] = str(tmp_path)
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
        project.load_data(config)
    (tmp_path / 'train-images-idx3-ubyte').write_bytes(b'\x00\x00\x0d\x01' + b'\x00' * 8)
    with pytest.raises(ValueError, match='not an IDX file of unsigned bytes'):
        project.module.read_idx(tmp_path / 'train-images-idx3-ubyte')


def test_demo_names_missing_system_tools(monkeypatch):
    import shutil as shutil_module

    from hgq import demo

    real = shutil_module.which
    monkeypatch.setattr(shutil_module, 'which', lambda tool: None if tool == 'yosys' else real(tool))
    assert demo.missing_system_tools() == ['yosys']


def test_train_with_the_lut_cost_logs_both_costs(tmp_path):
    """A run with training.cost: luts trains and logs both costs (the loss term itself: tests/test_lut_cost.py)."""
    project = find_project(TOY)
    config = project.config()
    config['training'].update(cost='luts', epochs=2, float_epochs=0)
    config['quantizers']['activation_overflow'] = 'input-SAT'
    train(project, config, tmp_path / 'run')
    # the policy is in the saved checkpoints: what export sees (only the input-reading quantizer saturates)
    entry = json.loads((tmp_path / 'run' / 'checkpoints' / 'pareto.json').read_text())['checkpoints'][0]
    modes = activation_overflow_modes(load_checkpoint(tmp_path / 'run' / 'checkpoints' / entry['file']))
    first = next(iter(modes))
    assert modes[first] == 'SAT' and len(modes) > 1 and set(v for k, v in modes.items() if k != first) == {'WRAP'}
    header, *rows = (tmp_path / 'run' / 'history.csv').read_text().splitlines()
    columns = header.split(',')
    assert 'lut_estimate' in columns and 'ebops' in columns and len(rows) == 2
    assert all(float(r.split(',')[columns.index('lut_estimate')]) > 0 for r in rows)
