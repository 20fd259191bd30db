"""The `hgq` command. Subcommands grow with the project: export (hls4ml), synth (RTL, Verilator, Yosys, report);
train and report later."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _load_array(path: str, what: str) -> np.ndarray:
    """A .npy, or the first array of an .npz, checked finite."""
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f'hgq: {what} file {path!r} does not exist')
    data = np.load(p)
    array = data[data.files[0]] if hasattr(data, 'files') else data
    array = np.asarray(array, dtype=np.float32)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise SystemExit(f'hgq: {what} file {path!r} has {bad} NaN/Inf values; fixed-point inputs must be finite')
    return array


def _random_inputs(graph: Any, n: int, seed: int, name: str | None = None) -> np.ndarray:
    """Inputs spread over twice each element's quantizer range, so that overflow paths are exercised
    (for graph input `name`, default the first)."""
    from hgq.ir.analysis import analyze

    infos = analyze(graph)
    name = graph.inputs[0] if name is None else name
    first = next(node for node in graph.nodes if name in node.inputs)
    info = infos[first.name]
    rng = np.random.default_rng(seed)
    span = np.maximum(info.hi - info.lo, 2.0**-8)
    return (info.lo - span / 2 + rng.uniform(size=(n, *info.lo.shape)) * 2 * span).astype(np.float32)


def precision_table(graph: Any) -> str:
    """One line per IR tensor: operation, shape and the range of its per-element widths and fractional bits."""
    from hgq.ir.analysis import analyze

    infos = analyze(graph)
    rows = [f'{"tensor":<30} {"op":<9} {"shape":<14} {"bits min/mean/max":>18} {"frac min/max":>13}']
    for node in graph.nodes:
        info = infos[node.name]
        if info is None:
            continue
        w, f = info.fmt.width, np.broadcast_to(info.fmt.f, info.fmt.width.shape)
        rows.append(f'{node.name:<30} {node.op:<9} {str(node.shape):<14} '
                    f'{int(w.min()):>5}/{w.mean():>6.2f}/{int(w.max()):<5} {int(f.min()):>6}/{int(f.max()):<6}')
    return '\n'.join(rows)


def cmd_export(args: argparse.Namespace) -> int:
    import keras

    import hgq.layers  # noqa: F401 - registers the layers for loading
    from hgq import ir
    from hgq.export.hls4ml import export_hls4ml
    from hgq.training import calibrate

    if not Path(args.checkpoint).is_file():
        raise SystemExit(f'hgq export: checkpoint {args.checkpoint!r} does not exist')
    model = keras.models.load_model(args.checkpoint)
    calibration = None
    if args.calibration:
        calibration = _load_array(args.calibration, 'calibration')
        print(f'calibrating on {len(calibration)} samples from {args.calibration}')
        calibrate(model, calibration)
    graph = ir.from_model(model)
    print(precision_table(graph))
    start = time.time()
    hls_model = export_hls4ml(graph, args.out_dir, backend=args.backend, io_type=f'io_{args.io}')
    print(f'\nwrote and compiled the hls4ml project in {args.out_dir} ({time.time() - start:.1f} s)')
    if args.check:
        x = _random_inputs(graph, args.check, seed=0)
        if calibration is not None:
            x = np.concatenate([x, calibration])
        expected = ir.predict(graph, x)
        got = np.asarray(hls_model.predict(np.ascontiguousarray(x)), dtype=np.float64).reshape(expected.shape)
        mismatches = int(np.sum(got != expected))
        print(f'C-simulation vs exact emulator: {mismatches} mismatches in {expected.size} outputs '
              f'({len(x)} inputs: {args.check} random incl. overflowing'
              f'{"" if calibration is None else f", {len(calibration)} calibration"})')
        return 0 if mismatches == 0 else 1
    return 0


@contextlib.contextmanager
def _step(timings: dict[str, float], key: str, what: str) -> Iterator[None]:
    """Print what is being done, then how long it took; record the seconds in `timings[key]`."""
    print(f'{what} ...', flush=True)
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 2)
    print(f'  done in {timings[key]:.1f} s', flush=True)


def _on_port_grid(ports: list[Any], inputs: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """The inputs as the RTL input ports carry them (truncated and wrapped to each port's format, as
    `RTLProject.predict(..., strict=False)` does), and how many values lay beyond the port's range (wrapped)."""
    from hgq.quantizers.fixed_point import quantize_np

    out, wrapped = [], 0
    for x, port in zip(inputs, ports):
        k, i, f = (np.broadcast_to(a, port.shape) for a in (port.fmt.k, port.fmt.i, port.fmt.f))
        q = quantize_np(np.asarray(x, dtype=np.float64), k, i, f, 'TRN', 'WRAP')
        wrapped += int(np.sum(np.abs(q - x) >= 2.0**-f))  # truncation moves a value by less than one step
        out.append(q)
    return out, wrapped


