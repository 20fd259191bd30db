"""Every quantization scheme on one task and one recipe: test accuracy against Yosys LUTs, QAT and 64-sample PTQ.

One point = (task, scheme, bits, seed, mode) with mode 'ptq' (the seed's float model quantized by
`hgq.workflow.ptq.quantize_model` from 64 training samples) or 'qat' (the same model, then fine-tuned
--epochs epochs with Adam (--lr) + cosine decay and the scheme in every slot). HGQ (learned per-element widths)
runs as 'qat' in its own way: one fine-tune per seed whose beta ramps geometrically over the same epochs
(--hgq-ramp, projects/jets/config.yaml's ramp), and its checkpoints along the ramp (--hgq-checkpoints of them)
are its points, in place of bits. Why not one constant beta per point: Adam moves a bit-width by about lr per
step, so a short fine-tune gives every beta the same widths (5 epochs at 1e-3: beta 1e-5 and 1e-4 gave the
identical model, 210,825 EBOPs, docs/quantizers.md "Results"); a ramp is how HGQ is trained anyway.
Every scheme gets the same float model, data split,
optimizer, epochs and first/last-layer treatment: every slot (input of the first layer and kernel of the last
included) carries the scheme; biases too.

Per point: test accuracy of the exact emulator (`hgq.ir.predict`), exact EBOPs, the RTL written with
`write_rtl(latency_cutoff=5, clock_period=5)` (pipelined at 5 ns: cycles), da4ml's cost, Yosys LUTs and FFs
(`RTLProject.synthesize()`, `synth_xilinx`), training seconds, and (--verilator) the Verilator-vs-emulator
mismatch count of `hgq synth`'s check (`hgq.workflow.synth._check_rtl`, random inputs over twice the range
plus the calibration inputs).

Resumable: each point is one content-keyed JSON file under --cache (atomic writes,
`hgq.training.files.write_json_atomic`); a point already there is not recomputed, so the sweep can run in
parts (one scheme, one seed, one mode) and be interrupted at any time. `--report` only reads the cache and
writes bench/results/quantizers.json, the table and the plot.

    KERAS_BACKEND=jax nice -n 10 python bench/quantizers.py --seeds 0 1 2 --schemes lsq --bits 2 3 4 8
    python bench/quantizers.py --task fmnist14 --seeds 0 1 --epochs 20 --no-synth     # the small CNN
    python bench/quantizers.py --synth-front --verilator 2000     # Yosys on the global front, Verilator on a seed
    python bench/quantizers.py --schemes hgq --seeds 0 --modes qat           # one beta ramp per seed
    python bench/quantizers.py --report                                      # table + JSON + plot
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault('KERAS_BACKEND', 'jax')

import numpy as np  # noqa: E402
from common import REPO, format_table, machine_info, write_json  # noqa: E402
from tasks import TASKS, Task  # noqa: E402

Spec = dict[str, Any] | None
#: scheme -> (bits -> (weight spec, activation spec)). PWLQ's index has b + 1 bits and AuGQ(K=2)'s b + 1: both
#: run at bits - 1 so every scheme at "b bits" stores a b-bit index (docs/quantizers.md, PWLQ and AuGQ).
SCHEMES: dict[str, Callable[[int], tuple[Spec, Spec]]] = {
    'lsq': lambda b: ({'scheme': 'lsq', 'bits': b}, {'scheme': 'lsq', 'bits': b}),
    **{f'mulaw_{share}_{"learn" if learn else "fixed"}': (
        lambda b, share=share, learn=learn: (
            {'scheme': 'mulaw', 'bits': b, 'share': share, 'learnable_mu': learn},
            {'scheme': 'mulaw', 'bits': b, 'share': share, 'learnable_mu': learn}))
       for share in ('layer', 'kind', 'model') for learn in (True, False)},
    'post_lsq': lambda b: ({'scheme': 'post', 'bits': b}, {'scheme': 'lsq', 'bits': b}),
    'post_asq': lambda b: ({'scheme': 'post', 'bits': b}, {'scheme': 'asq', 'bits': b}),
    'lsq_asq': lambda b: ({'scheme': 'lsq', 'bits': b}, {'scheme': 'asq', 'bits': b}),
    'augq': lambda b: ({'scheme': 'augq', 'bits': b - 1, 'intervals': 2},
                       {'scheme': 'augq', 'bits': b - 1, 'intervals': 2}),
    'pwlq': lambda b: ({'scheme': 'pwlq', 'bits': b - 1}, {'scheme': 'pwlq', 'bits': b - 1}),
    # HGQ combined with the scheme that beat it (LSQ 4-bit, docs/quantizers.md "Results"): HGQ's learned
    # per-element weight widths on the beta ramp, LSQ's learned step on b-bit activations
    'hgq_lsq': lambda b: (None, {'scheme': 'lsq', 'bits': b}),
}
ALL_SCHEMES = ['hgq', *SCHEMES]
#: schemes trained on HGQ's beta ramp, their points being checkpoints along it
RAMPED = ('hgq', 'hgq_lsq')
CALIBRATION = 64
#: samples calibrating a QAT model's activation ranges before export (HGQ needs its ranges; the same for all)
QAT_CALIBRATION = 20_000
#: HGQ's beta ramp in the QAT slot: projects/jets/config.yaml's (start, end)
HGQ_RAMP = (1.5e-6, 3e-3)


def float_model(task: Task, seed: int, cache: Path) -> Any:
    """The seed's float model, trained once and kept in the cache (every scheme starts from it)."""
    import keras

    data = task.data
    path = cache / f'float_{task.name}_s{seed}_e{task.float_epochs}.keras'
    if path.is_file():
        return keras.models.load_model(path)
    keras.utils.set_random_seed(seed)
    model = task.build()
    steps = int(np.ceil(len(data.x_train) / 1024))
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, task.float_epochs * steps))
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])
    model.fit(data.x_train, data.y_train, epochs=task.float_epochs, batch_size=1024, verbose=0)
    from hgq.training.files import save_model_atomic

    save_model_atomic(model, path)
    return model


