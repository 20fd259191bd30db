"""`hgq synth` as a function: RTL of a model, a Verilator check against the exact emulator, Yosys, a report.

Used by the `hgq synth` command (one checkpoint) and by `hgq report --synth` (several checkpoints of a
run). `settings` carries what the command line gives: out_dir, clock_ns, latency_cutoff, check (random
inputs to simulate, 0: none), name (top module), jobs, the labels checkpoint and calibration, and
counts_only (Yosys counts only: no Verilator check, no longest-path analysis).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SynthSettings:
    out_dir: str
    clock_ns: float = 5.0
    latency_cutoff: float = 5
    check: int = 10_000
    name: str = 'hgq_model'
    jobs: int = 2
    checkpoint: str = ''            # what the report calls the model (its file)
    calibration: str | None = None  # where the calibration inputs came from, for the report
    counts_only: bool = False       # Yosys counts only: no Verilator check, no longest-path analysis
    input_format: tuple[int, int, int] | None = None  # (k, i, f) of every input port; None: hgq.ir.ports' policy


def parse_input_format(text: str) -> tuple[int, int, int]:
    """'ap_fixed<W,I>', 'ap_ufixed<W,I>' or 'k,i,f' (i without the sign bit) as (k, i, f).

    Why: the default port of a RND_CONV (QKeras) input quantizer carries 24 extra fraction bits so that any
    float32 input rounds exactly; an upstream that delivers words on a known grid needs only that grid."""
    t = text.replace(' ', '')
    m = re.fullmatch(r'ap_(u?)fixed<(-?\d+),(-?\d+)>', t)
    if m:
        k, w, i_total = int(not m.group(1)), int(m.group(2)), int(m.group(3))
        kif = (k, i_total - k, w - i_total)
    elif re.fullmatch(r'-?\d+,-?\d+,-?\d+', t):
        kif = tuple(int(v) for v in t.split(','))  # type: ignore[assignment]
    else:
        raise ValueError(f'input format {text!r}: use ap_fixed<W,I>, ap_ufixed<W,I> or k,i,f (e.g. 1,3,8)')
    k, i, f = kif
    if k not in (0, 1) or k + i + f <= 0:
        raise ValueError(f'input format {text!r}: needs k in {{0, 1}} and at least one bit (k + i + f = {k + i + f})')
    return k, i, f


def random_inputs(graph: Any, n: int, seed: int, name: str | None = None) -> np.ndarray:
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


@contextlib.contextmanager
def _step(timings: dict[str, float], key: str, what: str) -> Iterator[None]:
    """Print what is being done, then how long it took; record the seconds in `timings[key]`."""
    print(f'{what} ...', flush=True)
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 2)
    print(f'  done in {timings[key]:.1f} s', flush=True)


def _on_port_grid(ports: list[Any], inputs: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """The inputs as the RTL input ports carry them (truncated to each port's grid, then wrapped or saturated as
    the port states, as `RTLProject.predict(..., strict=False)` does), and how many values lay beyond its range."""
    from hgq.quantizers.fixed_point import quantize_np

    out, wrapped = [], 0
    for x, port in zip(inputs, ports):
        k, i, f = (np.broadcast_to(a, port.shape) for a in (port.fmt.k, port.fmt.i, port.fmt.f))
        q = quantize_np(np.asarray(x, dtype=np.float64), k, i, f, 'TRN', port.overflow)
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


def _check_rtl(args: SynthSettings, graph: Any, prj: Any, calibration: np.ndarray | None,
               timings: dict[str, float], nproc: int) -> dict[str, Any]:
    """Build a Verilator model of `prj`'s design in OUT_DIR/verilator and compare it with the exact emulator on
    `args.check` random inputs (plus the calibration inputs), both fed the inputs as the RTL port carries them."""
    from hgq import ir
    from hgq.export.rtl import RTLProject

    sim_dir = Path(args.out_dir) / 'verilator'
    shutil.rmtree(sim_dir, ignore_errors=True)  # a fresh build; stale stage files of an earlier run would be read
    sim = RTLProject(prj.traced, sim_dir, prj.name, args.latency_cutoff, args.clock_ns)
    with _step(timings, 'verilator_build', f'building the Verilator model in {sim.path} ({nproc} jobs)'):
        try:
            sim.compile(nproc=nproc)
        except ValueError as e:
            # da4ml's Verilator harness and its C++ interpreter both pack every word into 32 bits (the interpreter
            # silently computes wrong outputs beyond): no simulation can check this design, so say so
            reason = (f'{e}. Not checked: give the port the word the upstream delivers with --input-format '
                      '(e.g. ap_fixed<16,6>) to simulate it')
            print(f'  {reason}', flush=True)
            return {'simulator': None, 'skipped': reason, 'mismatches': None}
        except RuntimeError as e:  # da4ml says only 'Compilation failed!!' (make's output is on stderr above)
            raise RuntimeError(f'hgq synth: the Verilator build in {sim.path} failed: {e}') from e
    simulator = 'Verilator'
    differ = [p.name for p, q in zip(prj.verilog_files(), sim.verilog_files()) if p.read_bytes() != q.read_bytes()]
    if differ or len(prj.verilog_files()) != len(sim.verilog_files()):
        raise RuntimeError(f'the simulated Verilog in {sim.path} differs from the design in {prj.path}: {differ}')
    inputs = [random_inputs(graph, args.check, seed=0, name=name) for name in graph.inputs]
    if calibration is not None:
        inputs[0] = np.concatenate([inputs[0], calibration])
    n_inputs = len(inputs[0])
    with _step(timings, 'simulation', f'simulating {n_inputs:,} inputs and running the exact emulator'):
        on_port, wrapped = _on_port_grid(sim.ports, inputs)
        expected = _as_list(ir.predict(graph, *on_port))
        got = _as_list(sim.predict(*on_port, strict=False))
        mismatches = int(sum(np.sum(g != e) for g, e in zip(got, expected)))
        n_outputs = int(sum(e.size for e in expected))
        # what the port costs: the emulator on the float inputs themselves (0 for the default port format)
        port_effect = int(sum(np.sum(a != e) for a, e in zip(_as_list(ir.predict(graph, *inputs)), expected)))
    print(f'{simulator} vs exact emulator: {mismatches} mismatches in {n_outputs} outputs ({n_inputs} inputs: '
          f'{args.check} random incl. overflowing'
          f'{"" if calibration is None else f", {len(calibration)} calibration"}; both fed the inputs as the '
          f'RTL port carries them: truncated to its grid, {wrapped} values beyond its range '
          f'{"saturated" if any(p.overflow == "SAT" for p in sim.ports) else "wrapped"})', flush=True)
    print(f'  the port itself: the emulator on the float inputs differs in {port_effect} outputs', flush=True)
    return {'simulator': simulator, 'sim_dir': str(sim.path), 'inputs': n_inputs, 'random': args.check,
            'calibration': 0 if calibration is None else len(calibration), 'outputs': n_outputs,
            'mismatches': mismatches, 'port_wrapped_values': wrapped, 'port_effect_outputs': port_effect}


def require_tools(counts_only: bool = False) -> None:
    """Every tool up front: a missing one is named with its install command before minutes are spent
    (`counts_only`: da4ml and Yosys; no Verilator, make or g++)."""
    from hgq.export import tools

    tools.require_da4ml()
    if not counts_only:
        tools.verilator_root()
        tools.require_make_and_cxx()
    tools.find_yosys()


def synthesize_model(model: Any, settings: SynthSettings, calibration: np.ndarray | None = None
                     ) -> tuple[dict[str, Any], dict[str, Path]]:
    """RTL, check, Yosys and the report files for a loaded (and, with `calibration`, calibrated here) model.

    Returns (report dict, paths of report.md/json/png). Tools must have been checked (`require_tools`).
    """
    args = settings
    if args.counts_only:  # the same Yosys counts; the design is not simulated, its depth not analysed
        args = dataclasses.replace(args, check=0)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    out_dir = Path(args.out_dir)
    with _step(timings, 'load', 'loading the libraries'):

        import hgq.layers  # noqa: F401 - registers the layers for loading
        from hgq import ir
        from hgq import report as rep
        from hgq.export import tools
        from hgq.export.rtl import write_rtl
        from hgq.training import calibrate, exact_ebops

    if calibration is not None:
        with _step(timings, 'calibration', f'calibrating on {len(calibration)} samples from {args.calibration}'):
            calibrate(model, calibration)
    with _step(timings, 'ir', 'tracing the model into the fixed-point IR'):
        graph = ir.from_model(model)
    if calibration is not None and len(graph.inputs) != 1:
        raise ValueError(f'hgq synth: --calibration takes one array, the model has {len(graph.inputs)} inputs')
    with _step(timings, 'tracing', f'tracing the IR with da4ml and writing Verilog to {out_dir / "rtl"}'):
        prj = write_rtl(graph, out_dir / 'rtl', args.name, latency_cutoff=args.latency_cutoff,
                        input_format=args.input_format, clock_period=args.clock_ns)
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
            future = pool.submit(_timed, lambda: prj.synthesize(longest_path=not args.counts_only))
        try:
            if args.check:
                check = _check_rtl(args, graph, prj, calibration, timings, nproc=args.jobs - overlap)
            if future is None:
                with _step(timings, 'yosys', 'synthesizing with Yosys (synth_xilinx)'):
                    synthesis = prj.synthesize(longest_path=not args.counts_only)
            else:
                print('waiting for Yosys ...', flush=True)
                waited = time.perf_counter()
                try:
                    synthesis, timings['yosys'] = future.result()
                except Exception as e:  # name the stage: its traceback shows only the worker thread
                    raise RuntimeError(f'hgq synth: Yosys (run beside the Verilator build) failed: {e}') from e
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
                         'yosys_beside_verilator': overlap, 'counts_only': args.counts_only,
                         'input_format': None if args.input_format is None else list(args.input_format)},
            'input_ports': [p.describe() for p in prj.ports],
            'check': check,
            'synthesis': {k: v for k, v in synthesis.items() if k not in ('latency', 'da4ml_cost_luts',
                                                                          'da4ml_reg_bits')},
            'latency': lat.as_dict(),
            'da4ml': {'cost_luts': float(prj.comb.cost), 'reg_bits': synthesis.get('da4ml_reg_bits', 0),
                      'stages': rep.da4ml_stages(prj)},
            'layers': layers,
            'asq_adapters': rep.asq_adapters(graph) if any(n.op == 'scaled_encode' for n in graph.nodes) else [],
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
    return report, paths

