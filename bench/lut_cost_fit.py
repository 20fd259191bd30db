"""Fit the LUT cost (hgq.training.lut_cost) to Yosys LUTs of many small designs, SAT and WRAP, 1 to 8 bits.

Designs: MLPs from 16-8-5 to the jets 16-64-32-32-5. One base model per shape is trained `--epochs` epochs
on `hgq.data.toy.make_toy_jets` (realistic weight magnitudes); each design then takes those weights and sets
its own HGQ parameters: per-element fractional bits drawn around a mean (weights `f_w`, activations `f_a`,
spread `--spread`), the smallest-magnitude fraction `prune` of every kernel set to 0 (pruned), and every
activation quantizer in SAT or WRAP mode. Calibrated on the training set (`hgq.training.calibrate`), traced,
written as one combinational Verilog module (`write_rtl(..., latency_cutoff=-1)`) and counted by Yosys
`synth_xilinx` (counts only: no longest-path analysis, the path `hgq synth --counts-only` takes).

Yosys results are cached per design hash (sha256 of the Verilog sources and the Yosys options) in
bench/results/lut_cost_fit_cache.json, so a rerun synthesizes only designs that changed.

Fit: LUT = Σ c_t · term_t (non-negative least squares, no intercept: an empty design has no LUTs) over the
terms of hgq.training.lut_cost, with R² in-sample and leave-one-out; the same for EBOPs alone (with an
intercept) and for subsets of the terms.

    KERAS_BACKEND=jax nice -n 10 /work/main/.venv/bin/python bench/lut_cost_fit.py       # --jobs 2 Yosys runs

Writes bench/results/lut_cost_fit.json and bench/results/lut_cost_fit.png.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault('KERAS_BACKEND', 'jax')

import numpy as np  # noqa: E402
from common import REPO, format_table, machine_info  # noqa: E402

RESULTS = REPO / 'bench' / 'results'
JETS = (16, 64, 32, 32, 5)
SHAPES = {'jets': JETS, 'l': (16, 64, 32, 5), 'm': (16, 32, 16, 5), 's': (16, 16, 5), 't': (16, 8, 5)}


@dataclass(frozen=True)
class Design:
    shape: str  # a key of SHAPES
    f_w: float  # mean fractional bits of kernels and biases
    f_a: float  # mean fractional bits of activations (every layer's input quantizer)
    prune: float  # fraction of each kernel's smallest-magnitude weights set to 0
    overflow: str  # activation overflow mode: SAT or WRAP
    seed: int = 0

    @property
    def name(self) -> str:
        return f'{self.shape}_w{self.f_w:g}a{self.f_a:g}_p{int(round(self.prune * 100))}_{self.overflow.lower()}'


def _designs() -> tuple[Design, ...]:
    """37 designs of ~600 to ~6k LUTs (Yosys time on a shared 2-core machine is the budget)."""
    pair = ('SAT', 'WRAP')  # the same weights and formats in both modes isolate the saturation logic
    d = []
    # jets-sized, the cheap end (1-3 bits), pruned by magnitude
    for fw, fa, p in ((1, 1, 0.5), (2, 2, 0.9), (3, 2, 0.9), (3, 3, 0.9), (2, 3, 0.85), (2, 1, 0.9)):
        d += [Design('jets', fw, fa, p, mode) for mode in pair]
    d += [Design('jets', 4, 3, 0.95, 'WRAP'), Design('jets', 6, 4, 0.97, 'SAT'), Design('jets', 1, 2, 0.7, 'SAT')]
    d += [Design('l', 2, 2, 0.8, 'SAT'), Design('l', 3, 3, 0.85, 'WRAP'), Design('l', 5, 4, 0.95, 'SAT')]
    # smaller MLPs, up to 6-8 bits, unpruned too
    d += [Design('m', 4, 4, 0.7, mode) for mode in pair]
    d += [Design('m', 6, 5, 0.8, 'SAT'), Design('m', 2, 2, 0.5, 'SAT'), Design('m', 1, 2, 0.3, 'WRAP'),
          Design('m', 8, 6, 0.9, 'WRAP'), Design('m', 3, 1, 0.6, 'SAT')]
    d += [Design('s', 6, 6, 0.7, mode) for mode in pair]
    d += [Design('s', 8, 7, 0.8, 'SAT'), Design('s', 3, 2, 0.0, 'WRAP'), Design('s', 2, 1, 0.5, 'SAT'),
          Design('s', 5, 3, 0.7, 'WRAP')]
    d += [Design('t', 8, 8, 0.5, mode) for mode in pair]
    d += [Design('t', 4, 3, 0.0, 'SAT'), Design('t', 2, 2, 0.0, 'WRAP'), Design('t', 6, 4, 0.5, 'WRAP'),
          Design('t', 1, 1, 0.0, 'SAT')]
    return tuple(d)


DESIGNS = _designs()


def build(widths: tuple[int, ...], f_w: float = 8.0, f_a: float = 6.0, overflow: str = 'SAT') -> Any:
    import keras

    from hgq.layers import QDense

    layers: list[Any] = [keras.Input((widths[0],))]
    for n, units in enumerate(widths[1:]):
        last = n == len(widths) - 2
        layers.append(QDense(units, activation=None if last else 'relu', name=f'dense{n}',
                             input_quantizer={'f_init': f_a, 'overflow_mode': overflow},
                             kernel_quantizer={'f_init': f_w}, bias_quantizer={'f_init': f_w}))
    return keras.Sequential(layers)


def train_base(shape: str, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> list[np.ndarray]:
    """Kernel and bias of every layer after a short training with the library's default quantizers."""
    import keras

    from hgq.training import ResetRanges

    keras.utils.set_random_seed(seed)
    model = build(SHAPES[shape])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=256, verbose=0, callbacks=[ResetRanges()])
    return [keras.ops.convert_to_numpy(v) for layer in model.layers for v in (layer.kernel, layer.bias)]


