"""Training configurations: one YAML file per project, validated before any minute is spent.

A config has five sections; `data` and `model` are the project's own keyword arguments (their valid
keys and defaults come from the project module's `DATA` and `MODEL` dicts), `quantizers`, `training` and
`synth` are ours (`QUANTIZERS`, `TRAINING`, `SYNTH` below). Every key a user writes is checked: a misspelt
key is an error that names it and lists the valid ones, never a silently ignored setting.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import yaml

from .files import BadFileError, load_config

SECTIONS = ('data', 'model', 'quantizers', 'training', 'synth')

# how the project's quantizers behave in hardware (hgq.layers.overflow): where activations saturate; WRAP is
# free in logic, SAT clamps an out-of-range value (LUTs), input-SAT clamps only the quantizers reading the input
QUANTIZERS: dict[str, Any] = {'activation_overflow': 'WRAP'}
OVERFLOW_POLICIES = ('SAT', 'WRAP', 'input-SAT')  # = hgq.layers.overflow.POLICIES (no Keras to check a config)

TRAINING: dict[str, Any] = {
    'epochs': 100,
    'batch_size': 1024,
    'optimizer': {'name': 'adam', 'learning_rate': 3e-3},
    'lr_schedule': 'cosine',          # 'constant' or 'cosine' (decay to 1% over all epochs)
    'beta': {'schedule': 'log', 'start': 1e-7, 'end': 1e-4},
    'target': None,                   # a budget instead of the beta schedule: {luts: 2000} or {ebops: 5000}
    'cost': 'ebops',                  # what beta multiplies in the loss: ebops, or luts (hgq.training.lut_cost)
    'float_epochs': 30,               # the float baseline of the same model; 0 skips it
    'seed': 1,
}
BETA_SCHEDULES = {'constant': ('value',), 'linear': ('start', 'end'), 'log': ('start', 'end')}
LR_SCHEDULES = ('constant', 'cosine')
TARGET_UNITS = ('ebops', 'luts')
COSTS = ('ebops', 'luts')  # = hgq.training.lut_cost.COSTS (not imported: checking a config needs no Keras)
TARGET_MODES = ('rate', 'proportional')  # BudgetController's step rules
TARGET_OPTIONS = ('beta_start', 'gain', 'max_rate', 'mode')  # hgq.training.BudgetController's, beside the one unit

SYNTH: dict[str, Any] = {'clock_ns': 5.0, 'latency_cutoff': 5, 'check': 10_000}


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class ConfigFileError(ConfigError, BadFileError):
    """A config file that cannot be read (missing, not YAML, not a mapping): both kinds of error."""


def _check_keys(given: Mapping[str, Any], valid: Mapping[str, Any] | tuple[str, ...], where: str) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ConfigError(f'{where}: unknown key{"s" if len(unknown) > 1 else ""} {", ".join(map(repr, unknown))}; '
                          f'valid keys: {", ".join(sorted(valid))}')


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise ConfigError(f'{where} must be a mapping of keys to values, got {type(given).__name__}')
    _check_keys(given, defaults, where)
    merged = copy.deepcopy(dict(defaults))
    merged.update(copy.deepcopy(dict(given)))
    return merged


def _positive_int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f'{where} = {value!r}: expected an integer >= {minimum}')
    return value


def _positive_float(value: Any, where: str, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f'{where} = {value!r}: expected a number') from None
    if not (v > 0 or (allow_zero and v == 0)) or v != v or v == float('inf'):
        raise ConfigError(f'{where} = {value!r}: expected a finite number {">=" if allow_zero else ">"} 0')
    return v


def _check_training(t: dict[str, Any], where: str) -> None:
    _positive_int(t['epochs'], f'{where}.epochs')
    _positive_int(t['batch_size'], f'{where}.batch_size')
    _positive_int(t['float_epochs'], f'{where}.float_epochs', minimum=0)
    _positive_int(t['seed'], f'{where}.seed', minimum=0)
    opt = t['optimizer']
    if not isinstance(opt, Mapping) or 'name' not in opt:
        raise ConfigError(f'{where}.optimizer must be a mapping with a "name" (e.g. {{name: adam, '
                          f'learning_rate: 0.003}}), got {opt!r}')
    if 'learning_rate' in opt:
        _positive_float(opt['learning_rate'], f'{where}.optimizer.learning_rate')
    if t['cost'] not in COSTS:
        raise ConfigError(f'{where}.cost = {t["cost"]!r}: valid values: {", ".join(COSTS)} (what beta multiplies '
                          'in the loss: EBOPs, or the LUT cost fitted to Yosys)')
    if t['lr_schedule'] not in LR_SCHEDULES:
        raise ConfigError(f'{where}.lr_schedule = {t["lr_schedule"]!r}: valid values: {", ".join(LR_SCHEDULES)}')
    beta = t['beta']
    if isinstance(beta, (int, float)) and not isinstance(beta, bool):
        t['beta'] = beta = {'schedule': 'constant', 'value': beta}
    if not isinstance(beta, Mapping) or beta.get('schedule') not in BETA_SCHEDULES:
        raise ConfigError(f'{where}.beta = {beta!r}: expected a number or a mapping with schedule one of '
                          f'{", ".join(BETA_SCHEDULES)} (e.g. {{schedule: log, start: 1.0e-7, end: 1.0e-4}})')
    needed = BETA_SCHEDULES[beta['schedule']]
    _check_keys({k: v for k, v in beta.items() if k != 'schedule'}, needed, f'{where}.beta ({beta["schedule"]})')
    for key in needed:
        if key not in beta:
            raise ConfigError(f'{where}.beta: the {beta["schedule"]} schedule needs {", ".join(needed)}')
        _positive_float(beta[key], f'{where}.beta.{key}', allow_zero=True)


def _check_target(target: Any, beta_given: bool, where: str) -> None:
    """training.target: one budget (ebops or luts) and the controller's options; it replaces the beta
    schedule, so giving both is an error rather than a silent choice."""
    if target is None:
        return
    example = '(e.g. {luts: 2000} or {ebops: 5000, beta_start: 1.0e-6, gain: 0.5})'
    if not isinstance(target, Mapping):
        raise ConfigError(f'{where}.target = {target!r}: expected a mapping with one of {", ".join(TARGET_UNITS)} '
                          f'{example}')
    _check_keys(target, TARGET_UNITS + TARGET_OPTIONS, f'{where}.target')
    units = [u for u in TARGET_UNITS if u in target]
    if len(units) != 1:
        raise ConfigError(f'{where}.target = {dict(target)!r}: give exactly one budget, {" or ".join(TARGET_UNITS)} '
                          f'{example}')
    _positive_float(target[units[0]], f'{where}.target.{units[0]}')
    if 'beta_start' in target:
        _positive_float(target['beta_start'], f'{where}.target.beta_start')
    if 'gain' in target:
        _positive_float(target['gain'], f'{where}.target.gain')
    if 'max_rate' in target:
        _positive_float(target['max_rate'], f'{where}.target.max_rate')
    if 'mode' in target and target['mode'] not in TARGET_MODES:
        raise ConfigError(f'{where}.target.mode = {target["mode"]!r}: valid modes: {", ".join(TARGET_MODES)}')
    if beta_given:
        raise ConfigError(f'{where}: give either target (training steers beta to a budget) or beta (a schedule), '
                          'not both')


def _check_quantizers(q: dict[str, Any], where: str) -> None:
    policy = q['activation_overflow']
    match = [p for p in OVERFLOW_POLICIES if str(policy).lower() == p.lower()]
    if not match:
        raise ConfigError(f'{where}.activation_overflow = {policy!r}: valid values: {", ".join(OVERFLOW_POLICIES)} '
                          '(SAT: every activation clamps; WRAP: every one wraps, no logic; input-SAT: the quantizers '
                          'reading the model input clamp, hidden ones wrap)')
    q['activation_overflow'] = match[0]


def _check_synth(s: dict[str, Any], where: str) -> None:
    _positive_float(s['clock_ns'], f'{where}.clock_ns')
    _positive_int(s['check'], f'{where}.check', minimum=0)
    try:
        float(s['latency_cutoff'])
    except (TypeError, ValueError):
        raise ConfigError(f'{where}.latency_cutoff = {s["latency_cutoff"]!r}: expected a number') from None


def resolve(given: Mapping[str, Any] | None, data_defaults: Mapping[str, Any], model_defaults: Mapping[str, Any],
            where: str = 'config') -> dict[str, Any]:
    """The complete config: every section and key present, defaults filled in, values checked."""
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise ConfigError(f'{where}: expected a mapping with the sections {", ".join(SECTIONS)}')
    _check_keys(given, SECTIONS, where)
    config = {
        'data': _merge(data_defaults, given.get('data'), f'{where}: data'),
        'model': _merge(model_defaults, given.get('model'), f'{where}: model'),
        'quantizers': _merge(QUANTIZERS, given.get('quantizers'), f'{where}: quantizers'),
        'training': _merge(TRAINING, given.get('training'), f'{where}: training'),
        'synth': _merge(SYNTH, given.get('synth'), f'{where}: synth'),
    }
    _check_quantizers(config['quantizers'], f'{where}: quantizers')
    _check_training(config['training'], f'{where}: training')
    given_training = given.get('training') or {}
    _check_target(config['training']['target'], 'beta' in given_training, f'{where}: training')
    _check_synth(config['synth'], f'{where}: synth')
    return config


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML mapping from a file; a missing file or broken YAML is an error naming the file (and the line)."""
    try:
        return load_config(path)
    except BadFileError as e:
        hint = f'; the sections are {", ".join(SECTIONS)}' if 'must hold a mapping' in str(e) else ''
        raise ConfigFileError(f'{e}{hint}') from None


def dump_yaml(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False)
