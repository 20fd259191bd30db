"""EBOPs vs Yosys LUTs per quantization scheme: is EBOPs (with `bits()` = the decoded level's width) a fair
cost for indexed weights (POST √2, POST powers of two) next to the uniform baseline (LSQ)?

Per design: a float MLP 16-H-5 (H in --widths) is trained a few epochs on `hgq.data.toy.make_toy_jets`,
quantized by `hgq.workflow.ptq.quantize_model` with the scheme at each of --bits (64 calibration samples),
traced (`hgq.ir.from_model`), written as one combinational Verilog module (`write_rtl(..., latency_cutoff=-1)`)
and synthesized with Yosys `synth_xilinx` (`RTLProject.synthesize()`, what `hgq synth --counts-only` runs).
Per scheme: LUT = a·EBOPs + b and LUT = a0·EBOPs (least squares), R², relative errors, LUTs per EBOP.

    KERAS_BACKEND=jax python bench/indexed_ebops_fit.py                     # 3 schemes x 6 designs
    python bench/indexed_ebops_fit.py --schemes lsq post_pow2 --widths 8 16 --bits 3 4
    python bench/indexed_ebops_fit.py --no-synth                            # EBOPs and da4ml cost only

A scheme is an entry of SCHEMES (name -> weight and activation spec for b bits); add mulaw/pwlq/augq there.
Writes bench/results/indexed_ebops_fit.json (--json).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault('KERAS_BACKEND', 'jax')

import numpy as np  # noqa: E402
from common import REPO, format_table, machine_info, write_json  # noqa: E402
from ebops_vs_luts import linear_fit, ratio_stats, versions  # noqa: E402

Spec = dict[str, Any]
#: scheme name -> (bits -> (weight spec, activation spec)); activations are LSQ everywhere, so that the
#: schemes differ only where they differ (a new scheme: one more line)
SCHEMES: dict[str, Callable[[int], tuple[Spec, Spec]]] = {
    'lsq': lambda b: ({'scheme': 'lsq', 'bits': b}, {'scheme': 'lsq', 'bits': b}),
    'post_sqrt2': lambda b: ({'scheme': 'post', 'bits': b, 'base': 'sqrt2'}, {'scheme': 'lsq', 'bits': b}),
    'post_pow2': lambda b: ({'scheme': 'post', 'bits': b, 'base': 'pow2'}, {'scheme': 'lsq', 'bits': b}),
    'mulaw': lambda b: ({'scheme': 'mulaw', 'bits': b}, {'scheme': 'mulaw', 'bits': b}),
    # PWLQ's index has b + 1 bits (centre b, tails b - 1, plus the region bit): b - 1 compares at equal index width
    'pwlq': lambda b: ({'scheme': 'pwlq', 'bits': b}, {'scheme': 'pwlq', 'bits': b}),
    'augq': lambda b: ({'scheme': 'augq', 'bits': b - 1, 'intervals': 2}, {'scheme': 'augq', 'bits': b - 1,
                                                                              'intervals': 2}),
}


def float_mlp(width: int, data: dict[str, np.ndarray], epochs: int, seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(width, activation='relu'),
                              keras.layers.Dense(5)], name=f'float_{width}')
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data['x'], data['y'], epochs=epochs, batch_size=256, verbose=0)
    return model


def design(scheme: str, bits: int, width: int, fmodel: Any, data: dict[str, np.ndarray], out: Path) -> dict[str, Any]:
    """PTQ, trace and write one design; the row without Yosys numbers."""
    from hgq import ir
    from hgq.export.rtl import write_rtl
    from hgq.training import exact_ebops
    from hgq.workflow.ptq import quantize_model

    t0 = time.perf_counter()
    weights, activations = SCHEMES[scheme](bits)
    model = quantize_model(fmodel, weights=weights, activations=activations, calibration=data['x'][:64])
    ebops = float(exact_ebops(model))
    graph = ir.from_model(model)
    acc = float(np.mean(np.argmax(ir.predict(graph, data['xt'].astype(np.float64)), axis=1) == data['yt']))
    name = f'{scheme}_w{width}_b{bits}'
    prj = write_rtl(graph, out / name, name, latency_cutoff=-1)
    return {'name': name, 'scheme': scheme, 'bits': bits, 'widths': f'16-{width}-5', 'weights': weights,
            'activations': activations, 'test_accuracy_fixed_point': acc, 'ebops': ebops,
            'da4ml_cost': float(prj.comb.cost), 'ptq_write_s': round(time.perf_counter() - t0, 2), '_project': prj}


def synthesize(row: dict[str, Any]) -> dict[str, Any]:
    rep = row['_project'].synthesize()
    return {'LUT': rep['LUT'], 'FF': rep['FF'], 'CARRY4': rep['CARRY4'], 'synth_s': rep['yosys_seconds'],
            'yosys_version': rep['yosys_version']}


def fits(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scheme (and all together): LUT vs EBOPs and LUT vs da4ml's cost."""
    out: dict[str, Any] = {}
    groups = {s: [r for r in rows if r['scheme'] == s] for s in dict.fromkeys(r['scheme'] for r in rows)}
    groups['all'] = rows
    for scheme, group in groups.items():
        if len(group) < 3:
            continue
        e = np.array([r['ebops'] for r in group])
        lut = np.array([r['LUT'] for r in group], dtype=float)
        cost = np.array([r['da4ml_cost'] for r in group])
        out[scheme] = {'n': len(group), 'lut_vs_ebops': linear_fit(e, lut), 'lut_per_ebop': ratio_stats(lut, e),
                       'lut_vs_da4ml_cost': linear_fit(cost, lut)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--schemes', nargs='+', default=list(SCHEMES), choices=list(SCHEMES))
    parser.add_argument('--widths', nargs='+', type=int, default=[8, 16, 32], help='hidden widths H of 16-H-5')
    parser.add_argument('--bits', nargs='+', type=int, default=[3, 4], help='bits of each scheme')
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--samples', type=int, default=10_000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--jobs', type=int, default=1, help='Yosys runs at a time beside the PTQ (default 1)')
    parser.add_argument('--no-synth', action='store_true')
    parser.add_argument('--keep', type=Path, help='keep the RTL projects here (default: a temporary directory)')
    parser.add_argument('--json', type=Path, default=REPO / 'bench/results/indexed_ebops_fit.json')
    args = parser.parse_args(argv)

    from hgq.data.toy import make_toy_jets

    x, y = make_toy_jets(args.samples, seed=1)
    xt, yt = make_toy_jets(10_000, seed=2)
    data = {'x': x, 'y': y, 'xt': xt, 'yt': yt}
    out = args.keep or Path(tempfile.mkdtemp(prefix='indexed_ebops_fit_'))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    futures = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for width in args.widths:
            fmodel = float_mlp(width, data, args.epochs, args.seed)
            for scheme in args.schemes:
                for bits in args.bits:
                    row = design(scheme, bits, width, fmodel, data, out)
                    print(f"{row['name']}: EBOPs {row['ebops']:.0f}, da4ml cost {row['da4ml_cost']:.0f}, "
                          f"acc {row['test_accuracy_fixed_point']:.3f}", flush=True)
                    rows.append(row)
                    if not args.no_synth:
                        futures.append(pool.submit(synthesize, row))
        for row, fut in zip(rows, futures):
            row.update(fut.result())
            print(f"{row['name']}: {row['LUT']} LUTs ({row['synth_s']} s Yosys)", flush=True)
    for row in rows:
        row.pop('_project')
    if args.keep is None:
        shutil.rmtree(out, ignore_errors=True)
    payload: dict[str, Any] = {
        'benchmark': 'indexed_ebops_fit', 'machine': machine_info(), 'versions': versions(),
        'command': ' '.join(['python', 'bench/indexed_ebops_fit.py', *(sys.argv[1:] if argv is None else argv)]),
        'settings': {'widths': args.widths, 'bits': args.bits, 'epochs': args.epochs, 'samples': args.samples,
                     'calibration_samples': 64, 'seed': args.seed,
                     'rtl': 'write_rtl(graph, dir, name, latency_cutoff=-1): one combinational module',
                     'yosys': 'synth_xilinx -flatten -nodsp -noiopad -noclkbuf; stat -json'},
        'total_s': round(time.perf_counter() - start, 1), 'designs': rows,
    }
    cols = ['name', 'test_accuracy_fixed_point', 'ebops', 'da4ml_cost'] + ([] if args.no_synth else
                                                                          ['LUT', 'CARRY4', 'synth_s'])
    print(format_table(cols, [[r[c] if not isinstance(r[c], float) else f'{r[c]:.4g}' for c in cols] for r in rows]))
    if not args.no_synth:
        payload['fits'] = fits(rows)
        fit_rows = [[s, f['n'], f"{f['lut_vs_ebops']['a']:.4g}", f"{f['lut_vs_ebops']['b']:.4g}",
                     f"{f['lut_vs_ebops']['r2']:.3f}", f"{f['lut_vs_ebops']['median_rel_err']:.3f}",
                     f"{f['lut_per_ebop']['median']:.3f}", f"{f['lut_vs_da4ml_cost']['r2']:.3f}"]
                    for s, f in payload['fits'].items()]
        print(format_table(['scheme', 'n', 'a (LUT/EBOP)', 'b', 'R2', 'median rel err', 'median LUT/EBOP',
                            'R2 vs da4ml cost'], fit_rows))
    write_json(args.json, payload)
    print(f'wrote {args.json} ({payload["total_s"]} s)')


if __name__ == '__main__':
    main()