def make_design(d: Design, base: list[np.ndarray], x: np.ndarray, spread: float, model: Any) -> Any:
    """Set `model` (built for the design's shape and overflow mode) to the design: base weights, pruned,
    per-element fractional bits drawn around the means; then calibrate. Reusing one model per shape and
    mode reuses its compiled calibration and cost functions (compiling is most of the time on JAX)."""
    from hgq.training import calibrate

    # the same draws in SAT and WRAP: a pair differs only in its overflow mode
    rng = np.random.default_rng([d.seed, int(d.f_w * 10), int(d.f_a * 10), int(d.prune * 100), len(SHAPES[d.shape])])
    for n, layer in enumerate(model.layers):
        kernel, bias = base[2 * n].copy(), base[2 * n + 1]
        if d.prune > 0:
            cut = np.quantile(np.abs(kernel), d.prune)
            kernel[np.abs(kernel) <= cut] = 0.0
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        for q, mean in ((layer.kernel_quantizer, d.f_w), (layer.bias_quantizer, d.f_w),
                        (layer.input_quantizer, d.f_a)):
            shape = tuple(q.f.shape)
            q.f.assign(np.round(mean + spread * rng.standard_normal(shape)).astype('float32'))
    calibrate(model, x)
    return model


def bit_stats(model: Any) -> dict[str, float]:
    """Mean width of the live weights and activations, and the fraction of pruned weights."""
    import keras

    wb, ab = [], []
    for layer in model.layers:
        wb.append(keras.ops.convert_to_numpy(layer.kernel_quantizer.bits(layer.kernel)).ravel())
        ab.append(np.broadcast_to(keras.ops.convert_to_numpy(layer.input_quantizer.bits()), layer.in_shape).ravel())
    w, a = np.concatenate(wb), np.concatenate(ab)
    return {'mean_weight_bits_live': float(w[w > 0].mean()) if (w > 0).any() else 0.0,
            'pruned_weights': float(np.mean(w == 0)),
            'mean_act_bits_live': float(a[a > 0].mean()) if (a > 0).any() else 0.0}


def design_hash(prj: Any, options: tuple[str, ...]) -> str:
    h = hashlib.sha256(' '.join(options).encode())
    for path in sorted((prj.path / 'src').rglob('*')):
        if path.is_file():
            h.update(path.relative_to(prj.path).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:20]


def load_cache(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text()) if path.is_file() else {}


def synthesize(prj: Any, slots: threading.Semaphore, key: str, cache: dict[str, Any], path: Path,
               lock: threading.Lock) -> dict[str, Any]:
    """Yosys counts of one design, added to the cache file as soon as they are known."""
    from hgq.training.files import write_json_atomic

    with slots:
        rep = prj.synthesize(longest_path=False)
    result = {'LUT': rep['LUT'], 'FF': rep['FF'], 'CARRY4': rep['CARRY4'], 'MUXF7': rep['MUXF7'],
              'MUXF8': rep['MUXF8'], 'yosys_s': rep['yosys_seconds'], 'yosys_version': rep['yosys_version']}
    with lock:
        cache[key] = result
        write_json_atomic(path, cache)
    return result


