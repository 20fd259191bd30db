"""How well do EBOPs predict the LUTs of our RTL? Train a set of MLPs, export each to RTL, synthesize with Yosys.

Each model (MLPs from 16-8-5 to 16-64-32-32-5, beta from 0 to 1e-4, initial fractional bits from narrow to
wide, some with fixed formats) is trained a few epochs on `hgq.data.toy.make_toy_jets`, calibrated
(`hgq.training.calibrate`), traced (`hgq.ir.from_model`), written as one combinational Verilog module
(`hgq.export.rtl.write_rtl(..., latency_cutoff=-1)`) and synthesized with Yosys `synth_xilinx`
(`RTLProject.synthesize()`; no Verilator build is needed for cell counts). Per model: parameters, exact EBOPs
(`exact_ebops`), da4ml's `comb.cost` LUT estimate, Yosys LUT / FF / CARRY4 / depth, times. Then
LUT = a*EBOPs + b (least squares) and log LUT = s*log EBOPs + c, with R^2 and relative errors.

    KERAS_BACKEND=jax python bench/ebops_vs_luts.py            # ~5 min on 2 shared cores (277 s measured)
    python bench/ebops_vs_luts.py --no-synth                    # train + trace only (EBOPs, da4ml cost)

Writes bench/results/ebops_vs_luts.json and bench/results/ebops_vs_luts.png.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault('KERAS_BACKEND', 'jax')

import numpy as np  # noqa: E402
from common import REPO, format_table, machine_info, write_json  # noqa: E402


@dataclass(frozen=True)
class Config:
    name: str
    widths: tuple[int, ...]  # 16, hidden..., 5
    beta: float
    f_weight: float | None = None  # kernel and bias f_init (None: the library default, 8)
    f_act: float | None = None  # input quantizer f_init (None: the library default, 6)
    trainable_f: bool = True
    notes: str = ''


# Chosen so that the designs span ~150 to ~15k LUTs (Yosys time grows about linearly, ~5 s per 1k LUTs).
CONFIGS = (
    Config('mlp4_w2a1_b1e-4', (16, 4, 5), 1e-4, 2, 1),
    Config('mlp8_w2a2_b1e-5', (16, 8, 5), 1e-5, 2, 2),
    Config('mlp8_w4a3_b0', (16, 8, 5), 0.0, 4, 3),
    Config('mlp16_w3a2_b1e-5', (16, 16, 5), 1e-5, 3, 2),
    Config('mlp16_default_b1e-4', (16, 16, 5), 1e-4),
    Config('mlp32_w4a2_b1e-6', (16, 32, 5), 1e-6, 4, 2),
    Config('mlp32x32_w2a2_b1e-4', (16, 32, 32, 5), 1e-4, 2, 2),
    Config('mlp64x32_w2a1_b1e-4', (16, 64, 32, 5), 1e-4, 2, 1),
    Config('jets_w2a1_b1e-5', (16, 64, 32, 32, 5), 1e-5, 2, 1),
    Config('jets_w3a2_b1e-4', (16, 64, 32, 32, 5), 1e-4, 3, 2),
    Config('fixed_narrow_32x16_w2a1', (16, 32, 16, 5), 0.0, 2, 1, trainable_f=False, notes='fixed narrow'),
    Config('fixed_wide_8_w10a8', (16, 8, 5), 0.0, 10, 8, trainable_f=False, notes='fixed wide'),
    Config('fixed_wide_16x8_w6a5', (16, 16, 8, 5), 0.0, 6, 5, trainable_f=False, notes='fixed wide'),
)


def build(cfg: Config) -> Any:
    import keras

    from hgq.layers import QDense

    def spec(f: float | None) -> dict[str, Any] | None:
        if f is None and cfg.trainable_f:
            return None
        out: dict[str, Any] = {'trainable_f': cfg.trainable_f}
        if f is not None:
            out['f_init'] = f
        return out

    layers: list[Any] = [keras.Input((cfg.widths[0],))]
    for n, units in enumerate(cfg.widths[1:]):
        last = n == len(cfg.widths) - 2
        layers.append(QDense(units, activation=None if last else 'relu', beta=cfg.beta, name=f'dense{n}',
                             input_quantizer=spec(cfg.f_act), kernel_quantizer=spec(cfg.f_weight),
                             bias_quantizer=spec(cfg.f_weight)))
    return keras.Sequential(layers, name=cfg.name)


def train_and_write(cfg: Config, data: dict[str, np.ndarray], out: Path, epochs: int, seed: int) -> dict[str, Any]:
    """Train, calibrate, trace and write the RTL of one model; returns its row (without Yosys numbers)."""
    import keras

    from hgq import ir
    from hgq.export.rtl import write_rtl
    from hgq.training import ResetRanges, calibrate, exact_ebops

    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    model = build(cfg)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    model.fit(data['x'], data['y'], epochs=epochs, batch_size=256, verbose=0, callbacks=[ResetRanges()])
    t1 = time.perf_counter()
    calibrate(model, data['x'])
    ebops = exact_ebops(model)
    graph = ir.from_model(model)
    acc = float(np.mean(np.argmax(ir.predict(graph, data['xt']), axis=1) == data['yt']))
    t2 = time.perf_counter()
    prj = write_rtl(graph, out / cfg.name, re.sub(r'\W', '_', cfg.name), latency_cutoff=-1)
    t3 = time.perf_counter()
    mults = active_multiplications(model)
    return {
        'name': cfg.name,
        'widths': '-'.join(map(str, cfg.widths)),
        'beta': cfg.beta,
        'f_init_weight': cfg.f_weight,
        'f_init_act': cfg.f_act,
        'trainable_f': cfg.trainable_f,
        'notes': cfg.notes,
        'params': int(sum(int(np.prod(layer.kernel.shape)) + int(layer.units) for layer in model.layers)),
        'test_accuracy_fixed_point': acc,
        'ebops': float(ebops),
        'active_mults': mults,  # multiplications with non-zero input and weight widths (each feeds an adder)
        'ebops_per_mult': float(ebops) / max(mults, 1),
        'da4ml_cost': float(prj.comb.cost),
        'da4ml_latency_units': float(prj.comb.latency[1]),
        'train_s': round(t1 - t0, 2),
        'calibrate_trace_s': round(t2 - t1, 2),
        'write_rtl_s': round(t3 - t2, 2),
        '_project': prj,
    }


def active_multiplications(model: Any) -> int:
    """Multiplications whose input and weight both have non-zero width (Dense layers: bits_in[j] * bits_w[j, k])."""
    import keras

    total = 0
    for layer in model.layers:
        bits_in = np.broadcast_to(keras.ops.convert_to_numpy(layer.input_quantizer.bits()), layer.in_shape)
        bits_w = keras.ops.convert_to_numpy(layer.kernel_quantizer.bits(layer.kernel))
        total += int(np.sum((bits_in[:, None] > 0) & (bits_w > 0)))
    return total


def two_term_fit(e: np.ndarray, m: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """y = a*EBOPs + c*active_mults + b by least squares: what the missing accumulation term is worth."""
    design = np.stack([e, m, np.ones_like(e)], axis=1)
    (a, c, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    pred = design @ np.array([a, c, b])
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    rel = np.abs(pred - y) / y
    return {'a_ebops': float(a), 'c_mults': float(c), 'b': float(b), 'r2': float(r2),
            'median_rel_err': float(np.median(rel)), 'max_rel_err': float(np.max(rel))}


def synthesize(row: dict[str, Any]) -> dict[str, Any]:
    t = time.perf_counter()
    rep = row['_project'].synthesize()
    return {'LUT': rep['LUT'], 'FF': rep['FF'], 'CARRY4': rep['CARRY4'], 'MUXF7': rep['MUXF7'],
            'MUXF8': rep['MUXF8'], 'depth_cells': rep.get('longest_path_cells'),
            'synth_s': rep['yosys_seconds'], 'synth_wall_s': round(time.perf_counter() - t, 2),
            'yosys_version': rep['yosys_version']}


def linear_fit(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """y = a*x + b by least squares, with R^2 and the relative errors |fit - y| / y."""
    a, b = np.polyfit(x, y, 1)
    pred = a * x + b
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    rel = np.abs(pred - y) / y
    a0 = float(np.sum(x * y) / np.sum(x * x))  # through the origin
    rel0 = np.abs(a0 * x - y) / y
    return {'a': float(a), 'b': float(b), 'r2': float(r2), 'median_rel_err': float(np.median(rel)),
            'max_rel_err': float(np.max(rel)), 'rel_err': rel.round(4).tolist(),
            'a_origin': a0, 'median_rel_err_origin': float(np.median(rel0)), 'max_rel_err_origin': float(np.max(rel0))}


def loglog_fit(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """log10 y = s*log10 x + c, R^2 in log space, relative errors of 10^c * x^s."""
    lx, ly = np.log10(x), np.log10(y)
    s, c = np.polyfit(lx, ly, 1)
    pred = s * lx + c
    r2 = 1 - np.sum((ly - pred) ** 2) / np.sum((ly - ly.mean()) ** 2)
    rel = np.abs(10**pred - y) / y
    return {'slope': float(s), 'intercept_log10': float(c), 'r2_log': float(r2),
            'median_rel_err': float(np.median(rel)), 'max_rel_err': float(np.max(rel))}


def ratio_stats(num: np.ndarray, den: np.ndarray) -> dict[str, float]:
    r = num / den
    return {'median': float(np.median(r)), 'min': float(np.min(r)), 'max': float(np.max(r))}


def plot(rows: list[dict[str, Any]], fit: dict[str, Any], loglog: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    e = np.array([r['ebops'] for r in rows])
    lut = np.array([r['LUT'] for r in rows])
    cost = np.array([r['da4ml_cost'] for r in rows])
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    for ax, log in zip(axes[:2], (False, True)):
        trainable = np.array([r['trainable_f'] for r in rows])
        ax.scatter(e[trainable], lut[trainable], label='Yosys LUTs (learned f)', color='C0', zorder=3)
        ax.scatter(e[~trainable], lut[~trainable], label='Yosys LUTs (fixed f)', color='C0', marker='s',
                   facecolors='none', zorder=3)
        ax.scatter(e, cost, label="da4ml's comb.cost", color='C1', marker='x', zorder=2)
        xs = np.geomspace(e.min() * 0.8, e.max() * 1.25, 200) if log else np.linspace(0, e.max() * 1.05, 200)
        ax.plot(xs, fit['a'] * xs + fit['b'], 'k-',
                label=f"LUT = {fit['a']:.3f} EBOPs + {fit['b']:.0f}  (R$^2$={fit['r2']:.3f})")
        ax.plot(xs, 10 ** loglog['intercept_log10'] * xs ** loglog['slope'], 'k--',
                label=f"LUT = {10 ** loglog['intercept_log10']:.3f} EBOPs$^{{{loglog['slope']:.3f}}}$")
        ax.set_xlabel('exact EBOPs (after calibration)')
        ax.set_ylabel('LUTs (Yosys synth_xilinx, combinational)')
        if log:
            ax.set_xscale('log')
            ax.set_yscale('log')
        ax.grid(True, which='both', alpha=0.3)
    for r in rows:
        axes[1].annotate(r['name'], (r['ebops'], r['LUT']), fontsize=6, xytext=(3, -8), textcoords='offset points')
    per_mult = np.array([r['ebops_per_mult'] for r in rows])
    axes[2].scatter(per_mult, lut / e, color='C0', label='Yosys LUT / EBOPs')
    axes[2].scatter(per_mult, cost / e, color='C1', marker='x', label="da4ml cost / EBOPs")
    axes[2].set_xlabel('EBOPs per active multiplication (mean bits(x)*bits(w))')
    axes[2].set_ylabel('LUTs per EBOP')
    axes[2].set_xscale('log')
    axes[2].grid(True, which='both', alpha=0.3)
    axes[2].legend(fontsize=8)
    axes[2].set_title('what EBOPs misses: the accumulation')
    axes[0].legend(fontsize=8)
    axes[0].set_title('linear axes')
    axes[1].set_title('log axes')
    fig.suptitle(f'EBOPs vs LUTs: {len(rows)} MLPs on toy jets, da4ml 0.6 RTL, Yosys 0.23')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    import keras

    out = {'keras': keras.__version__, 'backend': keras.backend.backend(), 'numpy': np.__version__}
    for dist in ('da4ml', 'jax', 'tensorflow-cpu'):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    try:
        out['hgq_commit'] = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True,
                                           text=True).stdout.strip()
    except OSError:
        pass
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--samples', type=int, default=20_000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--only', nargs='*', help='model names to run (default: all)')
    parser.add_argument('--jobs', type=int, default=2, help='Yosys runs at a time, overlapping training (default 2)')
    parser.add_argument('--no-synth', action='store_true', help='train and trace only (no Yosys)')
    parser.add_argument('--keep', type=Path, help='keep the RTL projects here (default: a temporary directory)')
    parser.add_argument('--json', type=Path, default=REPO / 'bench/results/ebops_vs_luts.json')
    parser.add_argument('--png', type=Path, default=REPO / 'bench/results/ebops_vs_luts.png')
    args = parser.parse_args(argv)

    from hgq.data.toy import make_toy_jets

    x, y = make_toy_jets(args.samples, seed=1)
    xt, yt = make_toy_jets(10_000, seed=2)
    data = {'x': x, 'y': y, 'xt': xt, 'yt': yt}
    configs = [c for c in CONFIGS if not args.only or c.name in args.only]
    out = args.keep or Path(tempfile.mkdtemp(prefix='ebops_vs_luts_'))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows, futures = [], []
    # Yosys runs in a worker thread (its own process) while the next model trains.
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for cfg in configs:
            row = train_and_write(cfg, data, out, args.epochs, args.seed)
            print(f"{cfg.name}: EBOPs {row['ebops']:.0f}, da4ml cost {row['da4ml_cost']:.0f}, "
                  f"acc {row['test_accuracy_fixed_point']:.3f} ({row['train_s']} s train)", flush=True)
            rows.append(row)
            if not args.no_synth:
                futures.append(pool.submit(synthesize, row))
        for row, fut in zip(rows, futures):
            row.update(fut.result())
            print(f"{row['name']}: {row['LUT']} LUTs, {row['CARRY4']} CARRY4 ({row['synth_s']} s Yosys)", flush=True)
    for row in rows:
        row.pop('_project')
    if args.keep is None:
        shutil.rmtree(out, ignore_errors=True)
    total_s = time.perf_counter() - start

    payload: dict[str, Any] = {
        'benchmark': 'ebops_vs_luts',
        'machine': machine_info(),
        'versions': versions(),
        'command': ' '.join(['python', 'bench/ebops_vs_luts.py', *(sys.argv[1:] if argv is None else argv)]),
        'settings': {'epochs': args.epochs, 'samples': args.samples, 'test_samples': 10_000, 'batch_size': 256,
                     'optimizer': 'Adam(3e-3)', 'seed': args.seed, 'yosys_jobs': args.jobs,
                     'rtl': 'write_rtl(graph, dir, name, latency_cutoff=-1): one combinational module',
                     'yosys': 'read_verilog -sv -defer ...; synth_xilinx -top TOP -flatten -nodsp -noiopad; '
                              'stat -json; ltp -noff'},
        'total_s': round(total_s, 1),
        'models': rows,
    }
    cols = ['name', 'widths', 'beta', 'params', 'test_accuracy_fixed_point', 'ebops', 'active_mults', 'da4ml_cost']
    if not args.no_synth:
        cols += ['LUT', 'FF', 'CARRY4', 'depth_cells', 'synth_s']
    print(format_table(cols, [[r[c] if not isinstance(r[c], float) else f'{r[c]:.4g}' for c in cols] for r in rows]))
    if not args.no_synth and len(rows) >= 3:
        e = np.array([r['ebops'] for r in rows])
        lut = np.array([r['LUT'] for r in rows], dtype=float)
        cost = np.array([r['da4ml_cost'] for r in rows])
        fit, loglog = linear_fit(e, lut), loglog_fit(e, lut)
        payload['fit_lut_vs_ebops'] = fit
        payload['loglog_lut_vs_ebops'] = loglog
        payload['fit_lut_vs_da4ml_cost'] = linear_fit(cost, lut)
        mults = np.array([r['active_mults'] for r in rows], dtype=float)
        payload['fit_lut_vs_ebops_and_mults'] = two_term_fit(e, mults, lut)
        payload['lut_per_ebop'] = ratio_stats(lut, e)
        payload['lut_over_da4ml_cost'] = ratio_stats(lut, cost)
        payload['spearman_lut_ebops'] = float(np.corrcoef(np.argsort(np.argsort(e)), np.argsort(np.argsort(lut)))[0, 1])
        print(f"LUT = {fit['a']:.4f}*EBOPs + {fit['b']:.1f}: R^2 {fit['r2']:.4f}, relative error median "
              f"{fit['median_rel_err']:.1%}, max {fit['max_rel_err']:.1%}; through 0: a={fit['a_origin']:.4f}, "
              f"median {fit['median_rel_err_origin']:.1%}, max {fit['max_rel_err_origin']:.1%}")
        print(f"log-log slope {loglog['slope']:.3f} (R^2 {loglog['r2_log']:.4f}), relative error median "
              f"{loglog['median_rel_err']:.1%}, max {loglog['max_rel_err']:.1%}")
        f2 = payload['fit_lut_vs_ebops_and_mults']
        print(f"LUT = {f2['a_ebops']:.4f}*EBOPs + {f2['c_mults']:.3f}*active_mults + {f2['b']:.1f}: "
              f"R^2 {f2['r2']:.4f}, relative error median {f2['median_rel_err']:.1%}, max {f2['max_rel_err']:.1%}")
        fc = payload['fit_lut_vs_da4ml_cost']
        print(f"LUT vs da4ml cost: R^2 {fc['r2']:.4f}; LUT/cost median {payload['lut_over_da4ml_cost']['median']:.3f} "
              f"[{payload['lut_over_da4ml_cost']['min']:.3f}, {payload['lut_over_da4ml_cost']['max']:.3f}]")
        plot(rows, fit, loglog, args.png)
    print(f'total {total_s:.0f} s')
    if not args.no_synth:
        write_json(args.json, payload)
        print(f'wrote {args.json} and {args.png}')


if __name__ == '__main__':
    main()