def point_key(point: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(point, sort_keys=True).encode()).hexdigest()[:16]


def specs(point: dict[str, Any]) -> tuple[Spec, Spec]:
    if point['scheme'] == 'hgq':
        return None, None
    return SCHEMES[point['scheme']](point['bits'])


def input_overrides(fmodel: Any, activations: Spec) -> dict[str, dict[str, Spec]] | None:
    """ASQ cannot sit on the model's input: its adapter would read the float input, which no hardware port
    carries (the IR refuses it, 'dense: its input is not quantized'). So an ASQ scheme's first slot is LSQ at
    the same bits; every other activation slot is ASQ."""
    if not activations or activations.get('scheme') != 'asq':
        return None
    first = next(layer for layer in fmodel.layers if layer.__class__.__name__ != 'InputLayer')
    return {first.name: {'input_quantizer': {'scheme': 'lsq', 'bits': activations['bits']}}}


def model_path(cache: Path, point: dict[str, Any], index: int) -> Path:
    """Where a point's trained (and calibrated) model is kept, so Yosys or Verilator can be added later
    without training again (cache/models is git-ignored: ~100 kB each)."""
    return cache / 'models' / f'{point_key(point)}_{index}.keras'


def checkpoint_epochs(epochs: int, count: int) -> list[int]:
    """The `count` epochs (1-based, the last included) at which an HGQ ramp's checkpoints are taken."""
    return sorted({max(1, round(epochs * (k + 1) / count)) for k in range(count)})


