"""Sweep plans: grid/random expansion, dotted overrides, deterministic trial folders (no Ray needed)."""

from pathlib import Path

import pytest

from hgq.workflow.config import ConfigError
from hgq.workflow.sweep import apply, expand, is_done, mark_done, trial_name


def test_grid_is_the_product():
    trials = expand({'grid': {'training.seed': [0, 1], 'model.hidden': [4, 8, 16]}})
    assert len(trials) == 6
    assert {(t['training.seed'], t['model.hidden']) for t in trials} == {(s, h) for s in (0, 1) for h in (4, 8, 16)}


def test_random_draws_repeat_with_the_seed():
    sweep = {'random': {'training.beta.end': [1e-5, 1e-4, 1e-3]}, 'trials': 5, 'seed': 3}
    assert expand(sweep) == expand(sweep)
    assert len(expand(sweep)) == 5


@pytest.mark.parametrize('sweep, word', [({}, 'grid or a random'), ({'grid': {'a': []}}, 'non-empty'),
                                         ({'random': {'a': [1]}}, 'trials'), ({'grdi': {}}, 'unknown')])
def test_bad_sweep_files_say_what(sweep, word):
    with pytest.raises(ConfigError, match=word):
        expand(sweep)


def test_apply_sets_dotted_keys_without_touching_the_original():
    base = {'training': {'beta': {'schedule': 'log', 'end': 1e-4}}}
    out = apply(base, {'training.beta.end': 1e-3, 'model.hidden': 8})
    assert out['training']['beta'] == {'schedule': 'log', 'end': 1e-3} and out['model'] == {'hidden': 8}
    assert base['training']['beta']['end'] == 1e-4


def test_trial_names_are_deterministic_and_distinct(tmp_path):
    a, b = {'training.seed': 0, 'model.hidden': 8}, {'training.seed': 1, 'model.hidden': 8}
    assert trial_name(a) == trial_name(dict(reversed(list(a.items()))))
    assert trial_name(a) != trial_name(b)
    assert not is_done(tmp_path)
    mark_done(tmp_path, a)
    assert is_done(tmp_path)


TOY = Path(__file__).parent / 'toy_project'
SERIAL = {'grid': {'training.seed': [0, 1], 'training.epochs': [2], 'training.float_epochs': [1]}}


@pytest.fixture(scope='module')
def serial_sweep(tmp_path_factory):
    """The toy project swept over two seeds with the serial engine (trained once for this module)."""
    from hgq.workflow.project import find_project
    from hgq.workflow.sweep import run_serial

    out = tmp_path_factory.mktemp('serial')
    project = find_project(TOY)
    return project, out, run_serial(project, SERIAL, out)


def test_serial_sweep_trains_each_trial_once_and_skips_done(serial_sweep, capsys):
    from hgq.workflow.sweep import run_serial

    project, out, folders = serial_sweep
    assert len(folders) == 2 and all(is_done(f) and (f / 'history.csv').is_file() for f in folders)
    rows = [(f / 'history.csv').read_text().strip().splitlines() for f in folders]
    assert [len(r) for r in rows] == [3, 3]  # header + 2 epochs each
    capsys.readouterr()
    run_serial(project, SERIAL, out)
    assert capsys.readouterr().out.count('done, skipped') == 2


def test_report_only_merges_every_trials_front(serial_sweep, tmp_path, capsys):
    import json

    from hgq.cli import main
    from hgq.training import read_index

    project, out, folders = serial_sweep
    sweep_file = tmp_path / 'sweep.yaml'
    sweep_file.write_text(json.dumps(SERIAL))  # JSON is YAML
    assert main(['sweep', str(TOY), '--config', str(sweep_file), '--out', str(out), '--report-only']) == 0
    stdout = capsys.readouterr().out
    report = json.loads((out / 'report' / 'sweep.json').read_text())
    indexes = {f.name: read_index(f / 'checkpoints') for f in folders}
    assert sorted((p['trial'], p['epoch']) for p in report['points']) == sorted(
        (name, c['epoch']) for name, index in indexes.items() for c in index['checkpoints'])
    front = report['front']
    for p in report['points']:
        on = (p['trial'], p['epoch']) in {(f['trial'], f['epoch']) for f in front}
        beaten = any(f['val_accuracy'] >= p['val_accuracy'] and f['ebops'] <= p['ebops'] and f is not p
                     and (f['trial'], f['epoch']) != (p['trial'], p['epoch']) for f in front)
        assert on or beaten
    assert [f['ebops'] for f in front] == sorted(f['ebops'] for f in front)
    assert all(f['val_accuracy'] < g['val_accuracy'] for f, g in zip(front, front[1:]))  # a real front
    assert '2/2 trials done' in stdout and all(f['trial'] in stdout for f in front)
    assert (out / 'report' / 'sweep_pareto.png').is_file() and '| trial | epoch |' in (
        out / 'report' / 'sweep.md').read_text()


