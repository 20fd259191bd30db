"""The `hgq` command. Subcommands grow with the project: export (hls4ml) now; train, report, synth later."""

from __future__ import annotations

import argparse
import os
import sys
import time
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


def _random_inputs(graph: Any, n: int, seed: int) -> np.ndarray:
    """Inputs spread over twice each element's quantizer range, so that overflow paths are exercised."""
    from hgq.ir.analysis import analyze

    infos = analyze(graph)
    first = next(node for node in graph.nodes if graph.inputs[0] in node.inputs)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault('KERAS_BACKEND', 'jax')
    return int(args.run(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