# ----------------------------------------------------------------------------------------------- fitting
def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def nnls_fit(features: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    scale = np.maximum(np.abs(features).max(axis=0), 1e-12)  # conditioning: columns of very different sizes
    coef, _ = nnls(features / scale, y)
    return coef / scale


def fit_report(features: np.ndarray, y: np.ndarray, names: list[str], intercept: bool = False) -> dict[str, Any]:
    """Coefficients (non-negative), R² in-sample and leave-one-out, relative errors."""
    a = np.concatenate([features, np.ones((len(y), 1))], axis=1) if intercept else features
    coef = nnls_fit(a, y) if not intercept else np.linalg.lstsq(a, y, rcond=None)[0]
    pred = a @ coef
    loo = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        c = nnls_fit(a[keep], y[keep]) if not intercept else np.linalg.lstsq(a[keep], y[keep], rcond=None)[0]
        loo[i] = a[i] @ c
    rel, rel_loo = np.abs(pred - y) / y, np.abs(loo - y) / y
    out_names = names + (['intercept'] if intercept else [])
    return {'coefficients': {n: float(c) for n, c in zip(out_names, coef, strict=True)}, 'r2': r2(y, pred),
            'r2_loo': r2(y, loo), 'median_rel_err': float(np.median(rel)), 'max_rel_err': float(np.max(rel)),
            'median_rel_err_loo': float(np.median(rel_loo)), 'max_rel_err_loo': float(np.max(rel_loo)),
            'r2_log': r2(np.log(y), np.log(np.maximum(pred, 1.0))), 'predicted': pred.round(1).tolist(),
            'predicted_loo': loo.round(1).tolist()}


def plot(rows: list[dict[str, Any]], fits: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    y = np.array([r['LUT'] for r in rows], dtype=float)
    sat = np.array([r['overflow'] == 'SAT' for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, key, title in ((axes[0], 'lut_cost', 'LUT cost (all terms)'), (axes[1], 'ebops', 'EBOPs alone')):
        f = fits[key]
        for pred_key, marker, label in (('predicted', 'o', 'in-sample'), ('predicted_loo', 'x', 'leave-one-out')):
            p = np.array(f[pred_key])
            ax.scatter(y[sat], p[sat], marker=marker, color='C3', label=f'SAT, {label}', alpha=0.8)
            ax.scatter(y[~sat], p[~sat], marker=marker, color='C0', label=f'WRAP, {label}', alpha=0.8)
        lim = (min(y.min(), 50) * 0.8, y.max() * 1.3)
        ax.plot(lim, lim, 'k-', lw=0.8)
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel('Yosys LUTs (synth_xilinx, combinational)')
        ax.set_ylabel('predicted LUTs')
        ax.set_title(f"{title}: R² {f['r2']:.3f}, leave-one-out {f['r2_loo']:.3f}")
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f'LUT cost vs Yosys: {len(rows)} MLPs (16-8-5 to 16-64-32-32-5), da4ml 0.6 RTL, Yosys 0.23')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def term_shares(rows: list[dict[str, Any]], coefficients: dict[str, float],
                cheap_below: float = 2000) -> dict[str, Any]:
    """Median share of each fitted term in the predicted LUTs, for cheap designs (< cheap_below Yosys LUTs)
    and the rest: which terms the cheap end pays for."""
    out = {}
    for label, keep in (('cheap', lambda r: r['LUT'] < cheap_below), ('larger', lambda r: r['LUT'] >= cheap_below)):
        sel = [r for r in rows if keep(r)]
        if not sel:
            continue
        parts = np.array([[c * r['terms'][t] for t, c in coefficients.items()] for r in sel])
        share = parts / np.maximum(parts.sum(axis=1, keepdims=True), 1e-12)
        out[label] = {'n': len(sel), 'below_luts' if label == 'cheap' else 'from_luts': cheap_below,
                      'median_share': {t: float(v) for t, v in zip(coefficients, np.median(share, axis=0))}}
    return out


def fits_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from hgq.training.lut_cost import TERMS

    y = np.array([r['LUT'] for r in rows], dtype=float)
    used = [t for t in TERMS if any(r['terms'][t] != 0 for r in rows)]
    feats = np.array([[r['terms'][t] for t in used] for r in rows])
    col = {t: feats[:, i:i + 1] for i, t in enumerate(used)}
    e = np.array([[r['ebops']] for r in rows])
    out = {'lut_cost': fit_report(feats, y, used), 'ebops': fit_report(e, y, ['ebops'], intercept=True),
           'ebops_no_intercept': fit_report(e, y, ['ebops'])}
    subsets = {'products+terms': ['products', 'terms'],
               'products+terms+saturation': ['products', 'terms', 'saturation'],
               'products+accumulation+saturation': ['products', 'accumulation', 'saturation'],
               'all but saturation': [t for t in used if t != 'saturation'],
               'all but activations': [t for t in used if t != 'activations']}
    for name, ts in subsets.items():
        ts = [t for t in ts if t in col]
        out[name] = fit_report(np.concatenate([col[t] for t in ts], axis=1), y, ts)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=3, help='training epochs of each base model')
    parser.add_argument('--samples', type=int, default=20_000)
    parser.add_argument('--spread', type=float, default=1.0, help='std of the per-element fractional bits')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--jobs', type=int, default=2, help='Yosys runs at a time (at most 2 on a shared machine)')
    parser.add_argument('--only', nargs='*', help='design names to run (default: all)')
    parser.add_argument('--max-da4ml-cost', type=float, default=30_000,
                        help="skip designs whose da4ml LUT estimate is larger (Yosys time)")
    parser.add_argument('--no-synth', action='store_true',
                        help='run no Yosys: fit the designs whose counts are already cached')
    parser.add_argument('--cache', type=Path, default=RESULTS / 'lut_cost_fit_cache.json')
    parser.add_argument('--json', type=Path, default=RESULTS / 'lut_cost_fit.json')
    parser.add_argument('--png', type=Path, default=RESULTS / 'lut_cost_fit.png')
    parser.add_argument('--refit', action='store_true', help='fit again from --json (no training, no Yosys)')
    args = parser.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if args.refit:
        refit(args.json, args.png, argv)
        return

    from hgq import ir
    from hgq.data.toy import make_toy_jets
    from hgq.export.rtl import write_rtl
    from hgq.export.yosys import SYNTH_OPTIONS
    from hgq.training import exact_ebops
    from hgq.training.lut_cost import model_lut_terms

    x, y = make_toy_jets(args.samples, seed=1)
    designs = [d for d in DESIGNS if not args.only or d.name in args.only]
    cache = load_cache(args.cache)
    start = time.perf_counter()
    bases: dict[str, list[np.ndarray]] = {}
    rows: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], Any]] = []
    jobs = max(1, min(args.jobs, 2))
    # while this process builds designs it is one CPU-heavy process: one Yosys beside it, then `jobs`
    slots, lock = threading.Semaphore(1), threading.Lock()
    models: dict[tuple[str, str], Any] = {}
    with tempfile.TemporaryDirectory(prefix='lut-cost-fit-') as tmp, \
            ThreadPoolExecutor(max_workers=jobs) as pool:
        for d in designs:
            if d.shape not in bases:
                t = time.perf_counter()
                bases[d.shape] = train_base(d.shape, x, y, args.epochs, args.seed)
                print(f'base {d.shape} {SHAPES[d.shape]}: trained in {time.perf_counter() - t:.0f} s', flush=True)
            if (d.shape, d.overflow) not in models:
                models[(d.shape, d.overflow)] = build(SHAPES[d.shape], d.f_w, d.f_a, d.overflow)
            model = make_design(d, bases[d.shape], x, args.spread, models[(d.shape, d.overflow)])
            terms = model_lut_terms(model)
            graph = ir.from_model(model)
            prj = write_rtl(graph, Path(tmp) / d.name, re.sub(r'\W', '_', d.name), latency_cutoff=-1)
            key = design_hash(prj, SYNTH_OPTIONS)
            row = {'name': d.name, **asdict(d), 'widths': '-'.join(map(str, SHAPES[d.shape])), 'hash': key,
                   'ebops': float(exact_ebops(model)), 'terms': terms, **bit_stats(model),
                   'da4ml_cost': float(prj.comb.cost)}
            rows.append(row)
            if key in cache:
                row.update(cache[key], cached=True)
            elif args.no_synth:
                pass
            elif row['da4ml_cost'] > args.max_da4ml_cost:
                row['skipped'] = f"da4ml cost {row['da4ml_cost']:.0f} > --max-da4ml-cost {args.max_da4ml_cost:g}"
            else:
                pending.append((row, pool.submit(synthesize, prj, slots, key, cache, args.cache, lock)))
            print(f"{d.name}: EBOPs {row['ebops']:.0f}, da4ml {row['da4ml_cost']:.0f}, weights "
                  f"{row['mean_weight_bits_live']:.2f} b ({row['pruned_weights']:.0%} pruned), acts "
                  f"{row['mean_act_bits_live']:.2f} b{' (cached)' if row.get('cached') else ''}", flush=True)
        for _ in range(jobs - 1):
            slots.release()
        for row, fut in pending:
            result = fut.result()
            row.update(result, cached=False)
            print(f"{row['name']}: {row['LUT']} LUTs ({result['yosys_s']} s Yosys)", flush=True)
    settings = {'epochs': args.epochs, 'samples': args.samples, 'spread': args.spread, 'seed': args.seed,
                'yosys_jobs': jobs, 'yosys_options': list(SYNTH_OPTIONS), 'no_synth': args.no_synth}
    report(rows, settings, time.perf_counter() - start, args.json, args.png, argv)


