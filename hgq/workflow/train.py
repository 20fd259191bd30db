"""`hgq train`: a float baseline, then one HGQ run with a beta schedule that keeps its Pareto front.

Run folder (everything written atomically; an interrupted run continues where it stopped):

    run.json            project, resolved config, backend, hgq version: what `hgq report` needs
    float.json          the float twin's validation and test accuracy (the baseline of every plot)
    history.csv         one row of logs per epoch (loss, accuracy, EBOPs, beta, ...)
    last.keras/.json    the latest model with its optimizer state (hgq.training.LatestCheckpoint)
    checkpoints/        the Pareto-optimal epochs on (val_accuracy max, ebops min) and pareto.json

With `init` (`hgq train --init MODEL.keras`) training starts from that model instead of the project's:
an imported QKeras model (fixed formats) is made learnable first (`hgq.importers.learnable`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..training.files import write_json_atomic, write_text_atomic
from .config import QUANTIZERS, ConfigError, dump_yaml
from .files import load_checkpoint
from .project import Project

RUN_FORMAT = 'hgq-run/1'
RUN_FILE = 'run.json'
FLOAT_FILE = 'float.json'
HISTORY_FILE = 'history.csv'
CHECKPOINTS = 'checkpoints'
PARETO_METRICS = {'val_accuracy': 'max', 'ebops': 'min'}


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed run.json of a training run folder; errors name the folder."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ConfigError(f'{run_dir!s} is not an hgq training run: it has no {RUN_FILE} (make one with hgq train)')
    run = json.loads(path.read_text(encoding='utf-8'))
    if run.get('format') != RUN_FORMAT:
        raise ConfigError(f'{path}: not an hgq run file (expected "format": "{RUN_FORMAT}")')
    return run


def beta_schedule(beta: dict[str, Any], epochs: int) -> Any:
    from hgq.training import Constant, Linear, Log

    if beta['schedule'] == 'constant':
        return Constant(float(beta['value']))
    cls = Linear if beta['schedule'] == 'linear' else Log
    return cls(float(beta['start']), float(beta['end']), epochs)


def beta_callback(training: dict[str, Any], model: Any, resumed: bool) -> Any:
    """BetaScheduler of training.beta, or with training.target a BudgetController (resumed: from the
    model's current beta, so that a resumed run goes on where it stopped)."""
    from hgq.training import BetaScheduler, BudgetController
    from hgq.training._walk import qlayers

    target = training.get('target')
    if target is None:
        return BetaScheduler(beta_schedule(training['beta'], training['epochs']))
    unit = 'ebops' if 'ebops' in target else 'luts'
    beta_start = float(target.get('beta_start', 1e-6))
    layers = qlayers(model)
    if resumed and layers:
        beta_start = float(keras_value(layers[0].beta))
    return BudgetController(float(target[unit]), unit, beta_start=beta_start, gain=float(target.get('gain', 0.5)),
                            mode=target.get('mode', 'rate'), max_rate=float(target.get('max_rate', 0.05)))


def keras_value(variable: Any) -> Any:
    import keras

    return keras.ops.convert_to_numpy(variable)


def make_optimizer(training: dict[str, Any], steps_per_epoch: int, epochs: int) -> Any:
    import keras

    options = dict(training['optimizer'])
    name = options.pop('name')
    try:
        optimizer = keras.optimizers.get(name)
    except ValueError:
        raise ConfigError(f'training.optimizer.name = {name!r} is not a Keras optimizer (e.g. adam, sgd, '
                          'adamw, rmsprop)') from None
    learning_rate = float(options.pop('learning_rate', optimizer.learning_rate))
    if training['lr_schedule'] == 'cosine':
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, steps_per_epoch * epochs, alpha=0.01)
    try:
        return optimizer.__class__(learning_rate=learning_rate, **options)
    except TypeError as e:
        raise ConfigError(f'training.optimizer: {e}') from None


def _compile(model: Any, training: dict[str, Any], steps: int, epochs: int) -> None:
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(make_optimizer(training, steps, epochs), loss, metrics=['accuracy'])