@pytest.mark.parametrize('resources, word', [({'cpus': 0}, 'resources.cpus'), ({'gpus': -1}, 'resources.gpus'),
                                             ({'local_cpus': 1.5}, 'local_cpus'), ({'cpu': 1}, 'unknown')])
def test_bad_resources_say_which(resources, word):
    from hgq.workflow.sweep import resources as check

    with pytest.raises(ConfigError, match=word):
        check({'grid': {'a': [1]}, 'resources': resources})


def test_resources_default_to_one_cpu_per_trial():
    from hgq.workflow.sweep import resources as check

    r = check({'resources': {'local_cpus': 2}})
    assert (r.cpus, r.gpus, r.local_cpus) == (1.0, 0.0, 2)


def test_without_ray_the_sweep_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    import sys

    from hgq.cli import main

    sweep_file = tmp_path / 'sweep.yaml'
    sweep_file.write_text('grid: {training.seed: [0]}\n')
    monkeypatch.setitem(sys.modules, 'ray', None)  # import ray raises ImportError
    assert main(['sweep', str(TOY), '--config', str(sweep_file), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert 'pip install "hgq[sweep]"' in err and '--serial' in err
    assert not (tmp_path / 'o').exists()


def test_progress_prints_plain_lines_off_a_terminal(tmp_path):
    import io

    from hgq.workflow.project import find_project
    from hgq.workflow.sweep import plan
    from hgq.workflow.sweep_progress import Progress

    trials = plan(find_project(TOY), {'grid': {'training.seed': [0, 1]}}, tmp_path)
    stream = io.StringIO()
    progress = Progress(trials, stream)
    progress.launched(trials)
    first = trials[0].run_dir
    first.mkdir(parents=True)
    (first / 'train.log').write_text('started\n')
    (first / 'history.csv').write_text('epoch,val_accuracy,ebops\n0,0.5,1234.5\n1,0.625,999\n')
    progress.refresh()
    progress.refresh()  # nothing changed: nothing printed again
    mark_done(first, trials[0].overrides)
    progress.finished(trials[0])
    progress.close()
    lines = stream.getvalue().splitlines()
    assert '\x1b' not in stream.getvalue()
    running = [line for line in lines if line.startswith(trials[0].name) and 'running' in line]
    assert len(running) == 1 and 'epoch    2/4' in running[0] and '0.6250' in running[0] and '999' in running[0]
    assert any('1/2 trials done' in line for line in lines)
    assert not any(line.startswith(trials[1].name) for line in lines)  # never started: no line


class _Crash(Exception):
    pass


@pytest.mark.parametrize('window', ['before_pareto', 'before_latest'])
def test_a_kill_between_the_epoch_writes_loses_nothing(window, tmp_path, monkeypatch, capsys):
    """A trial killed between its per-epoch writes (what a Ray retry then resumes): after the resume, history.csv
    has each epoch once and the Pareto index holds exactly the front of all epochs."""
    import csv

    import hgq.training
    from hgq.workflow.project import find_project
    from hgq.workflow.train import train

    project = find_project(TOY)
    config = project.config()
    config['training'].update(epochs=3, float_epochs=0)
    name = 'ParetoCheckpoint' if window == 'before_pareto' else 'LatestCheckpoint'
    base = getattr(hgq.training, name)

    class CrashBefore(base):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise _Crash  # the writes before this callback are done, this one and later are not
            super().on_epoch_end(epoch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(hgq.training, name, CrashBefore)
        with pytest.raises(_Crash):
            train(project, config, tmp_path)
    capsys.readouterr()
    index = train(project, config, tmp_path)
    if window == 'before_pareto':  # last.keras held epoch 2, the index did not: it is offered on resume
        assert 'offered epoch 2' in capsys.readouterr().out
    with open(tmp_path / 'history.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in rows] == [0, 1, 2]
    front = hgq.training.ParetoFront({'val_accuracy': 'max', 'ebops': 'min'})
    for r in rows:
        front.add(int(r['epoch']) + 1, {'val_accuracy': float(r['val_accuracy']), 'ebops': float(r['ebops'])})
    assert sorted(c['epoch'] for c in index['checkpoints']) == sorted(front.ids())
    assert index['last_epoch'] == 3
    assert all((tmp_path / 'checkpoints' / c['file']).is_file() for c in index['checkpoints'])
