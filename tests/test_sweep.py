"""Sweep plans: grid/random expansion, dotted overrides, deterministic trial folders (no Ray needed)."""

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


def test_serial_sweep_trains_each_trial_once_and_skips_done(tmp_path, capsys):
    from pathlib import Path

    from hgq.workflow.project import find_project
    from hgq.workflow.sweep import run_serial

    project = find_project(Path(__file__).parent / 'toy_project')
    sweep = {'grid': {'training.seed': [0, 1], 'training.epochs': [2], 'training.float_epochs': [1]}}
    folders = run_serial(project, sweep, tmp_path)
    assert len(folders) == 2 and all(is_done(f) and (f / 'history.csv').is_file() for f in folders)
    rows = [(f / 'history.csv').read_text().strip().splitlines() for f in folders]
    assert [len(r) for r in rows] == [3, 3]  # header + 2 epochs each
    capsys.readouterr()
    run_serial(project, sweep, tmp_path)
    assert capsys.readouterr().out.count('done, skipped') == 2