def report(rows: list[dict[str, Any]], settings: dict[str, Any], total_s: float, json_path: Path, png: Path,
           argv: list[str] | None) -> None:
    """Fit, print the tables, write the JSON and the plot."""
    from hgq.training.files import write_json_atomic

    measured = [r for r in rows if 'LUT' in r]
    if len(measured) < 3:
        print(f'{len(measured)} designs measured: no fit')
        return
    fits = fits_of(measured)
    for r, p, pl, pe in zip(measured, fits['lut_cost']['predicted'], fits['lut_cost']['predicted_loo'],
                            fits['ebops']['predicted'], strict=True):
        r.update(predicted=p, predicted_loo=pl, predicted_ebops=pe)
    shares = term_shares(measured, fits['lut_cost']['coefficients'])
    print(format_table(['designs', 'n'] + list(next(iter(shares.values()))['median_share']),
                       [[k, v['n']] + [f'{x:.1%}' for x in v['median_share'].values()] for k, v in shares.items()]))
    cols = ['name', 'widths', 'overflow', 'mean_weight_bits_live', 'pruned_weights', 'mean_act_bits_live', 'ebops',
            'da4ml_cost', 'LUT', 'predicted', 'predicted_loo', 'predicted_ebops']
    print(format_table(cols, [[f'{r[c]:.4g}' if isinstance(r[c], float) else r[c] for c in cols] for r in measured]))
    summary = [[k, f"{v['r2']:.4f}", f"{v['r2_loo']:.4f}", f"{v['median_rel_err_loo']:.1%}",
                f"{v['max_rel_err_loo']:.1%}", ', '.join(f'{n} {c:.4g}' for n, c in v['coefficients'].items())]
               for k, v in fits.items()]
    print(format_table(['model', 'R²', 'R² LOO', 'median rel. err. LOO', 'max rel. err. LOO', 'coefficients'],
                       summary))
    payload = {
        'benchmark': 'lut_cost_fit', 'machine': machine_info(),
        'command': ' '.join(['python', 'bench/lut_cost_fit.py', *(sys.argv[1:] if argv is None else argv)]),
        'settings': {**settings, 'rtl': 'write_rtl(graph, dir, name, latency_cutoff=-1): one combinational module',
                     'fit': 'non-negative least squares, no intercept (EBOPs: ordinary least squares with intercept)'},
        'total_s': round(total_s, 1),
        'n_designs': len(measured), 'n_sat': sum(r['overflow'] == 'SAT' for r in measured),
        'fits': fits, 'term_shares': shares, 'designs': rows,
    }
    write_json_atomic(json_path, payload)
    plot(measured, fits, png)
    print(f'{len(measured)} designs measured in {total_s:.0f} s; wrote {json_path} and {png}')


def refit(json_path: Path, png: Path, argv: list[str] | None) -> None:
    """Fit again from the designs of an earlier run's JSON (no training, no Yosys)."""
    import json

    old = json.loads(json_path.read_text())
    settings = {**old['settings'], 'refit_of': old['machine']['date']}
    report(old['designs'], settings, old['total_s'], json_path, png, argv)


if __name__ == '__main__':
    main()
