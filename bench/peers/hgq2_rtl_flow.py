"""Our RTL flow against HGQ2's own: the same jets MLP trained in each library, each through its own flow to Verilog.

Neither library can load the other's checkpoint (HGQ2 learns (k, b, i) per weight and a wrapping (k, i, f) per
activation, ours learns f with saturating activations), so both train the same architecture (16-64-32-32-5,
ReLU) on the same data (`hgq.data.toy.make_toy_jets`, written once to an .npz) with the same epochs, batch
size, optimizer and constant beta, each with its own default quantizers; the final checkpoint of each goes
through its own flow:

- ours: `calibrate` -> `exact_ebops` -> `hgq.ir.from_model` -> `hgq.export.rtl.write_rtl` (da4ml 0.6 codegen)
- HGQ2 0.2.0: `hgq.utils.trace_minmax` (its calibration; returns its EBOPs) -> `da4ml.converter.trace_model`
  (HGQ2's DAIS-tracer plugin) -> `da4ml.trace.comb_trace` -> `da4ml.codegen.RTLModel`

Each design is written combinational (latency_cutoff=-1) and pipelined (latency_cutoff=5, clock 5 ns) and both
libraries' Verilog goes through the same Yosys script (`hgq.export.yosys.synthesize`: `synth_xilinx -flatten
-nodsp -noiopad`, `stat -json`, `ltp -noff`) on the same file selection (top, stages, the static helpers used).
Accuracy is that of the exported logic (da4ml's C++ interpreter `comb.predict`) on 10,000 test samples; it is
also compared with each library's own Keras/emulator output. One more run of ours per beta differs only in its
activation overflow mode (WRAP, HGQ2's default, instead of our SAT); it is reported with da4ml's estimates only
(no Yosys, to keep the run short), to show how much of the difference the saturation logic accounts for.

This one file has two modes. Run it with OUR venv (the driver); it starts itself with HGQ2's interpreter for the
HGQ2 half (`--worker`, which imports nothing from this repository: HGQ2's import package is also called `hgq`):

    KERAS_BACKEND=jax .venv/bin/python bench/peers/hgq2_rtl_flow.py \\
        --hgq2-python .peers/hgq2/bin/python      # ~8 min on 2 cores; bench/results/hgq2_flow.json

HGQ2's venv (`make peers`, .peers/hgq2) includes da4ml 0.6.0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault('KERAS_BACKEND', 'jax')

import numpy as np  # noqa: E402

WIDTHS = (16, 64, 32, 32, 5)
TEST_SAMPLES = 10_000


# ---------------------------------------------------------------------------------------------- shared helpers
def design_files(src: Path, name: str) -> list[Path]:
    """The design's own Verilog (same rule for both libraries): the top, its pipeline stages and the static
    helpers they instantiate; no Verilator wrapper."""
    files = [src / f'{name}.v', *sorted(src.glob(f'{name}_stage*.v'))]
    text = ''.join(p.read_text() for p in files)
    files += [h for h in sorted((src / 'static').glob('*.v')) if h.stem in text]
    return files


def rtl_facts(rtl: Any, comb: Any, clock_period: float) -> dict[str, Any]:
    """Latency and register facts of a da4ml RTLModel (the same formula as hgq.export.rtl.RTLProject.latency)."""
    pipe = rtl._pipe
    stages = len(pipe.solutions) if pipe is not None else 0
    cycles = stages * rtl._register_layers
    return {'cycles': cycles, 'stages': stages, 'latency_ns': cycles * clock_period,
            'da4ml_reg_bits': int(pipe.reg_bits) if pipe is not None else 0,
            'da4ml_cost': float(comb.cost), 'da4ml_latency_units': float(comb.latency[1])}


def compile_fit(keras: Any, model: Any, x: np.ndarray, y: np.ndarray, args: Any, callbacks: list[Any]) -> float:
    model.compile(optimizer=keras.optimizers.Adam(args.lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])
    t = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0, callbacks=callbacks)
    return time.perf_counter() - t


# ---------------------------------------------------------------------------------------------- HGQ2 worker
def hgq2_worker(args: argparse.Namespace) -> None:
    """The HGQ2 half: train, trace_minmax, trace with da4ml's converter, write both RTL variants, report."""
    import importlib.metadata as md

    import keras

    import hgq  # HGQ2's package

    if Path(hgq.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2]):
        sys.exit(f'imported our own hgq from {hgq.__file__}, not HGQ2: run the worker with the HGQ2 interpreter')
    from da4ml.codegen import RTLModel
    from da4ml.converter import trace_model
    from da4ml.trace import comb_trace
    from hgq.config import QuantizerConfig
    from hgq.utils import trace_minmax

    from hgq.layers import QDense

    with np.load(args.data) as d:
        x, y, xt, yt = d['x'], d['y'], d['xt'], d['yt']
    keras.utils.set_random_seed(args.seed)
    layers: list[Any] = [keras.Input((WIDTHS[0],))]
    for n, units in enumerate(WIDTHS[1:]):
        last = n == len(WIDTHS) - 2
        # HGQ2's own defaults, spelled out: per-element KIF WRAP activations, per-element KBI weights and biases
        layers.append(QDense(units, activation=None if last else 'relu', name=f'dense{n}', beta0=args.beta,
                             enable_ebops=True, iq_conf=QuantizerConfig('kif', 'datalane'),
                             kq_conf=QuantizerConfig('kbi', 'weight'), bq_conf=QuantizerConfig('kbi', 'bias')))
    model = keras.Sequential(layers, name='hgq2_jets')
    train_s = compile_fit(keras, model, x, y, args, [])

    t = time.perf_counter()
    ebops = int(trace_minmax(model, x, batch_size=1024))  # HGQ2's calibration; returns the model's EBOPs
    calib_s = time.perf_counter() - t
    layer_ebops = {layer.name: int(layer.ebops) for layer in model.layers if getattr(layer, 'enable_ebops', False)}
    y_keras = np.asarray(model.predict(xt, batch_size=4096, verbose=0), dtype=np.float64)

    t = time.perf_counter()
    inp, out = trace_model(model)
    comb = comb_trace(inp, out)
    trace_s = time.perf_counter() - t
    y_comb = np.asarray(comb.predict(xt.astype(np.float64)), dtype=np.float64)

    designs = {}
    for variant, cutoff in (('comb', -1), ('pipe', args.latency_cutoff)):
        t = time.perf_counter()
        name = f'hgq2_{args.tag}_{variant}'
        rtl = RTLModel(comb, name, Path(args.out) / variant, flavor='verilog', latency_cutoff=cutoff,
                       print_latency=False, clock_period=args.clock_period)
        rtl.write()
        designs[variant] = {'name': name, 'src': str(Path(args.out) / variant / 'src'),
                            'write_s': round(time.perf_counter() - t, 2), **rtl_facts(rtl, comb, args.clock_period)}

    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    kin, kout = get_io_kifs(comb)
    result = {
        'impl': 'hgq2',
        'beta': args.beta,
        'flow': 'trace_minmax -> da4ml.converter.trace_model -> comb_trace -> RTLModel',
        'versions': {'hgq2': hgq.__version__, 'da4ml': md.version('da4ml'), 'keras': keras.__version__,
                     'backend': keras.backend.backend(), 'numpy': np.__version__},
        'train_s': round(train_s, 2),
        'calibrate_s': round(calib_s, 2),
        'trace_s': round(trace_s, 2),
        'ebops': ebops,
        'layer_ebops': layer_ebops,
        'params': int(sum(int(np.prod(layer.kernel.shape)) + int(layer.units) for layer in model.layers)),
        'test_accuracy_keras': float(np.mean(y_keras.argmax(1) == yt)),
        'test_accuracy_rtl': float(np.mean(y_comb.argmax(1) == yt)),
        'rtl_vs_keras_mismatches': int(np.sum(y_comb != y_keras)),
        'outputs_compared': int(y_comb.size),
        'input_port_bits': int(kin.sum(axis=0).max()) if kin.size else 0,
        'input_port_kif_example': [int(v) for v in kin[:, 0]],
        'output_port_bits': int(kout.sum(axis=0).max()) if kout.size else 0,
        'designs': designs,
    }
    Path(args.result).write_text(json.dumps(result, indent=2) + '\n')