def qat(model: Any, point: dict[str, Any], data: Any, work: Path) -> tuple[float, list[tuple[dict[str, Any], Any]]]:
    """Fine-tune `model` with the shared recipe; (seconds, [(row fields, model)]): one model, or HGQ's checkpoints."""
    import keras

    from hgq.quantizers.schemes.mulaw import TieMu, mu_groups
    from hgq.training import BetaScheduler, Log, ResetRanges
    from hgq.training.files import save_model_atomic

    keras.utils.set_random_seed(point['seed'])
    epochs = point['epochs']
    steps = int(np.ceil(len(data.x_train) / 1024))
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(point.get('lr', 1e-3), epochs * steps))
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])
    callbacks: list[Any] = [ResetRanges()]
    saved: list[tuple[dict[str, Any], Path]] = []
    work.mkdir(parents=True, exist_ok=True)
    if point['scheme'] in RAMPED:
        ramp = Log(*point['beta_ramp'], epochs)
        callbacks.append(BetaScheduler(ramp))
        wanted = set(checkpoint_epochs(epochs, point['checkpoints']))

        class Keep(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                if epoch + 1 in wanted:
                    path = work / f'epoch-{epoch + 1:04d}.keras'
                    save_model_atomic(self.model, path)
                    saved.append(({'checkpoint_epoch': epoch + 1, 'beta': float(f'{ramp(epoch):.3g}')}, path))

        callbacks.append(Keep())
    if any(len(g) > 1 for g in mu_groups(model).values()):
        callbacks.append(TieMu())
    t0 = time.perf_counter()
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=1024, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - t0
    if not saved:
        return seconds, [({}, model)]
    return seconds, [(extra, keras.models.load_model(path)) for extra, path in saved]


def run_point(point: dict[str, Any], task: Any, cache: Path, synth: bool | set[int], verilator: int | dict[int, int]
              ) -> list[dict[str, Any]]:
    """Train (or only calibrate), export, synthesize and check one point; the rows that go into its JSON
    (one row, or one per checkpoint of an HGQ ramp). `synth`/`verilator` may name the rows (indices) that get
    Yosys / a Verilator check of that many inputs. Every model is kept (model_path)."""
    import shutil

    import keras

    from hgq.training import calibrate
    from hgq.training.files import save_model_atomic
    from hgq.workflow.ptq import quantize_model

    data = task.data
    t0 = time.perf_counter()
    fmodel = float_model(task, point['seed'], cache)
    weights, activations = specs(point)
    overrides = input_overrides(fmodel, activations)
    model = quantize_model(fmodel, weights=weights, activations=activations, overrides=overrides,
                           calibration=data.x_train[:CALIBRATION])
    base: dict[str, Any] = {**point, 'weights': weights, 'activations': activations, 'train_s': 0.0}
    if overrides:
        base['overrides'] = overrides
    work = cache / 'rtl' / point_key(point)
    models = [({}, model)]
    if point['mode'] == 'qat':
        seconds, models = qat(model, point, data, work / 'checkpoints')
        base['train_s'] = round(seconds, 1)
    rows = []
    for i, (extra, m) in enumerate(models):
        if point['mode'] == 'qat':
            calibrate(m, data.x_train[:QAT_CALIBRATION])
        model_path(cache, point, i).parent.mkdir(parents=True, exist_ok=True)
        save_model_atomic(m, model_path(cache, point, i))
        rows.append(evaluate(m, {**base, **extra}, data, work / 'rtl', *row_tasks(i, synth, verilator)))
    wall = round(time.perf_counter() - t0, 1)
    for row in rows:
        row['wall_s'] = wall
    shutil.rmtree(work, ignore_errors=True)
    keras.backend.clear_session()
    return rows


def row_tasks(index: int, synth: bool | set[int], verilator: int | dict[int, int]) -> tuple[bool, int]:
    """(Yosys?, Verilator inputs) of row `index` when they are given for all rows or per row."""
    do_synth = index in synth if isinstance(synth, set) else synth
    check = verilator.get(index, 0) if isinstance(verilator, dict) else verilator
    return do_synth, check


def evaluate(model: Any, row: dict[str, Any], data: Any, rtl_dir: Path, synth: bool, verilator: int) -> dict[str, Any]:
    """`row` with the model's exact accuracy, EBOPs, RTL cost and latency, Yosys counts, Verilator mismatches."""
    from hgq import ir
    from hgq.export.rtl import write_rtl
    from hgq.training import exact_ebops

    row = dict(row)
    row['ebops'] = float(exact_ebops(model))
    graph = ir.from_model(model)
    pred = ir.predict(graph, data.x_test.astype(np.float64))
    row['test_accuracy'] = float(np.mean(np.argmax(pred, axis=1) == data.y_test))
    try:
        prj = write_rtl(graph, rtl_dir, 'top', latency_cutoff=5, clock_period=5)
    except NotImplementedError as err:  # a design the RTL backend refuses (it says why): accuracy stays
        row['rtl_error'] = str(err)
        return row
    row['da4ml_cost'] = float(prj.comb.cost)
    row['latency_cycles'] = int(prj.latency.cycles)
    if synth:
        rep = prj.synthesize()
        row.update({'LUT': rep['LUT'], 'FF': rep['FF'], 'yosys_s': rep['yosys_seconds']})
    if verilator:
        from hgq.workflow.synth import SynthSettings, _check_rtl

        settings = SynthSettings(out_dir=str(rtl_dir.parent), latency_cutoff=5, clock_ns=5, check=verilator,
                                 name='top')
        res = _check_rtl(settings, graph, prj, data.x_train[:CALIBRATION], {}, nproc=1)
        row.update({'simulator': res['simulator'], 'mismatches': res['mismatches'], 'sim_outputs': res['outputs']})
    return row


def complete(point: dict[str, Any], rows: list[dict[str, Any]], task: Any, cache: Path, synth: set[int],
             verilator: dict[int, int], redo: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """`rows` evaluated again from the kept models (trained again, the same seed, where a model is missing):
    the rows in `redo` (RTL cost only), with Yosys on the rows in `synth` and Verilator checks as asked; a
    row's training seconds are kept."""
    import keras

    chosen = sorted(synth | set(verilator) | set(redo))
    missing = [i for i in chosen if not model_path(cache, point, i).is_file()]
    if missing:  # trained again: the other rows keep their hardware results where the model came out the same
        fresh = run_point(point, task, cache, synth, verilator)
        for old, new in zip(rows, fresh):
            if _same_design(old, new):
                new.update({k: old[k] for k in HARDWARE_KEYS if k in old and k not in new})
        return fresh
    data = task.data
    work = cache / 'rtl' / point_key(point)
    out = list(rows)
    for i in chosen:
        model = keras.models.load_model(model_path(cache, point, i))
        keep = {k: rows[i][k] for k in ('train_s', 'wall_s') if k in rows[i]}
        base = {k: v for k, v in rows[i].items() if k not in RESULT_KEYS}
        out[i] = {**evaluate(model, base, data, work / 'rtl', *row_tasks(i, synth, verilator)), **keep}
        if i not in redo and _same_design(rows[i], out[i]):  # e.g. Verilator added: keep the old Yosys counts
            out[i].update({k: rows[i][k] for k in HARDWARE_KEYS if k in rows[i] and k not in out[i]})
        keras.backend.clear_session()
    return out


def _same_design(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a re-evaluated row is the design its old hardware results were measured on (the RTL backend
    may have changed since: then da4ml's cost differs and the old Yosys/Verilator results are dropped)."""
    return all(old.get(k) == new.get(k) for k in ('test_accuracy', 'ebops', 'da4ml_cost', 'latency_cycles'))


#: what Yosys and Verilator add to a row
HARDWARE_KEYS = ('LUT', 'FF', 'yosys_s', 'simulator', 'mismatches', 'sim_outputs')
#: the fields `evaluate` fills in (everything else in a row describes the point)
RESULT_KEYS = ('ebops', 'test_accuracy', 'da4ml_cost', 'latency_cycles', 'LUT', 'FF', 'yosys_s', 'simulator',
               'mismatches', 'sim_outputs', 'rtl_error')


def config_of(row: dict[str, Any]) -> tuple:
    """The group a row is averaged in over seeds (aggregate)."""
    return row['task'], row['scheme'], row['bits'], row['beta'], row['mode'], row['epochs']


def front_work(cached: dict[str, list[dict[str, Any]]], verilator: int) -> dict[str, tuple[set[int], dict[int, int]]]:
    """{point key: (rows for Yosys, {row: Verilator inputs})}: every seed of the configurations on the global
    front (QAT and PTQ, counted in da4ml's estimate), and seed 0 of each scheme's cheapest QAT configuration (to
    re-check da4ml's estimate against Yosys on every scheme); Verilator on the lowest seed of each."""
    agg = aggregate([r for rows in cached.values() for r in rows])
    tasks = {a['task'] for a in agg}
    chosen = {config_of(a) for t in tasks for m in ('qat', 'ptq')
              for a in pareto([a for a in agg if a['mode'] == m and a['task'] == t], 'da4ml_cost')}
    for t in tasks:
        for scheme in ALL_SCHEMES:
            mine = [a for a in agg if (a['task'], a['scheme'], a['mode']) == (t, scheme, 'qat') and a['da4ml_cost']]
            if mine:
                chosen.add(config_of(min(mine, key=lambda a: a['da4ml_cost'])))
    seeds = {c: min(r['seed'] for rows in cached.values() for r in rows if config_of(r) == c) for c in chosen}
    work: dict[str, tuple[set[int], dict[int, int]]] = {}
    for key, rows in cached.items():
        synth = {i for i, r in enumerate(rows) if config_of(r) in chosen and r.get('LUT') is None}
        checks = {i: verilator for i, r in enumerate(rows) if verilator and config_of(r) in chosen
                  and r['seed'] == seeds[config_of(r)] and 'mismatches' not in r}
        if synth or checks:
            work[key] = (synth, checks)
    return work


def points(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    float_epochs = TASKS[args.task].float_epochs
    for seed in args.seeds:
        for scheme in args.schemes:
            for mode in args.modes:
                if scheme == 'hgq':
                    if mode == 'ptq':
                        out.append({'task': args.task, 'scheme': 'hgq', 'bits': None, 'beta': None, 'seed': seed,
                                    'mode': 'ptq', 'epochs': 0, 'float_epochs': float_epochs})
                        continue
                    out.append({'task': args.task, 'scheme': 'hgq', 'bits': None, 'beta': None,
                                'beta_ramp': list(args.hgq_ramp), 'checkpoints': args.hgq_checkpoints, 'seed': seed,
                                'mode': mode, 'epochs': args.epochs, 'lr': args.lr, 'float_epochs': float_epochs})
                    continue
                for bits in args.bits:
                    recipe = {'epochs': args.epochs, 'lr': args.lr} if mode == 'qat' else {'epochs': 0}
                    if scheme in RAMPED and mode == 'qat':
                        recipe.update({'beta_ramp': list(args.hgq_ramp), 'checkpoints': args.hgq_checkpoints})
                    out.append({'task': args.task, 'scheme': scheme, 'bits': bits, 'beta': None, 'seed': seed,
                                'mode': mode, **recipe, 'float_epochs': float_epochs})
    return out


def pareto(rows: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """Rows not dominated on (test accuracy max, cost min)."""
    ok = sorted((r for r in rows if r.get(cost) is not None), key=lambda r: (r[cost], -r['acc_mean']))
    front, best = [], -1.0
    for r in ok:
        if r['acc_mean'] > best:
            front.append(r)
            best = r['acc_mean']
    return front


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread (min, max, std) over seeds per (scheme, bits/beta, mode)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(config_of(r), []).append(r)
    # HGQ's checkpoints at the same epoch of the same ramp share a beta, so they group across seeds
    out = []
    for (task, scheme, bits, beta, mode, epochs), g in groups.items():
        acc = [r['test_accuracy'] for r in g]

        def mean(key: str, g: list[dict[str, Any]] = g) -> float | None:
            vals = [r[key] for r in g if r.get(key) is not None]
            return float(np.mean(vals)) if vals else None

        out.append({'task': task, 'scheme': scheme, 'bits': bits, 'beta': beta, 'mode': mode, 'epochs': epochs,
                    'seeds': len(g),
                    'acc_mean': float(np.mean(acc)), 'acc_std': float(np.std(acc)), 'acc_min': min(acc),
                    'acc_max': max(acc), 'ebops': mean('ebops'), 'LUT': mean('LUT'), 'FF': mean('FF'),
                    'da4ml_cost': mean('da4ml_cost'), 'latency_cycles': mean('latency_cycles'),
                    'train_s': mean('train_s'),
                    'mismatches': sum(r['mismatches'] for r in g if 'mismatches' in r) if any(
                        'mismatches' in r for r in g) else None,
                    'verilator_checked': sum('mismatches' in r for r in g)})
        a = out[-1]
        # Yosys where every seed of the group was synthesized, else da4ml's estimate (0.95-1.07x of Yosys)
        yosys = all(r.get('LUT') is not None for r in g)
        a['luts'], a['counter'] = (a['LUT'], 'Yosys') if yosys else (a['da4ml_cost'], 'da4ml est.')
    return sorted(out, key=lambda a: (a['task'], a['mode'], ALL_SCHEMES.index(a['scheme']), a['bits'] or 0,
                                      a['beta'] or 0))


def plot(agg: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 6), sharey=True)
    cmap = plt.get_cmap('tab20')
    for ax, mode in zip(axes, ('qat', 'ptq')):
        rows = [a for a in agg if a['mode'] == mode and a['luts']]
        for i, scheme in enumerate(ALL_SCHEMES):
            g = sorted((a for a in rows if a['scheme'] == scheme), key=lambda a: a['luts'])
            if g:
                ax.errorbar([a['luts'] for a in g], [a['acc_mean'] for a in g], yerr=[a['acc_std'] for a in g],
                            marker='o' if scheme in RAMPED else '.', ms=6, lw=0.8, color=cmap(i % 20), label=scheme)
        front = pareto(rows, 'luts')
        ax.step([a['luts'] for a in front], [a['acc_mean'] for a in front], where='post', color='k', lw=1.5,
                label='Pareto front')
        ax.set_xscale('log')
        counters = sorted({a['counter'] for a in rows})
        ax.set_xlabel(f"LUTs ({' / '.join(counters)}: Yosys synth_xilinx where every seed was synthesized)")
        ax.set_title(f'{title}, {mode.upper()}')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('test accuracy (exact emulator), mean ± std over seeds')
    axes[1].legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def point_rows(cached: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one cached point (an HGQ ramp's file holds one row per checkpoint)."""
    return cached['rows'] if 'rows' in cached else [cached]


def versus_hgq(agg: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each QAT scheme configuration against HGQ's checkpoints of the same task and epochs: the cheapest HGQ
    checkpoint (mean over seeds) that reaches at least its mean accuracy, and HGQ's best accuracy within its
    LUTs. `lut_ratio` > 1: the scheme needs more LUTs than HGQ for that accuracy; < 1: it beats HGQ there."""
    out = []
    for a in agg:
        if a['mode'] != 'qat' or a['scheme'] == 'hgq' or not a['luts']:
            continue
        hgq = [h for h in agg if (h['task'], h['mode'], h['scheme'], h['epochs']) == (a['task'], 'qat', 'hgq',
                                                                                    a['epochs']) and h['luts']]
        if not hgq:
            continue
        reach = [h for h in hgq if h['acc_mean'] >= a['acc_mean']]
        within = [h for h in hgq if h['luts'] <= a['luts']]
        need = min(reach, key=lambda h: h['luts']) if reach else None
        best = max(within, key=lambda h: h['acc_mean']) if within else None
        out.append({'task': a['task'], 'scheme': a['scheme'], 'bits': a['bits'], 'acc_mean': a['acc_mean'],
                    'luts': a['luts'], 'counter': a['counter'],
                    'hgq_luts_at_acc': need and need['luts'], 'hgq_beta_at_acc': need and need['beta'],
                    'lut_ratio': need and a['luts'] / need['luts'],
                    'hgq_acc_at_luts': best and best['acc_mean'],
                    'acc_gain_vs_hgq': best and a['acc_mean'] - best['acc_mean']})
    return out


def report(args: argparse.Namespace) -> None:
    rows = [r for p in sorted(args.cache.glob('point_*.json')) for r in point_rows(json.loads(p.read_text()))]
    agg = aggregate(rows)
    cols = ['scheme', 'bits', 'beta', 'mode', 'epochs', 'seeds', 'acc_mean', 'acc_std', 'ebops', 'luts', 'counter',
            'LUT', 'FF', 'da4ml_cost', 'latency_cycles', 'train_s', 'mismatches', 'verilator_checked']

    def fmt(v: Any) -> Any:
        return f'{v:.4g}' if isinstance(v, float) else v

    print(format_table(cols, [[fmt(a[c]) for c in cols] for a in agg]))
    fronts = {t: {m: [(a['scheme'], a['bits'], a['beta'])
                      for a in pareto([a for a in agg if (a['task'], a['mode']) == (t, m)], 'luts')]
                  for m in ('qat', 'ptq')} for t in dict.fromkeys(a['task'] for a in agg)}
    for t, f in fronts.items():
        print(f'Pareto front ({t}, QAT, LUT):', f['qat'])
    versus = versus_hgq(agg)
    vcols = ['task', 'scheme', 'bits', 'acc_mean', 'luts', 'hgq_luts_at_acc', 'lut_ratio', 'hgq_acc_at_luts',
             'acc_gain_vs_hgq']
    print(format_table(vcols, [[fmt(v[c]) for c in vcols] for v in versus]))
    payload = {'benchmark': 'quantizers', 'machine': machine_info(),
               'command': ' '.join(['python', 'bench/quantizers.py', *sys.argv[1:]]),
               'settings': {'tasks': {t: {'title': TASKS[t].title, 'float_epochs': TASKS[t].float_epochs}
                                      for t in fronts},
                            'ptq_calibration_samples': CALIBRATION,
                            'qat': 'quantize_model(float) then Adam (point lr, 1e-3 where absent) cosine, batch '
                                   '1024, ResetRanges (+TieMu for shared mu; HGQ: BetaScheduler(Log ramp) and its '
                                   'checkpoints as points); calibrate on 20,000 training samples before export',
                            'rtl': 'write_rtl(latency_cutoff=5, clock_period=5)', 'yosys': 'RTLProject.synthesize()',
                            'bits_note': 'pwlq and augq(K=2) run at bits-1 so the index has `bits` bits'},
               'points': rows, 'aggregate': agg, 'pareto_lut': fronts, 'versus_hgq': versus,
               'failed': [json.loads(p.read_text()) for p in sorted(args.cache.glob('failed_*.json'))],
               'wall_s_by_scheme': {s: round(sum(r['wall_s'] for r in rows if r['scheme'] == s), 1)
                                    for s in dict.fromkeys(r['scheme'] for r in rows)}}
    write_json(args.json, payload)
    for t in fronts:
        mine = [a for a in agg if a['task'] == t]
        if any(a['luts'] for a in mine):
            suffix = '' if t == 'jets' else f'_{t}'
            plot(mine, TASKS[t].title, args.json.with_name(f'{args.json.stem}{suffix}.png'))
    print(f'wrote {args.json} ({len(rows)} points)')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', default='jets', choices=list(TASKS),
                        help='jets: the 16-64-32-32-5 MLP; fmnist14: a small CNN on 2x2-averaged Fashion-MNIST')
    parser.add_argument('--schemes', nargs='+', default=ALL_SCHEMES, choices=ALL_SCHEMES)
    parser.add_argument('--bits', nargs='+', type=int, default=[2, 3, 4, 8])
    parser.add_argument('--hgq-ramp', nargs=2, type=float, default=list(HGQ_RAMP), metavar=('START', 'END'),
                        help="HGQ's geometric beta ramp over the QAT epochs")
    parser.add_argument('--hgq-checkpoints', type=int, default=8, help="HGQ checkpoints along the ramp (points)")
    parser.add_argument('--lr', type=float, default=3e-3, help='QAT learning rate (Adam, cosine decay; all schemes)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--modes', nargs='+', default=['qat', 'ptq'], choices=['qat', 'ptq'])
    parser.add_argument('--epochs', type=int, default=60, help='QAT epochs (the same for every scheme)')
    parser.add_argument('--no-synth', action='store_true', help='skip Yosys (da4ml cost only)')
    parser.add_argument('--verilator', type=int, default=0, metavar='N',
                        help='Verilator check with N random inputs per point (0: none)')
    parser.add_argument('--cache', type=Path, default=REPO / 'bench/results/quantizers_cache')
    parser.add_argument('--json', type=Path, default=REPO / 'bench/results/quantizers.json')
    parser.add_argument('--report', action='store_true', help='only aggregate the cache')
    parser.add_argument('--retrace', nargs='+', default=[], choices=ALL_SCHEMES, metavar='SCHEME',
                        help='evaluate the cached points of these schemes again from their kept models (after a '
                             'change to the RTL backend); with --no-synth, old Yosys counts are dropped')
    parser.add_argument('--synth-max-luts', type=float, default=None, metavar='N',
                        help="with --synth-front: only designs of at most N LUTs (da4ml's estimate)")
    parser.add_argument('--synth-front', action='store_true',
                        help="no new points: Yosys on every seed of the cached global front's configurations (and "
                             "on seed 0 of each scheme's cheapest QAT one), Verilator (--verilator N) on one seed")
    args = parser.parse_args(argv)
    if args.report:
        report(args)
        return
    from hgq.training.files import write_json_atomic

    args.cache.mkdir(parents=True, exist_ok=True)
    task = TASKS[args.task]
    todo = points(args)
    start = time.perf_counter()
    if args.synth_front:
        synth_front(args, task, todo, start)
        return
    for i, point in enumerate(todo):
        path = args.cache / f'point_{point_key(point)}.json'
        old = point_rows(json.loads(path.read_text())) if path.is_file() else None
        retrace = point['scheme'] in args.retrace
        if old and not retrace and all((args.no_synth or 'LUT' in r) and (not args.verilator or 'mismatches' in r)
                                       and 'rtl_error' not in r for r in old):
            continue
        try:
            if old and all(model_path(args.cache, point, i).is_file() for i in range(len(old))):
                every = set(range(len(old)))
                redo = frozenset(every if retrace else {n for n, r in enumerate(old) if 'rtl_error' in r})
                rows = complete(point, old, task, args.cache, set() if args.no_synth else every,
                                dict.fromkeys(every, args.verilator) if args.verilator else {}, redo)
            else:
                rows = run_point(point, task, args.cache, not args.no_synth, args.verilator)
        except Exception as err:  # one broken scheme must not stop the sweep; the error is recorded
            print(f'[{i + 1}/{len(todo)}] {point}: FAILED {type(err).__name__}: {err}', flush=True)
            write_json_atomic(args.cache / f'failed_{point_key(point)}.json', {**point, 'error': repr(err)})
            continue
        save_point(args.cache, point, rows)
        (args.cache / f'failed_{point_key(point)}.json').unlink(missing_ok=True)
        for row in rows:
            print(f"[{i + 1}/{len(todo)}] {point['scheme']} b={row['bits']} beta={row['beta']} s{point['seed']} "
                  f"{point['mode']}: acc {row['test_accuracy']:.4f}, EBOPs {row['ebops']:.0f}, LUT {row.get('LUT')}, "
                  f"FF {row.get('FF')}, {row.get('latency_cycles')} cyc, mism {row.get('mismatches')}, "
                  f"{row['wall_s']} s {'(RTL refused) ' if 'rtl_error' in row else ''}"
                  f"(total {time.perf_counter() - start:.0f} s)", flush=True)


def save_point(cache: Path, point: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    from hgq.training.files import write_json_atomic

    path = cache / f'point_{point_key(point)}.json'
    write_json_atomic(path, rows[0] if len(rows) == 1 and point['scheme'] not in RAMPED else {**point, 'rows': rows})


def synth_front(args: argparse.Namespace, task: Any, todo: list[dict[str, Any]], start: float) -> None:
    """Yosys (and Verilator) on the cached points that front_work picks, cheapest first; resumable."""
    by_key = {point_key(p): p for p in todo}
    cached = {k: point_rows(json.loads((args.cache / f'point_{k}.json').read_text())) for k in by_key
              if (args.cache / f'point_{k}.json').is_file()}
    work = front_work(cached, args.verilator)
    if args.synth_max_luts:  # Yosys takes ~3.7 ms per LUT here: the ~1M-LUT 8-bit designs would take hours
        def small(key: str, rows: set[int] | dict[int, int]) -> set[int]:
            return {i for i in rows if (cached[key][i].get('da4ml_cost') or 0) <= args.synth_max_luts}

        skipped = sum(len(s) - len(small(k, s)) for k, (s, _) in work.items())
        work = {k: (small(k, s), {i: c[i] for i in small(k, c)}) for k, (s, c) in work.items()}
        work = {k: v for k, v in work.items() if v[0] or v[1]}
        print(f'--synth-max-luts {args.synth_max_luts}: {skipped} Yosys runs on larger designs skipped', flush=True)
    order = sorted(work, key=lambda k: sum(cached[k][i].get('da4ml_cost') or 0 for i in work[k][0]))
    print(f'--synth-front: {sum(len(s) for s, _ in work.values())} Yosys runs, '
          f'{sum(len(c) for _, c in work.values())} Verilator checks, {len(order)} points', flush=True)
    for n, key in enumerate(order):
        synth, checks = work[key]
        rows = complete(by_key[key], cached[key], task, args.cache, synth, checks)
        save_point(args.cache, by_key[key], rows)
        for i in sorted(synth | set(checks)):
            r = rows[i]
            print(f"[{n + 1}/{len(order)}] {r['scheme']} b={r['bits']} beta={r['beta']} s{r['seed']} {r['mode']}: "
                  f"acc {r['test_accuracy']:.4f}, da4ml {r.get('da4ml_cost')}, LUT {r.get('LUT')}, FF {r.get('FF')}, "
                  f"Yosys {r.get('yosys_s')} s, mism {r.get('mismatches')}/{r.get('sim_outputs')} "
                  f"(total {time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == '__main__':
    main()
