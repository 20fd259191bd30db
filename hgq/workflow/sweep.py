"""Sweep plans: a sweep file expanded into trials, each an ordinary `hgq train` run folder (no Ray here).

Sweep file (YAML):

    grid:   {training.beta.end: [1.0e-5, 1.0e-4], training.seed: [0, 1]}   # every combination
    random: {training.seed: [0, 1, 2, 3]}                                  # values drawn per trial
    trials: 4                       # number of random draws (with `random`)
    seed: 0                         # seed of the random draws, so a rerun draws the same trials
    resources: {cpus: 1, gpus: 0, local_cpus: 2}   # per trial; local_cpus: the local Ray instance's CPUs

A trial's folder name is derived only from its overrides, so rerunning the same sweep finds its folders;
a finished trial leaves DONE_FILE and is skipped.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..training.files import write_json_atomic
from .config import ConfigError

DONE_FILE = 'trial_done.json'
SWEEP_KEYS = ('grid', 'random', 'trials', 'seed', 'resources')
RESOURCE_KEYS = ('cpus', 'gpus', 'local_cpus')


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one trial reserves on a Ray node, and the CPUs of a local Ray instance (`hgq sweep` starts one)."""

    cpus: float = 1.0
    gpus: float = 0.0
    local_cpus: int = 1


def resources(sweep: Mapping[str, Any], where: str = 'sweep') -> Resources:
    """The sweep file's `resources` section, checked; local_cpus defaults to this machine's CPU count."""
    given = sweep.get('resources', {}) or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f'{where}: resources: expected a mapping like {{cpus: 1, gpus: 0, local_cpus: 2}}')
    unknown = sorted(set(given) - set(RESOURCE_KEYS))
    if unknown:
        raise ConfigError(f'{where}: resources: unknown key(s) {", ".join(unknown)}; valid: {", ".join(RESOURCE_KEYS)}')
    values: dict[str, Any] = {}
    checks = (('cpus', 1.0, 'a number > 0', lambda v: v > 0), ('gpus', 0.0, 'a number >= 0', lambda v: v >= 0),
              ('local_cpus', os.cpu_count() or 1, 'a positive integer', lambda v: v >= 1 and v == int(v)))
    for key, default, what, ok in checks:
        value = given.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ConfigError(f'{where}: resources.{key}: expected {what}, got {value!r}')
        values[key] = int(value) if key == 'local_cpus' else float(value)
    return Resources(**values)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial: its overrides, its run folder and its resolved config (checked before anything runs)."""

    name: str
    overrides: dict[str, Any]
    run_dir: Path
    config: dict[str, Any]


def _check_values(space: Any, where: str) -> dict[str, list[Any]]:
    if not isinstance(space, Mapping):
        raise ConfigError(f'{where}: expected a mapping of dotted config keys to lists of values')
    for key, values in space.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f'{where}: {key}: expected a non-empty list of values, got {values!r}')
    return {str(k): list(v) for k, v in space.items()}


def expand(sweep: Mapping[str, Any], where: str = 'sweep') -> list[dict[str, Any]]:
    """The trials' overrides (dotted key -> value): the grid's product, times `trials` random draws."""
    unknown = sorted(set(sweep) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f'{where}: unknown key(s) {", ".join(unknown)}; valid: {", ".join(SWEEP_KEYS)}')
    grid = _check_values(sweep.get('grid', {}), f'{where}: grid')
    space = _check_values(sweep.get('random', {}), f'{where}: random')
    if not grid and not space:
        raise ConfigError(f'{where}: needs a grid or a random section')
    n = sweep.get('trials', 1 if not space else None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f'{where}: trials: expected a positive integer (the number of random draws), got {n!r}')
    rng = random.Random(sweep.get('seed', 0))
    draws = [{k: rng.choice(v) for k, v in space.items()} for _ in range(n if space else 1)]
    combos = [dict(zip(grid, c)) for c in itertools.product(*grid.values())] if grid else [{}]
    return [{**g, **d} for g in combos for d in draws]


def apply(config: Mapping[str, Any], overrides: Mapping[str, Any], where: str = 'sweep') -> dict[str, Any]:
    """A copy of the given (unresolved) config with each dotted key set; sections must be known later by resolve."""
    out = copy.deepcopy(dict(config))
    for key, value in overrides.items():
        parts = key.split('.')
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f'{where}: {key}: {part} is {child!r}, not a section')
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out


def trial_name(overrides: Mapping[str, Any]) -> str:
    """A readable, deterministic folder name: the short key=value pairs plus a hash of all of them."""
    canon = json.dumps(overrides, sort_keys=True, default=str)
    digest = hashlib.sha1(canon.encode()).hexdigest()[:8]
    short = '_'.join(f'{k.split(".")[-1]}={v}' for k, v in sorted(overrides.items()))
    short = re.sub(r'[^A-Za-z0-9=._-]+', '-', short)[:60]
    return f'{short}_{digest}' if short else digest


def is_done(run_dir: str | Path) -> bool:
    return (Path(run_dir) / DONE_FILE).is_file()


def mark_done(run_dir: str | Path, overrides: Mapping[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / DONE_FILE, {'overrides': dict(overrides)})


def plan(project: Any, sweep: Mapping[str, Any], out_dir: str | Path,
         config_path: str | Path | None = None) -> list[Trial]:
    """Every trial of the sweep with its resolved config, so a bad override fails before any training."""
    from .config import read_yaml, resolve

    default = project.directory / 'config.yaml'
    source = Path(config_path) if config_path is not None else default
    given = read_yaml(source) if (config_path is not None or source.is_file()) else {}
    resources(sweep)
    trials = []
    for overrides in expand(sweep):
        config = resolve(apply(given, overrides), project.module.DATA, project.module.MODEL,
                         where=f'{source} with {overrides}')
        name = trial_name(overrides)
        trials.append(Trial(name, overrides, Path(out_dir) / name, config))
    return trials


def run_serial(project: Any, sweep: Mapping[str, Any], out_dir: str | Path,
               config_path: str | Path | None = None) -> list[Path]:
    """Run every trial one after another (the `--serial` engine); finished trials are skipped, an
    interrupted one resumes from its last saved epoch (hgq train's own resumable state)."""
    from .train import train

    trials = plan(project, sweep, out_dir, config_path)
    for trial in trials:
        if is_done(trial.run_dir):
            print(f'{trial.run_dir}: done, skipped', flush=True)
            continue
        train(project, trial.config, trial.run_dir)
        mark_done(trial.run_dir, trial.overrides)
    return [t.run_dir for t in trials]