# ---------------------------------------------------------------------------------------------- our half (driver)
def ours(args: argparse.Namespace, data: dict[str, np.ndarray], out: Path, beta: float, tag: str,
         overflow: str | None = None) -> dict[str, Any]:
    """Our half at one beta. `overflow='WRAP'`: activation quantizers wrap instead of saturating (our default),
    like HGQ2's default; everything else identical (same seed, so the same training trajectory)."""
    import keras

    from hgq import ir
    from hgq.export.rtl import write_rtl
    from hgq.layers import QDense
    from hgq.training import ResetRanges, calibrate, exact_ebops

    keras.utils.set_random_seed(args.seed)
    layers: list[Any] = [keras.Input((WIDTHS[0],))]
    for n, units in enumerate(WIDTHS[1:]):
        last = n == len(WIDTHS) - 2
        iq = None if overflow is None else {'overflow_mode': overflow}
        layers.append(QDense(units, activation=None if last else 'relu', name=f'dense{n}', beta=beta,
                             input_quantizer=iq))
    model = keras.Sequential(layers, name='ours_jets')
    # ResetRanges: our documented recipe (activation ranges forgotten each epoch, hgq.training docs)
    train_s = compile_fit(keras, model, data['x'], data['y'], args, [ResetRanges()])

    t = time.perf_counter()
    calibrate(model, data['x'])
    calib_s = time.perf_counter() - t
    ebops = exact_ebops(model)
    graph = ir.from_model(model)
    xt, yt = data['xt'], data['yt']
    y_keras = np.asarray(keras.ops.convert_to_numpy(model(xt, training=False)), dtype=np.float64)
    y_emul = ir.predict(graph, xt)

    designs, comb = {}, None
    for variant, cutoff in (('comb', -1), ('pipe', args.latency_cutoff)):
        t = time.perf_counter()
        prj = write_rtl(graph, out / variant, f'ours_{tag}_{variant}', latency_cutoff=cutoff,
                        clock_period=args.clock_period)
        write_s = time.perf_counter() - t  # includes the da4ml trace
        comb = prj.comb
        designs[variant] = {'name': f'ours_{tag}_{variant}', 'src': str(prj.path / 'src'), 'write_s': round(write_s, 2),
                            **rtl_facts(prj.model, prj.comb, args.clock_period)}
        if variant == 'comb':
            y_comb = np.asarray(prj.predict_comb(xt, strict=False), dtype=np.float64)
            ports = prj.describe_ports()
            trace_s = write_s
    return {
        'impl': 'ours' if overflow is None else f'ours_{overflow.lower()}',
        'beta': beta,
        'activation_overflow': overflow or 'SAT (default)',
        'flow': 'calibrate -> exact_ebops -> hgq.ir.from_model -> hgq.export.rtl.write_rtl',
        'train_s': round(train_s, 2),
        'calibrate_s': round(calib_s, 2),
        'trace_s': round(trace_s, 2),
        'ebops': float(ebops),
        'layer_ebops': {layer.name: float(np.asarray(keras.ops.convert_to_numpy(layer.compute_ebops())))
                        for layer in model.layers},
        'params': int(sum(int(np.prod(layer.kernel.shape)) + int(layer.units) for layer in model.layers)),
        'test_accuracy_keras': float(np.mean(y_keras.argmax(1) == yt)),
        'test_accuracy_emulator': float(np.mean(y_emul.argmax(1) == yt)),
        'test_accuracy_rtl': float(np.mean(y_comb.argmax(1) == yt)),
        'rtl_vs_keras_mismatches': int(np.sum(y_comb != y_keras)),
        'rtl_vs_emulator_mismatches': int(np.sum(y_comb != y_emul)),
        'outputs_compared': int(y_comb.size),
        'input_port': ports,
        'designs': designs,
        'da4ml_cost_check': float(comb.cost) if comb is not None else None,
    }


