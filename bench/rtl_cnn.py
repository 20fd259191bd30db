"""A Fashion-MNIST-shaped CNN through the RTL flow: Verilog, Verilator == emulator, Yosys. Too slow for CI.

Models: `fashion_cnn` of bench/export_speed.py (28x28x1: QConv2D 3x3x4 relu, QMaxPooling2D 2, QConv2D 3x3x8 relu,
QMaxPooling2D 2, QFlatten, QDense 10) and, for reference, `cnn16`, the 16x16x1 CNN that tests/test_export_rtl.py
builds with Verilator on CI. Both trained one epoch on random data, then random per-element formats (weights
f in 0..3, activations f in 0..2: 1-3 bit weights, about half pruned; tests/models.py) and calibrated. Each is
traced (`hgq.ir.from_model`), written pipelined (`write_rtl(..., latency_cutoff=5, clock_period=5.0)`), built
with Verilator (2 jobs) and simulated on N samples on the input port's grid, in range and x4 (saturating and
wrapping), compared with `hgq.ir.predict` with `==`; then Yosys `synth_xilinx` unless --no-synth.

    KERAS_BACKEND=tensorflow python bench/rtl_cnn.py [--samples 10000] [--no-synth] [--only fashion_cnn]

Prints a table and writes bench/results/rtl_cnn.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, format_table, machine_info, write_json

sys.path.insert(0, str(REPO / 'tests'))  # the test helpers: random formats, the CI CNN

WEIGHT_F, ACT_F = (0, 3), (0, 2)


def fashion() -> tuple[Any, tuple[int, ...]]:
    import keras
    from export_speed import fashion_cnn
    from models import fit_randomized, random_data

    import hgq.ir as ir

    keras.utils.set_random_seed(1234)
    model = fit_randomized(fashion_cnn(), random_data((28, 28, 1), 2000, 7), 7, act_f=ACT_F, weight_f=WEIGHT_F)
    return ir.from_model(model), (28, 28, 1)


def cnn16() -> tuple[Any, tuple[int, ...]]:
    import keras
    from test_export_rtl import cnn16 as build

    keras.utils.set_random_seed(1234)
    return build(), (16, 16, 1)


MODELS: dict[str, Callable[[], tuple[Any, tuple[int, ...]]]] = {'fashion_cnn': fashion, 'cnn16': cnn16}


def measure(name: str, out: Path, samples: int, synth: bool, yosys_timeout: float) -> dict[str, Any]:
    import hgq.ir as ir
    from hgq.export.rtl import write_rtl

    graph, shape = MODELS[name]()
    t0 = time.perf_counter()
    prj = write_rtl(graph, out / name, name, latency_cutoff=5, clock_period=5.0)
    trace_s = time.perf_counter() - t0
    prj.compile(nproc=2)
    weights = np.concatenate([n.attrs['weight_fmt'].broadcast(n.attrs['weight'].shape).width.ravel()
                              for n in graph.nodes if n.op in ('dense', 'conv')])
    row: dict[str, Any] = {
        'model': name, 'input': 'x'.join(map(str, shape)), 'port': prj.describe_ports(),
        'weights': int(weights.size), 'weights_pruned': int((weights == 0).sum()),
        'weight_bits_hist': np.bincount(weights).tolist(), 'da4ml_cost': round(float(prj.comb.cost)),
        'cycles': prj.latency.cycles, 'trace_write_s': round(trace_s, 1),
        'verilator_build_s': round(prj.build_seconds, 1),
    }
    x = np.random.default_rng(41).normal(size=(samples, *shape))
    f = np.broadcast_to(prj.ports[0].fmt.f, shape)
    x = np.floor(np.ldexp(x, f)) * np.ldexp(1.0, -f)  # on the port grid
    for scale in (1, 4):
        t0 = time.perf_counter()
        got = prj.predict(x * scale)
        sim_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        want = ir.predict(graph, x * scale)
        emu_s = time.perf_counter() - t0
        row[f'outputs_x{scale}'] = int(want.size)
        row[f'mismatches_x{scale}'] = int((np.asarray(got).reshape(want.shape) != want).sum())
        row[f'sim_samples_per_s_x{scale}'] = round(samples / sim_s)
        row[f'emulator_samples_per_s_x{scale}'] = round(samples / emu_s)
    print(f'{name}: da4ml cost {row["da4ml_cost"]}, build {row["verilator_build_s"]} s, mismatches '
          f'{row["mismatches_x1"]}/{row["outputs_x1"]} (x1), {row["mismatches_x4"]}/{row["outputs_x4"]} (x4)',
          flush=True)
    if synth:
        try:
            report = prj.synthesize(timeout=yosys_timeout)
            row.update({k: report[k] for k in ('LUT', 'FF', 'CARRY4', 'longest_path_cells', 'yosys_seconds')})
        except subprocess.TimeoutExpired:
            row['yosys_seconds'] = f'> {yosys_timeout:.0f} (stopped)'
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--samples', type=int, default=10_000, help='samples per input scale (x1 and x4)')
    parser.add_argument('--only', nargs='*', choices=list(MODELS), help='models to run (default: all)')
    parser.add_argument('--no-synth', action='store_true', help='no Yosys')
    parser.add_argument('--yosys-timeout', type=float, default=3600)
    parser.add_argument('--keep', type=Path, help='keep the RTL projects here (default: a temporary directory)')
    parser.add_argument('--json', type=Path, default=REPO / 'bench/results/rtl_cnn.json')
    args = parser.parse_args(argv)

    import da4ml
    import keras

    from hgq.export.tools import verilator_version

    out = args.keep or Path(tempfile.mkdtemp(prefix='rtl_cnn_'))
    rows = [measure(name, out, args.samples, not args.no_synth, args.yosys_timeout) for name in args.only or MODELS]
    cols = ['model', 'input', 'weights', 'weights_pruned', 'da4ml_cost', 'cycles', 'verilator_build_s',
            'sim_samples_per_s_x1', 'emulator_samples_per_s_x1', 'outputs_x1', 'mismatches_x1', 'outputs_x4',
            'mismatches_x4', 'LUT', 'FF', 'CARRY4', 'yosys_seconds']
    print(format_table(cols, [[r.get(c) for c in cols] for r in rows]))
    write_json(args.json, {
        'benchmark': 'rtl_cnn', 'machine': machine_info(),
        'versions': {'keras': keras.__version__, 'backend': keras.backend.backend(), 'da4ml': da4ml.__version__,
                     'verilator': verilator_version()},
        'command': ' '.join(['python', 'bench/rtl_cnn.py', *(sys.argv[1:] if argv is None else argv)]),
        'settings': {'weight_f': WEIGHT_F, 'act_f': ACT_F, 'samples_per_scale': args.samples,
                     'rtl': "write_rtl(graph, dir, name, latency_cutoff=5, clock_period=5.0); compile(nproc=2)"},
        'models': rows,
    })
    print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