def _as_list(outputs: Any) -> list[np.ndarray]:
    return [np.asarray(o) for o in outputs] if isinstance(outputs, list) else [np.asarray(outputs)]


def _cpu_seconds() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return round(sum(u.ru_utime + u.ru_stime for u in usage), 1)


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, round(time.perf_counter() - start, 2)


def _check_rtl(args: argparse.Namespace, graph: Any, prj: Any, calibration: np.ndarray | None,
               timings: dict[str, float], nproc: int) -> dict[str, Any]:
    """Build a Verilator model of `prj`'s design in OUT_DIR/verilator and compare it with the exact emulator on
    `args.check` random inputs (plus the calibration inputs), both fed the inputs as the RTL port carries them."""
    from hgq import ir
    from hgq.export.rtl import RTLProject

    simulator = 'Verilator'
    sim_dir = Path(args.out_dir) / 'verilator'
    shutil.rmtree(sim_dir, ignore_errors=True)  # a fresh build; stale stage files of an earlier run would be read
    sim = RTLProject(prj.traced, sim_dir, prj.name, args.latency_cutoff, args.clock_ns)
    with _step(timings, 'verilator_build', f'building the Verilator model in {sim.path} ({nproc} jobs)'):
        try:
            sim.compile(nproc=nproc)
        except ValueError as e:  # da4ml's harness packs every word into 32 bits; the RTL has no such limit
            simulator = "da4ml's C++ interpreter"
            print(f'  Verilator cannot simulate this design: {e}\n  checking with {simulator} of the same logic '
                  'instead', flush=True)
            sim.write()
    differ = [p.name for p, q in zip(prj.verilog_files(), sim.verilog_files()) if p.read_bytes() != q.read_bytes()]
    if differ or len(prj.verilog_files()) != len(sim.verilog_files()):
        raise RuntimeError(f'the simulated Verilog in {sim.path} differs from the design in {prj.path}: {differ}')
    inputs = [_random_inputs(graph, args.check, seed=0, name=name) for name in graph.inputs]
    if calibration is not None:
        inputs[0] = np.concatenate([inputs[0], calibration])
    n_inputs = len(inputs[0])
    with _step(timings, 'simulation', f'simulating {n_inputs:,} inputs and running the exact emulator'):
        on_port, wrapped = _on_port_grid(sim.ports, inputs)
        expected = _as_list(ir.predict(graph, *on_port))
        run = sim.predict if simulator == 'Verilator' else sim.predict_comb
        got = _as_list(run(*on_port, strict=False))
        mismatches = int(sum(np.sum(g != e) for g, e in zip(got, expected)))
        n_outputs = int(sum(e.size for e in expected))
        # what the port costs: the emulator on the float inputs themselves (0 for the default port format)
        port_effect = int(sum(np.sum(a != e) for a, e in zip(_as_list(ir.predict(graph, *inputs)), expected)))
    print(f'{simulator} vs exact emulator: {mismatches} mismatches in {n_outputs} outputs ({n_inputs} inputs: '
          f'{args.check} random incl. overflowing'
          f'{"" if calibration is None else f", {len(calibration)} calibration"}; both fed the inputs as the '
          f'RTL port carries them: truncated to its grid, {wrapped} values beyond its range wrapped)', flush=True)
    print(f'  the port itself: the emulator on the float inputs differs in {port_effect} outputs', flush=True)
    return {'simulator': simulator, 'sim_dir': str(sim.path), 'inputs': n_inputs, 'random': args.check,
            'calibration': 0 if calibration is None else len(calibration), 'outputs': n_outputs,
            'mismatches': mismatches, 'port_wrapped_values': wrapped, 'port_effect_outputs': port_effect}