def run_yosys(design: dict[str, Any], work: Path) -> dict[str, Any]:
    from hgq.export.yosys import synthesize

    files = design_files(Path(design['src']), design['name'])
    rep = synthesize(files, design['name'], work / design['name'])
    return {'LUT': rep['LUT'], 'FF': rep['FF'], 'CARRY4': rep['CARRY4'], 'MUXF7': rep['MUXF7'],
            'depth_cells': rep.get('longest_path_cells'), 'yosys_s': rep['yosys_seconds'],
            'yosys_version': rep['yosys_version'], 'files': [p.name for p in files]}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else round(a / b, 3)


COLUMNS = {'ours': 'ours', 'ours_wrap': 'ours, WRAP activations', 'hgq2': 'HGQ2'}


def table(res: dict[str, dict[str, Any]], cutoff: float) -> tuple[list[str], list[list[Any]]]:
    """One row per quantity: each implementation's value, then each of ours divided by HGQ2's."""
    impls = [k for k in COLUMNS if k in res]
    ours_impls = [k for k in impls if k != 'hgq2']
    rows: list[list[Any]] = []

    def fmt(v: Any) -> Any:
        if isinstance(v, int):
            return f'{v:,}'
        if isinstance(v, float):
            return f'{v:.4f}' if v < 1 else f'{v:.1f}' if v < 100 else f'{v:,.0f}'
        return v

    def add(label: str, get: Any) -> None:
        vals = {k: get(res[k]) for k in impls}
        b = vals['hgq2']
        ratios = [ratio(vals[k], b) if isinstance(vals[k], int | float) and isinstance(b, int | float) else ''
                  for k in ours_impls]
        if any(v is not None for v in vals.values()):
            rows.append([label, *(fmt(vals[k]) if vals[k] is not None else '' for k in impls), *ratios])

    add('test accuracy, exported logic', lambda r: r['test_accuracy_rtl'])
    add('test accuracy, Keras', lambda r: r['test_accuracy_keras'])
    add('RTL vs Keras: differing outputs', lambda r: r['rtl_vs_keras_mismatches'])
    add('EBOPs (own definition)', lambda r: float(r['ebops']))
    for variant in ('comb', 'pipe'):
        tag = 'combinational' if variant == 'comb' else f'pipelined (cutoff {cutoff:g})'
        for key, label in (('da4ml_cost', 'da4ml cost estimate'), ('LUT', 'Yosys LUT'), ('FF', 'Yosys FF'),
                           ('CARRY4', 'Yosys CARRY4'), ('depth_cells', 'depth (cells)'),
                           ('da4ml_latency_units', 'da4ml delay (adder units)'), ('cycles', 'latency (cycles)'),
                           ('latency_ns', 'latency (ns)'), ('da4ml_reg_bits', 'da4ml register bits'),
                           ('yosys_s', 'Yosys time (s)')):
            if key in (('FF', 'cycles', 'latency_ns', 'da4ml_reg_bits') if variant == 'comb' else
                       ('da4ml_cost', 'da4ml_latency_units', 'depth_cells')):
                continue
            add(f'{tag}: {label}', lambda r, v=variant, k=key: r['designs'][v].get(k))
    add('train time (s)', lambda r: r['train_s'])
    add('calibrate (s)', lambda r: r['calibrate_s'])
    return ['quantity', *(COLUMNS[k] for k in impls), *(f'{COLUMNS[k]} / HGQ2' for k in ours_impls)], rows


