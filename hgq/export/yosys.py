"""Synthesize Verilog with Yosys for a Xilinx LUT/FF/CARRY4 count and the longest combinational path.

Script (Yosys 0.23, `apt-get install -y yosys`):

    read_verilog -sv -defer <design files and the static helpers they use>
    synth_xilinx -top TOP -flatten -nodsp -noiopad -noclkbuf
    tee -q -o stat.json stat -json
    tee -q -o ltp.txt ltp -noff

`-defer` elaborates modules only with their actual parameters (da4ml's `lookup_table` would otherwise
`$readmemh` its default file name); the ROM images (`*.mem`) are copied into the working directory.
`synth_xilinx` maps to 7-series primitives (LUT1..LUT6, CARRY4, FDRE/FDSE/FDCE/FDPE, MUXF7/8, ...);
`-nodsp` keeps multipliers in LUTs (da4ml writes adder graphs, no multipliers anyway), `-noiopad`
leaves the ports unbuffered, `-noclkbuf` inserts no BUFG on the clock (a global buffer is no logic; it
was the only cell this changes, and skipping it saves a pass: measured in bench/synth_speed.py).
`ltp -noff` is the longest topological path in cells, flip-flops cut (for a combinational design: input
to output), a technology-independent depth, not a timing.
Yosys does no placement or routing: the counts are post-synthesis estimates (no Vivado here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .tools import find_yosys

#: synth_xilinx options; the LUT/FF/CARRY4 counts are the same as with the former `-flatten -nodsp -noiopad`
#: (bench/synth_speed.py checks that on the same designs)
SYNTH_OPTIONS = ('-flatten', '-nodsp', '-noiopad', '-noclkbuf')
FF_CELLS = ('FDRE', 'FDSE', 'FDCE', 'FDPE', 'FDRE_1', 'FDSE_1', 'FDCE_1', 'FDPE_1', 'LDCE', 'LDPE')
LUT_CELLS = tuple(f'LUT{n}' for n in range(1, 7))


def yosys_script(files: Sequence[Path], top: str, longest_path: bool = True,
                 options: Sequence[str] = SYNTH_OPTIONS) -> str:
    reads = ' '.join(f'"{Path(p).resolve()}"' for p in files)
    lines = [f'read_verilog -sv -defer {reads}', f'synth_xilinx -top {top} {" ".join(options)}',
             'tee -q -o stat.json stat -json']
    if longest_path:
        lines.append('tee -q -o ltp.txt ltp -noff')
    return '\n'.join(lines) + '\n'


def parse_stat(stat: dict[str, Any], top: str) -> dict[str, Any]:
    """Cell counts of `top` from `stat -json`: LUT (LUT1..LUT6 summed), FF, CARRY4, MUXF7/8, and every type."""
    modules = stat.get('modules', {})
    entry = modules.get(f'\\{top}') or modules.get(top)
    if entry is None:
        entry = stat.get('design')
    if entry is None and not modules:  # Yosys removed every module: a design with no logic left
        entry = {'num_cells_by_type': {}, 'num_cells': 0}
    if entry is None:
        raise ValueError(f'yosys stat has no module {top!r} (modules: {list(modules)})')
    cells = {str(k): int(v) for k, v in entry.get('num_cells_by_type', {}).items()}
    return {
        'LUT': sum(cells.get(c, 0) for c in LUT_CELLS),
        'FF': sum(cells.get(c, 0) for c in FF_CELLS),
        'CARRY4': cells.get('CARRY4', 0),
        'MUXF7': cells.get('MUXF7', 0),
        'MUXF8': cells.get('MUXF8', 0),
        'cells': cells,
        'num_cells': int(entry.get('num_cells', sum(cells.values()))),
    }


def load_stat(text: str) -> dict[str, Any]:
    """`stat -json` output as a dict. Yosys 0.23 writes `"modules": {}, }` (a trailing comma, no "design")
    when synthesis removed every module, e.g. a fully pruned model whose outputs are all constant."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(re.sub(r',\s*}', '}', text))


def parse_ltp(text: str) -> int | None:
    """The length (cells) of the longest topological path reported by `ltp`."""
    lengths = [int(m) for m in re.findall(r'[Ll]ongest topological path in .*?\(length=(\d+)\)', text)]
    return max(lengths) if lengths else None


def synthesize(files: Sequence[str | os.PathLike], top: str, work_dir: str | os.PathLike,
               memfiles: Sequence[str | os.PathLike] = (), longest_path: bool = True,
               timeout: float | None = 1800, options: Sequence[str] = SYNTH_OPTIONS) -> dict[str, Any]:
    """Run Yosys on `files` with top module `top` in `work_dir`; returns the parsed report.

    Returns a dict: LUT, FF, CARRY4, MUXF7, MUXF8, cells (every type), num_cells, longest_path_cells,
    yosys_seconds, yosys_version, stat_json (its path), log (its path). Raises ToolNotFoundError without
    yosys, RuntimeError (with the log's tail) when Yosys fails.
    """
    yosys = find_yosys()
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for mem in memfiles:  # $readmemh paths are relative to the working directory
        shutil.copy(mem, work / Path(mem).name)
    files = [Path(p).resolve() for p in files]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise FileNotFoundError(f'Verilog files not found: {missing}')
    script = work / 'synth.ys'
    script.write_text(yosys_script(files, top, longest_path, options))
    log = work / 'yosys.log'
    start = time.perf_counter()
    with open(log, 'w') as fh:
        proc = subprocess.run([yosys, '-q', '-l', str(log.with_suffix('.full.log')), '-s', str(script)], cwd=work,
                              stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = ''.join(log.read_text().splitlines(keepends=True)[-30:])
        full = log.with_suffix('.full.log')
        if full.exists():
            tail += ''.join(full.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f'yosys failed (exit {proc.returncode}) on {top}; log {full}:\n{tail}')
    stat_path = work / 'stat.json'
    stat = load_stat(stat_path.read_text())
    report = parse_stat(stat, top)
    if longest_path and (work / 'ltp.txt').exists():
        report['longest_path_cells'] = parse_ltp((work / 'ltp.txt').read_text())
    report['yosys_seconds'] = round(seconds, 2)
    report['yosys_version'] = subprocess.run([yosys, '-V'], capture_output=True, text=True).stdout.strip()
    report['stat_json'] = str(stat_path)
    report['log'] = str(log.with_suffix('.full.log'))
    return report