def cmd_synth(args: argparse.Namespace) -> int:
    from hgq.export.tools import ToolNotFoundError

    try:
        return _synth(args)
    except ToolNotFoundError as e:
        print(f'hgq synth: {e}', file=sys.stderr)
        return 2


def _synth(args: argparse.Namespace) -> int:
    from hgq.export import tools

    if not Path(args.checkpoint).is_file():
        raise SystemExit(f'hgq synth: checkpoint {args.checkpoint!r} does not exist')
    if args.check < 0:
        raise SystemExit(f'hgq synth: --check {args.check} must be >= 0')
    if args.jobs < 1:
        raise SystemExit(f'hgq synth: --jobs {args.jobs} must be >= 1')
    if not args.name.isidentifier():
        raise SystemExit(f'hgq synth: --name {args.name!r} must be a Verilog identifier')
    calibration = _load_array(args.calibration, 'calibration') if args.calibration else None
    # every tool up front: a missing one is named with its install command before minutes are spent
    tools.require_da4ml()
    tools.verilator_root()
    tools.require_make_and_cxx()
    tools.find_yosys()

    started = time.perf_counter()
    timings: dict[str, float] = {}
    out_dir = Path(args.out_dir)
    with _step(timings, 'load', f'loading {args.checkpoint}'):
        import keras

        import hgq.layers  # noqa: F401 - registers the layers for loading
        from hgq import ir
        from hgq import report as rep
        from hgq.export.rtl import write_rtl
        from hgq.training import calibrate, exact_ebops

        model = keras.models.load_model(args.checkpoint)
    if calibration is not None:
        with _step(timings, 'calibration', f'calibrating on {len(calibration)} samples from {args.calibration}'):
            calibrate(model, calibration)
    with _step(timings, 'ir', 'tracing the model into the fixed-point IR'):
        graph = ir.from_model(model)
    if calibration is not None and len(graph.inputs) != 1:
        raise SystemExit(f'hgq synth: --calibration takes one array, the model has {len(graph.inputs)} inputs')
    with _step(timings, 'tracing', f'tracing the IR with da4ml and writing Verilog to {out_dir / "rtl"}'):
        prj = write_rtl(graph, out_dir / 'rtl', args.name, latency_cutoff=args.latency_cutoff,
                        clock_period=args.clock_ns)
    lat = prj.latency
    print(f'  input port: {prj.describe_ports()}')
    print(f'  latency: {lat.cycles} cycles ({lat.stages} pipeline stages) = {lat.ns:g} ns at {args.clock_ns:g} ns; '
          f'da4ml LUT estimate {prj.comb.cost:,.0f}', flush=True)

    # Yosys reads rtl/src; the Verilator build gets its own copy of the same design (RTLProject.compile rewrites
    # its sources), so that with --jobs >= 2 Yosys runs beside the build and the simulation.
    overlap = args.jobs >= 2 and args.check > 0
    check = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = None
        if overlap:
            print('synthesizing with Yosys (synth_xilinx) in the background ...', flush=True)
            future = pool.submit(_timed, prj.synthesize)
        try:
            if args.check:
                check = _check_rtl(args, graph, prj, calibration, timings, nproc=args.jobs - overlap)
            if future is None:
                with _step(timings, 'yosys', 'synthesizing with Yosys (synth_xilinx)'):
                    synthesis = prj.synthesize()
            else:
                print('waiting for Yosys ...', flush=True)
                waited = time.perf_counter()
                synthesis, timings['yosys'] = future.result()
                timings['yosys_wait'] = round(time.perf_counter() - waited, 2)
                print(f'  Yosys done in {timings["yosys"]:.1f} s (waited {timings["yosys_wait"]:.1f} s)', flush=True)
        except BaseException:
            if future is not None and not future.done():
                print('hgq synth: stopping; waiting for the Yosys run in the background to end', file=sys.stderr)
            raise
    print(f'  {synthesis["LUT"]:,} LUT, {synthesis["FF"]:,} FF, {synthesis["CARRY4"]:,} CARRY4, longest path '
          f'{synthesis.get("longest_path_cells")} cells', flush=True)

    with _step(timings, 'report', 'per-layer EBOPs from the IR, da4ml per-stage figures'):
        layers = rep.ebops_per_layer(graph)
        try:
            model_ebops = exact_ebops(model)
        except ValueError:  # activation ranges never observed: no exact figure to compare with
            model_ebops = None
        report = {
            'checkpoint': str(args.checkpoint), 'top': args.name, 'rtl_dir': str(prj.path),
            'settings': {'clock_period_ns': args.clock_ns, 'latency_cutoff': args.latency_cutoff,
                         'check': args.check, 'calibration': args.calibration, 'jobs': args.jobs,
                         'yosys_beside_verilator': overlap},
            'input_ports': [p.describe() for p in prj.ports],
            'check': check,
            'synthesis': {k: v for k, v in synthesis.items() if k not in ('latency', 'da4ml_cost_luts',
                                                                          'da4ml_reg_bits')},
            'latency': lat.as_dict(),
            'da4ml': {'cost_luts': float(prj.comb.cost), 'reg_bits': synthesis.get('da4ml_reg_bits', 0),
                      'stages': rep.da4ml_stages(prj)},
            'layers': layers,
            'ebops': {'ir_total': round(sum(r['ebops'] for r in layers), 3), 'model_exact': model_ebops},
            'timings_s': timings,
            'tools': {'yosys': synthesis.get('yosys_version', ''), 'verilator': tools.verilator_version()},
        }
    timings['total'] = round(time.perf_counter() - started, 2)  # to here; writing the files takes ~1 s more
    timings['cpu'] = _cpu_seconds()  # this process and its finished children (Verilator, make, g++, Yosys)
    paths = rep.write_report(out_dir, report)
    print()
    print(rep.summary_table(report))
    print()
    print(rep.layers_table(layers))
    print(f'\nwrote {paths["md"]}, {paths["json"]}, {paths["png"]}; '
          f'{time.perf_counter() - started:.1f} s in all')
    return 0 if check is None or check['mismatches'] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='hgq', description='Train and export high-granularity quantized networks.')
    sub = parser.add_subparsers(dest='command', required=True)
    export = sub.add_parser('export', help='export a checkpoint bit-exactly')
    export.add_argument('checkpoint', help='a .keras checkpoint of hgq layers')
    export.add_argument('--to', choices=['hls4ml'], default='hls4ml', help='the backend')
    export.add_argument('out_dir', help='the project directory to write')
    export.add_argument('--backend', choices=['Vitis', 'Vivado'], default='Vitis')
    export.add_argument('--io', choices=['parallel', 'stream'], default='parallel')
    export.add_argument('--check', type=int, default=10_000, metavar='N',
                        help='compare the C-simulation with the exact emulator on N random inputs (0: skip)')
    export.add_argument('--calibration', metavar='FILE', help='.npy/.npz inputs to calibrate activation ranges on '
                        '(also checked); without it the ranges stored in the checkpoint are used')
    export.set_defaults(run=cmd_export)

    synth = sub.add_parser('synth', help='RTL, Verilator check, Yosys synthesis and a resource report',
                           description='Write Verilog of a checkpoint (da4ml), check a Verilator simulation of it '
                           'against the exact emulator, synthesize it with Yosys (LUT/FF/CARRY4, longest path), and '
                           'write OUT_DIR/report.md, report.json and resources.png.')
    synth.add_argument('checkpoint', help='a .keras checkpoint of hgq layers')
    synth.add_argument('out_dir', help='the directory to write (rtl/, the report)')
    synth.add_argument('--clock-ns', type=float, default=5.0, metavar='NS',
                       help='the clock period the latency is stated at (default 5)')
    synth.add_argument('--latency-cutoff', type=float, default=5, metavar='N',
                       help="pipeline stages of at most N da4ml delay units (~ one adder each); <= 0: "
                       "combinational (default 5)")
    synth.add_argument('--calibration', metavar='FILE', help='.npy/.npz inputs to calibrate activation ranges on '
                       '(also checked); without it the ranges stored in the checkpoint are used')
    synth.add_argument('--check', type=int, default=10_000, metavar='N',
                       help='compare the Verilator simulation with the exact emulator on N random inputs '
                       '(plus the calibration inputs; 0: skip the simulation)')
    synth.add_argument('--name', default='hgq_model', help='the top module\'s name (default hgq_model)')
    synth.add_argument('--jobs', type=int, default=2, metavar='J',
                       help='processes to use: with J >= 2 Yosys runs beside the Verilator build (J-1 jobs); '
                       '1: one step after another (default 2)')
    synth.set_defaults(run=cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault('KERAS_BACKEND', 'jax')
    return int(args.run(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