def driver(args: argparse.Namespace) -> None:
    bench_dir = Path(__file__).resolve().parents[1]
    if str(bench_dir) not in sys.path:
        sys.path.insert(0, str(bench_dir))
    from common import REPO, format_table, machine_info, pip_version, write_json

    import hgq

    if not Path(hgq.__file__).resolve().is_relative_to(REPO):
        sys.exit(f'imported hgq from {hgq.__file__}: run the driver with our venv (the worker uses --hgq2-python)')
    from hgq.data.toy import make_toy_jets

    out = args.keep or Path(tempfile.mkdtemp(prefix='hgq2_rtl_flow_'))
    out.mkdir(parents=True, exist_ok=True)
    x, y = make_toy_jets(args.samples, seed=1)
    xt, yt = make_toy_jets(TEST_SAMPLES, seed=2)
    data = {'x': x, 'y': y, 'xt': xt, 'yt': yt}
    np.savez(out / 'data.npz', **data)
    start = time.perf_counter()

    runs: list[dict[str, dict[str, Any]]] = []
    for k, beta in enumerate(args.betas):
        tag = f'b{k}'
        res: dict[str, dict[str, Any]] = {'ours': ours(args, data, out / tag / 'ours', beta, tag)}
        print(f"beta {beta:g}: ours EBOPs {res['ours']['ebops']:.0f}, acc {res['ours']['test_accuracy_rtl']:.4f}, "
              f"da4ml cost {res['ours']['designs']['comb']['da4ml_cost']:.0f}", flush=True)
        cmd = [args.hgq2_python, str(Path(__file__).resolve()), '--worker', '--data', str(out / 'data.npz'),
               '--out', str(out / tag / 'hgq2'), '--result', str(out / tag / 'hgq2.json'), '--tag', tag,
               '--epochs', str(args.epochs), '--batch-size', str(args.batch_size), '--lr', str(args.lr),
               '--beta', str(beta), '--seed', str(args.seed), '--latency-cutoff', str(args.latency_cutoff),
               '--clock-period', str(args.clock_period)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out)
        if proc.returncode != 0:
            sys.exit(f'HGQ2 worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}')
        res['hgq2'] = json.loads((out / tag / 'hgq2.json').read_text())
        print(f"beta {beta:g}: hgq2 EBOPs {res['hgq2']['ebops']}, acc {res['hgq2']['test_accuracy_rtl']:.4f}, "
              f"da4ml cost {res['hgq2']['designs']['comb']['da4ml_cost']:.0f}", flush=True)
        if args.ours_wrap:  # where the gap comes from: our flow with HGQ2's overflow choice (da4ml figures only)
            res['ours_wrap'] = ours(args, data, out / tag / 'ours_wrap', beta, f'{tag}w', overflow='WRAP')
            print(f"beta {beta:g}: ours (WRAP) acc {res['ours_wrap']['test_accuracy_rtl']:.4f}, "
                  f"da4ml cost {res['ours_wrap']['designs']['comb']['da4ml_cost']:.0f}", flush=True)
        runs.append(res)

    if not args.no_synth:  # the same Yosys script on the same file selection for every design
        designs = [res[impl]['designs'][v] for res in runs for v in ('comb', 'pipe') for impl in ('ours', 'hgq2')]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for d, rep in zip(designs, pool.map(lambda d: run_yosys(d, out / 'synth'), designs)):
                d.update(rep)
                print(f"{d['name']}: {d['LUT']} LUT, {d['FF']} FF, {d['CARRY4']} CARRY4, depth {d['depth_cells']} "
                      f"({d['yosys_s']} s)", flush=True)
    tables = []
    for beta, res in zip(args.betas, runs):
        headers, rows = table(res, args.latency_cutoff)
        tables.append({'beta': beta, 'headers': headers, 'rows': rows})
        print(f'\nbeta = {beta:g}')
        print(format_table(headers, rows))
    total_s = time.perf_counter() - start
    print(f'total {total_s:.0f} s')
    payload = {
        'benchmark': 'hgq2_rtl_flow',
        'machine': machine_info(),
        'versions': {'ours_da4ml': pip_version(sys.executable, 'da4ml'), 'hgq2_venv': runs[0]['hgq2']['versions'],
                     'keras': pip_version(sys.executable, 'keras'), 'backend': os.environ['KERAS_BACKEND']},
        'command': ' '.join(['python', 'bench/peers/hgq2_rtl_flow.py', *sys.argv[1:]]),
        'method': 'same architecture, data, epochs, batch, optimizer and constant beta trained in each library with '
                  'its default quantizers; final checkpoint of each through its own RTL flow; the same Yosys script '
                  'and file selection for both. ours_wrap: ours with WRAP activation quantizers (da4ml figures only)',
        'settings': {'widths': WIDTHS, 'samples': args.samples, 'test_samples': TEST_SAMPLES, 'epochs': args.epochs,
                     'batch_size': args.batch_size, 'optimizer': f'Adam({args.lr})', 'betas': args.betas,
                     'seed': args.seed, 'latency_cutoff': args.latency_cutoff, 'clock_period_ns': args.clock_period,
                     'yosys_jobs': args.jobs},
        'total_s': round(total_s, 1),
        'runs': runs,
        'tables': tables,
    }
    if not args.no_synth:
        write_json(args.json, payload)
        print(f'wrote {args.json}')
    if args.keep is None:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--samples', type=int, default=50_000)
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--lr', type=float, default=3e-3)
    parser.add_argument('--betas', type=float, nargs='+', default=[1e-5, 1e-4], help='one run per beta (constant)')
    parser.add_argument('--beta', type=float, help=argparse.SUPPRESS)  # worker
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--latency-cutoff', type=float, default=5)
    parser.add_argument('--clock-period', type=float, default=5.0)
    parser.add_argument('--jobs', type=int, default=2, help='Yosys runs at a time')
    parser.add_argument('--no-synth', action='store_true')
    parser.add_argument('--no-ours-wrap', dest='ours_wrap', action='store_false',
                        help='skip the extra run of ours with WRAP activations (da4ml estimates only, no Yosys)')
    parser.add_argument('--hgq2-python', default=str(Path(__file__).resolve().parents[2] / '.peers/hgq2/bin/python'),
                        help='interpreter of the HGQ2 venv (make peers)')
    parser.add_argument('--keep', type=Path, help='keep the projects here (default: a temporary directory)')
    parser.add_argument('--json', type=Path,
                        default=Path(__file__).resolve().parents[1] / 'results' / 'hgq2_flow.json')
    # worker mode (HGQ2's interpreter)
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--data', type=Path, help=argparse.SUPPRESS)
    parser.add_argument('--out', type=Path, help=argparse.SUPPRESS)
    parser.add_argument('--result', type=Path, help=argparse.SUPPRESS)
    parser.add_argument('--tag', default='b0', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        hgq2_worker(args)
    else:
        driver(args)


if __name__ == '__main__':
    main()