def train_float(project: Project, config: dict[str, Any], data: Any, run_dir: Path) -> dict[str, Any] | None:
    """Train the float twin once (kept in float.json), so every report has the accuracy to aim for."""
    path = run_dir / FLOAT_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding='utf-8'))
    training = config['training']
    epochs = training['float_epochs']
    if epochs == 0:
        return None
    from hgq.training import ProgressBar

    model = project.build_model(config, quantized=False)
    steps = -(-len(data.x_train) // training['batch_size'])
    _compile(model, training, steps, epochs)
    print(f'float baseline: {epochs} epochs', flush=True)
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
              batch_size=training['batch_size'], verbose=0,
              callbacks=[ProgressBar(mode='overall', keys=('loss', 'accuracy'))])
    result = {'epochs': epochs, 'seconds': round(time.perf_counter() - start, 1),
              'val_accuracy': float(model.evaluate(data.x_val, data.y_val, verbose=0)[1]),
              'test_accuracy': float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])}
    write_json_atomic(path, result)
    print(f'float baseline: val accuracy {result["val_accuracy"]:.4f}, test {result["test_accuracy"]:.4f} '
          f'({result["seconds"]:.0f} s)', flush=True)
    return result


def _reconcile(run_dir: Path, epochs: int, model: Any) -> None:
    """Bring history.csv and the Pareto index to last.json's `epochs`. Per epoch they are written in turn
    (history row, last.keras/json, Pareto index), so a process killed between two writes leaves one a step
    ahead or behind: a history row of the epoch that is run again is dropped, and an epoch that last.keras
    holds but the index missed is offered to the front now (last.keras is that epoch's model)."""
    from hgq.training import ParetoCheckpoint, read_index

    history = run_dir / HISTORY_FILE
    rows: list[dict[str, str]] = []
    if history.is_file():
        lines = history.read_text(encoding='utf-8').splitlines(keepends=True)
        if len(lines) > epochs + 1:
            write_text_atomic(history, ''.join(lines[:epochs + 1]))
        rows = list(csv.DictReader(io.StringIO(''.join(lines[:epochs + 1]))))
    index = read_index(run_dir / CHECKPOINTS)
    behind = (0 if index is None else int(index['last_epoch'])) == epochs - 1
    row = next((r for r in rows if r.get('epoch') == str(epochs - 1)), None)
    if behind and row is not None:
        logs = {}
        for key, value in row.items():
            try:
                logs[key] = float(value)
            except (TypeError, ValueError):
                continue
        pareto = ParetoCheckpoint(run_dir / CHECKPOINTS, metrics=PARETO_METRICS)
        pareto.set_model(model)
        pareto.on_epoch_end(epochs - 1, logs)
        print(f'{run_dir}: offered epoch {epochs} (saved, but not yet in the Pareto index) to the front', flush=True)


def load_init(path: str | os.PathLike) -> Any:
    """The starting model of `hgq train --init`: a .keras model of hgq layers; fixed formats made learnable."""
    from hgq.importers.learnable import to_learnable
    from hgq.quantizers.hgq_quantizer import FixedQuantizer, HGQQuantizer

    from .files import BadFileError

    model = load_checkpoint(path, compile=False)
    quantizers = [q for layer in model.layers if hasattr(layer, 'quantizers') for q in layer.quantizers().values()]
    if not quantizers:
        raise BadFileError(f'--init file {str(path)!r}: model {model.name!r} has no hgq quantized layers; expected a '
                           'model of hgq layers (e.g. written by hgq import-qkeras or hgq train)')
    if any(isinstance(q, FixedQuantizer) for q in quantizers):
        print(f'{path}: fixed formats become learnable HGQ quantizers at the same (k, i, f)', flush=True)
        return to_learnable(model)
    if not any(isinstance(q, HGQQuantizer) for q in quantizers):
        print(f'{path}: warning: no learnable (HGQ or fixed) quantizer; its formats are trained as they are',
              flush=True)
    return model


def _check_init(model: Any, data: Any, path: str) -> None:
    classes = getattr(data, 'class_names', None)
    units = model.outputs[0].shape[-1]
    if classes and units != len(classes):
        raise ConfigError(f'--init {path}: the model has {units} outputs but the data has {len(classes)} classes')


