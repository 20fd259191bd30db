"""Sweep plans: a sweep file expanded into trials, each an ordinary `hgq train` run folder (no Ray here).

Sweep file (YAML):

    grid:   {training.beta.end: [1.0e-5, 1.0e-4], training.seed: [0, 1]}   # every combination
    random: {training.seed: [0, 1, 2, 3]}                                  # values drawn per trial
    trials: 4                       # number of random draws (with `random`)
    seed: 0                         # seed of the random draws, so a rerun draws the same trials
    resources: {cpus: 1}            # per trial (the Ray engine)

A trial's folder name is derived only from its overrides, so rerunning the same sweep finds its folders;
a finished trial leaves DONE_FILE and is skipped.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..training.files import write_json_atomic
from .config import ConfigError

DONE_FILE = 'trial_done.json'
SWEEP_KEYS = ('grid', 'random', 'trials', 'seed', 'resources')


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


def run_serial(project: Any, sweep: Mapping[str, Any], out_dir: str | Path,
               config_path: str | Path | None = None) -> list[Path]:
    """Run every trial one after another (the `--serial` engine); finished trials are skipped, an
    interrupted one resumes from its last saved epoch (hgq train's own resumable state)."""
    from .config import read_yaml, resolve
    from .train import train

    default = project.directory / 'config.yaml'
    source = Path(config_path) if config_path is not None else default
    given = read_yaml(source) if source.is_file() else {}
    folders = []
    for overrides in expand(sweep):
        run_dir = Path(out_dir) / trial_name(overrides)
        folders.append(run_dir)
        if is_done(run_dir):
            print(f'{run_dir}: done, skipped', flush=True)
            continue
        config = resolve(apply(given, overrides), project.module.DATA, project.module.MODEL,
                         where=f'{source} with {overrides}')
        train(project, config, run_dir)
        mark_done(run_dir, overrides)
    return folders
