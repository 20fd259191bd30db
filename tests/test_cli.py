"""The `hgq` command: export a checkpoint to hls4ml and check it, and its errors."""

import os
import shutil

import numpy as np
import pytest
from models import small_checkpoint

from hgq.cli import main


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path, _ = small_checkpoint(tmp_path_factory.mktemp('ckpt'))
    return path


def test_export_checks_csim_against_emulator(checkpoint, tmp_path, capsys):
    if shutil.which('g++') is None:
        if os.environ.get('CI') == 'true':
            pytest.fail('g++ is required in CI: apt-get install -y g++')
        pytest.skip('g++ not installed')
    rc = main(['export', str(checkpoint), '--to', 'hls4ml', str(tmp_path / 'prj'), '--check', '4000',
               '--calibration', str(checkpoint.parent / 'calib.npy')])
    out = capsys.readouterr().out
    assert rc == 0
    assert '0 mismatches in 12768 outputs' in out  # (4000 random + 256 calibration) x 3 outputs
    assert 'hidden_iq' in out and 'quantize' in out  # the precision table
    assert (tmp_path / 'prj' / 'build_prj.tcl').is_file()  # hls4ml's own build script


def test_export_names_missing_and_bad_files(checkpoint, tmp_path, capsys):
    assert main(['export', str(tmp_path / 'nope.keras'), str(tmp_path / 'prj')]) == 2
    assert 'nope.keras' in capsys.readouterr().err.split('does not exist')[0]
    bad = tmp_path / 'bad.npy'
    np.save(bad, np.array([[np.nan] * 6]))
    assert main(['export', str(checkpoint), str(tmp_path / 'prj'), '--calibration', str(bad)]) == 2
    err = capsys.readouterr().err
    assert 'bad.npy' in err and 'has 6 NaN/Inf values' in err
