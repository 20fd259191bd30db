"""A bad checkpoint, calibration array or config is one line naming the file and what is wrong (issue 16)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from hgq.cli import main
from hgq.workflow.config import ConfigError, read_yaml
from hgq.workflow.files import BadFileError, load_array, load_checkpoint, load_config


def _zip(path, members: dict[str, str]):
    with zipfile.ZipFile(path, 'w') as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def _cli_error(capsys, argv: list[str]) -> str:
    """Run the CLI; it must exit 2 with exactly one line on stderr and no traceback."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert 'Traceback' not in captured.err
    return lines[0]


def _bad_checkpoints(tmp_path):
    text = tmp_path / 'text.keras'
    text.write_text('not a model\n')
    good = _zip(tmp_path / 'whole.keras', {'config.json': '{}', 'metadata.json': '{}'})
    truncated = tmp_path / 'truncated.keras'
    truncated.write_bytes(good.read_bytes()[:40])
    no_config = _zip(tmp_path / 'noconfig.keras', {'metadata.json': '{}'})
    folder = tmp_path / 'folder.keras'
    folder.mkdir()
    h5 = tmp_path / 'model.h5'
    h5.write_bytes(b'\x89HDF\r\n')
    return [
        (tmp_path / 'missing.keras', 'does not exist'),
        (folder, 'is a folder'),
        (h5, "suffix '.h5'; expected a .keras checkpoint"),
        (text, 'not a zip archive'),
        (truncated, 'not a zip archive'),
        (no_config, 'without config.json'),
    ]


@pytest.mark.parametrize('command', ['export', 'synth'])
def test_cli_names_bad_checkpoint(command, tmp_path, capsys):
    for path, problem in _bad_checkpoints(tmp_path):
        line = _cli_error(capsys, [command, str(path), str(tmp_path / 'out')])
        assert line.startswith(f'hgq {command}: checkpoint file {str(path)!r}'), line
        assert problem in line, line
    assert not (tmp_path / 'out').exists()


def test_checkpoint_keras_refuses(tmp_path, capsys):
    """A .keras zip with config.json that Keras cannot build: Keras' own reason, after our file name."""
    path = _zip(tmp_path / 'garbage.keras', {'config.json': json.dumps({'class_name': 'NoSuchLayer', 'config': {}}),
                                             'metadata.json': '{}'})
    with pytest.raises(BadFileError, match=r"garbage\.keras.*could not be loaded by Keras \(\w+Error: .+\)"):
        load_checkpoint(path)
    line = _cli_error(capsys, ['export', str(path), str(tmp_path / 'out')])
    assert 'garbage.keras' in line and 'could not be loaded by Keras' in line


def _bad_arrays(tmp_path):
    truncated = tmp_path / 'truncated.npz'
    np.savez(tmp_path / 'whole.npz', x=np.ones((64, 6), np.float32))
    truncated.write_bytes((tmp_path / 'whole.npz').read_bytes()[:100])
    short = tmp_path / 'short.npy'
    np.save(tmp_path / 'whole.npy', np.ones((64, 6), np.float32))
    short.write_bytes((tmp_path / 'whole.npy').read_bytes()[:200])
    text = tmp_path / 'text.npy'
    text.write_text('1 2 3\n')
    empty = tmp_path / 'empty.npz'
    np.savez(empty)
    strings = tmp_path / 'strings.npy'
    np.save(strings, np.array(['a', 'b']))
    nan = tmp_path / 'nan.npy'
    np.save(nan, np.array([[1.0, np.inf, np.nan]]))
    csv = tmp_path / 'data.csv'
    csv.write_text('1,2\n')
    return [
        (tmp_path / 'missing.npy', 'does not exist'),
        (truncated, 'not a readable array file'),
        (short, 'not a readable array file'),
        (text, 'not a readable array file'),
        (empty, 'holds no arrays'),
        (strings, 'not numbers'),
        (nan, '2 NaN/Inf values'),
        (csv, "suffix '.csv'"),
    ]


def test_cli_names_bad_calibration(tmp_path, capsys):
    checkpoint = _zip(tmp_path / 'ok.keras', {'config.json': '{}'})  # passes the cheap checks; never loaded
    for path, problem in _bad_arrays(tmp_path):
        line = _cli_error(capsys, ['export', str(checkpoint), str(tmp_path / 'out'), '--calibration', str(path)])
        assert line.startswith(f'hgq export: calibration file {str(path)!r}'), line
        assert problem in line, line
        with pytest.raises(BadFileError, match=problem.replace('(', r'\(').replace('.', r'\.')):
            load_array(path)


def test_load_array_reads_npy_and_first_npz_array(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / 'a.npy', x)
    np.savez(tmp_path / 'b.npz', first=x, second=-x)
    for name in ('a.npy', 'b.npz'):
        array = load_array(tmp_path / name)
        assert array.dtype == np.float32 and np.array_equal(array, x)


def test_config_names_file_line_and_problem(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('training:\n  epochs: 3\n  seed: [1\n')
    with pytest.raises(BadFileError, match=r"bad\.yaml' is not valid YAML: line \d+, column \d+: "):
        load_config(bad)
    tabs = tmp_path / 'tabs.yaml'
    tabs.write_text('training:\n\tepochs: 3\n')
    with pytest.raises(BadFileError, match=r"tabs\.yaml' is not valid YAML: line 2, column 1: "):
        load_config(tabs)
    listed = tmp_path / 'list.yaml'
    listed.write_text('- 1\n- 2\n')
    with pytest.raises(ConfigError, match=r"list\.yaml' must hold a mapping.*got a list; the sections are data"):
        read_yaml(listed)
    binary = tmp_path / 'binary.yaml'
    binary.write_bytes(b'\xff\xfe\x00')
    with pytest.raises(BadFileError, match=r"binary\.yaml' is not UTF-8"):
        load_config(binary)
    (tmp_path / 'empty.yaml').write_text('')
    assert load_config(tmp_path / 'empty.yaml') == {}


def test_cli_train_names_bad_config(tmp_path, capsys):
    from pathlib import Path

    toy = Path(__file__).parent / 'toy_project'
    bad = tmp_path / 'bad.yaml'
    bad.write_text('training: {epochs: [\n')
    line = _cli_error(capsys, ['train', str(toy), '--config', str(bad), '--out', str(tmp_path / 'run')])
    assert line.startswith(f'hgq train: config file {str(bad)!r} is not valid YAML: line 2, column 1'), line
