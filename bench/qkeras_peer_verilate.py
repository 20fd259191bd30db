"""Verilator against the exact emulator (`==`) for the designs of bench/qkeras_peer.py, one at a time.

The same check as `hgq synth` (random inputs over twice each quantizer's range, both sides fed the inputs as
the RTL port carries them), without its Yosys run: bench/qkeras_peer.py counted LUTs with `--check 0` on the
loaded machine, and this fills in the exactness of the same RTL (same latency_cutoff and clock). Each result
is cached in WORK/verilator/NAME.json; the table goes to bench/results/qkeras_peer_verilator.json.

Usage: nice -n 10 python bench/qkeras_peer_verilate.py [--work runs/qkeras_peer] [--check 10000] NAME ...
NAME: qkeras_<b>b (an imported QKeras model) or a design name of WORK/synth (scratch_*, ft_*).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_info  # noqa: E402


def checkpoint_of(work: Path, name: str) -> tuple[Path, bool]:
    """The checkpoint behind design `name` (relative to WORK: the cache may have been copied) and whether it is
    calibrated on the training inputs (HGQ checkpoints are; imported QKeras models carry fixed formats)."""
    if name.startswith('qkeras_'):
        return work / 'imported' / f'{name}.keras', False
    report = work / 'synth' / name / 'report.json'
    if report.is_file():
        recorded = Path(json.loads(report.read_text())['checkpoint'])
        return work / recorded.parents[1].name / 'checkpoints' / recorded.name, True
    flow, bits, _, epoch = name.split('_')  # as bench/qkeras_peer.py names them: ft_8b_match_e20
    run = 'hgq_scratch' if flow == 'scratch' else f'hgq_finetuned_{bits}'
    return work / run / 'checkpoints' / f'epoch-{int(epoch[1:]):05d}.keras', True


def verilate(work: Path, name: str, check: int, jobs: int, x_train: np.ndarray) -> dict[str, Any]:
    from hgq import ir
    from hgq.export.rtl import SIM_WORD_BITS, write_rtl
    from hgq.training import calibrate
    from hgq.workflow.files import load_checkpoint
    from hgq.workflow.synth import SynthSettings, _check_rtl

    cached = work / 'verilator' / f'{name}.json'
    if cached.is_file():
        return json.loads(cached.read_text())
    ckpt, cal = checkpoint_of(work, name)
    out = work / 'verilator' / name
    settings = SynthSettings(out_dir=str(out), clock_ns=5.0, latency_cutoff=5, check=check, jobs=jobs)
    model = load_checkpoint(ckpt, compile=False)
    if cal:
        calibrate(model, x_train)
    graph = ir.from_model(model)
    start = time.perf_counter()
    prj = write_rtl(graph, out / 'rtl', 'hgq_model', latency_cutoff=5, clock_period=5.0, write=False)
    port, narrowed = prj.ports[0], None
    if len(prj.ports) == 1 and port.width > SIM_WORD_BITS:
        # da4ml's Verilator harness and its C++ interpreter both take inputs as 32-bit words (a wider port gives
        # wrong interpreter outputs, not an error); the same logic behind a port of fewer fractional bits
        k, i = int(np.max(port.fmt.k)), int(np.max(port.fmt.i))
        narrowed = (k, i, SIM_WORD_BITS - k - i)
        print(f'{name}: port {port.describe()} is wider than {SIM_WORD_BITS} bits; simulating with port {narrowed}',
              flush=True)
        prj = write_rtl(graph, out / 'rtl', 'hgq_model', latency_cutoff=5, clock_period=5.0, input_format=narrowed,
                        write=False)
    prj.write()
    timings: dict[str, float] = {'tracing': round(time.perf_counter() - start, 1)}
    result = _check_rtl(settings, graph, prj, None, timings, nproc=jobs)
    row = {'name': name, 'checkpoint': str(ckpt.relative_to(work)), 'calibrated': cal,
           'default_port': port.describe(), 'narrowed_port': narrowed,
           'da4ml_luts': round(float(prj.comb.cost)), 'latency_cycles': prj.latency.cycles,
           'outputs': result['outputs'], 'mismatches': result['mismatches'], 'simulator': result['simulator'],
           'timings_s': timings, 'machine': machine_info()}
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(row, indent=1))
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('names', nargs='+')
    p.add_argument('--work', type=Path, default=REPO / 'runs' / 'qkeras_peer')
    p.add_argument('--check', type=int, default=10_000, help='random inputs per design (default 10,000)')
    p.add_argument('--jobs', type=int, default=1, help='make jobs of the Verilator build (default 1)')
    p.add_argument('--json', type=Path, default=REPO / 'bench/results/qkeras_peer_verilator.json')
    args = p.parse_args(argv)
    with np.load(args.work / 'split.npz') as z:
        x_train = z['x_train']
    rows = []
    for name in args.names:
        row = verilate(args.work, name, args.check, args.jobs, x_train)
        t = row['timings_s']
        print(f'{name:<22} {row["da4ml_luts"]:>7} da4ml LUT  {row["mismatches"]} / {row["outputs"]} != emulator '
              f'({row["simulator"]}; build {t.get("verilator_build")} s, simulation {t.get("simulation")} s)',
              flush=True)
        rows.append(row)
    old = json.loads(args.json.read_text())['rows'] if args.json.is_file() else []
    merged = {r['name']: r for r in old} | {r['name']: r for r in rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({'command': ' '.join(['python', 'bench/qkeras_peer_verilate.py',
                                                          *(argv or sys.argv[1:])]),
                                     'rows': list(merged.values())}, indent=1))
    print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