def _start_or_resume(project: Project, config: dict[str, Any], run_dir: Path, restart: bool,
                     init: str | None = None) -> tuple[Any, int]:
    """(model, completed epochs): a fresh model (the project's, or `init`), or the saved state of an
    interrupted run with the same config and init."""
    import keras

    import hgq.layers  # noqa: F401 - registers the layers for loading
    from hgq.training import latest_state

    run_file = run_dir / RUN_FILE
    if restart:
        for stale in (RUN_FILE, FLOAT_FILE, HISTORY_FILE, 'last.json', 'last.keras'):
            (run_dir / stale).unlink(missing_ok=True)
        if (run_dir / CHECKPOINTS).is_dir():
            shutil.rmtree(run_dir / CHECKPOINTS)
    elif run_file.is_file():
        previous = read_run(run_dir)
        # a run from before the quantizers section: every activation saturated (the quantizers' own default)
        before = {'quantizers': {'activation_overflow': 'SAT'}, **previous['config']}
        if (before != config or previous['project_dir'] != str(project.directory)
                or previous.get('init') != init):
            raise ConfigError(f'{run_dir} holds a run of {previous["project"]} with another config, project or '
                              '--init; pass --restart to overwrite it, or choose another --out')
        state = latest_state(run_dir)
        if state is not None:
            model_path, epochs = state
            print(f'resuming {run_dir} after epoch {epochs}', flush=True)
            model = load_checkpoint(model_path)
            _reconcile(run_dir, epochs, model)
            return model, epochs
    model = load_init(init) if init is not None else project.build_model(config, quantized=True)
    run = {'format': RUN_FORMAT, 'project': project.name, 'project_dir': str(project.directory),
           'config': config, 'backend': keras.backend.backend(), 'created': time.strftime('%Y-%m-%d %H:%M:%S')}
    if init is not None:
        run['init'] = init
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, run)
    write_text_atomic(run_dir / 'config.yaml', dump_yaml(config))
    return model, 0


def train(project: Project, config: dict[str, Any], run_dir: str | os.PathLike, restart: bool = False,
          data: Any = None, init: str | os.PathLike | None = None,
          callbacks: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Train `project` as `config` says into `run_dir` (from the model in `init`, if given); returns the Pareto
    index (hgq.training.read_index). `callbacks` run after the run folder's own (so they see an epoch only
    once it is saved)."""
    import keras

    from hgq.layers.overflow import apply_activation_overflow
    from hgq.quantizers.schemes.mulaw import TieMu, mu_groups
    from hgq.training import (
        EBOPsLogger,
        LatestCheckpoint,
        ParetoCheckpoint,
        ProgressBar,
        ResetRanges,
        read_index,
    )
    from hgq.training.lut_cost import LUTLogger, use_cost

    run_dir = Path(run_dir)
    training = config['training']
    keras.utils.set_random_seed(training['seed'])
    if data is None:
        data = project.load_data(config)
    init = str(Path(init).resolve()) if init is not None else None
    model, done = _start_or_resume(project, config, run_dir, restart, init)
    data.check(tuple(model.inputs[0].shape[1:]))
    if init is not None:
        _check_init(model, data, init)
    # where activations saturate in hardware (config quantizers.activation_overflow); before the cost, since the
    # LUT cost counts saturation logic. An --init model keeps its own modes (an imported QKeras model's SAT is
    # part of what it computes)
    if init is None:
        apply_activation_overflow(model, config.get('quantizers', QUANTIZERS)['activation_overflow'])
    use_cost(model, training.get('cost', 'ebops'))  # before fit: the train step is traced with its cost
    train_float(project, config, data, run_dir)
    epochs = training['epochs']
    if done >= epochs:
        print(f'{run_dir}: all {epochs} epochs are done', flush=True)
        return read_index(run_dir / CHECKPOINTS)
    if done == 0:
        steps = -(-len(data.x_train) // training['batch_size'])
        _compile(model, training, steps, epochs)
    steer = beta_callback(training, model, resumed=done > 0)
    target = training.get('target') or {}
    # the LUT cost is logged (history.csv: lut_estimate) whenever it steers training or the budget
    lut_log = [LUTLogger()] if training.get('cost') == 'luts' or 'luts' in target else []
    # μ-law quantizers that share μ ('kind'/'model') are kept tied after every step (a per-batch hook, so
    # only when such groups exist)
    tie = [TieMu()] if any(len(group) > 1 for group in mu_groups(model).values()) else []
    print(f'HGQ training: {epochs - done} epochs, '
          f'{steer if training.get("target") else "beta " + str(training["beta"])}', flush=True)
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), initial_epoch=done,
              epochs=epochs, batch_size=training['batch_size'], verbose=0, callbacks=[
                  ResetRanges(), steer, EBOPsLogger(), *lut_log, *tie,
                  keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
                  LatestCheckpoint(run_dir),
                  ParetoCheckpoint(run_dir / CHECKPOINTS, metrics=PARETO_METRICS),
                  ProgressBar(mode='overall'), *callbacks,
              ])
    print(f'trained {epochs - done} epochs in {time.perf_counter() - start:.0f} s', flush=True)
    return read_index(run_dir / CHECKPOINTS)
