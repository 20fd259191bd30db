"""`hgq export` as a function: a calibrated model -> hls4ml project, compiled, C-simulation checked with `==`
against the exact emulator (random inputs over twice each input quantizer's range, so overflow is exercised,
plus any real inputs given)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .synth import random_inputs


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


def export_checked(model: Any, out_dir: str | os.PathLike, backend: str = 'Vitis', io: str = 'parallel',
                   check: int = 10_000, real_inputs: np.ndarray | None = None, verbose: bool = True
                   ) -> dict[str, Any]:
    """Write and compile the hls4ml project of a calibrated model; with check > 0 compare its C-simulation with
    the emulator. Returns {'seconds', 'inputs', 'outputs', 'mismatches'} (the last three None without a check)."""
    from hgq import ir
    from hgq.export.hls4ml import export_hls4ml

    graph = ir.from_model(model)
    if verbose:
        print(precision_table(graph))
    start = time.time()
    hls_model = export_hls4ml(graph, out_dir, backend=backend, io_type=f'io_{io}')
    result: dict[str, Any] = {'seconds': round(time.time() - start, 1), 'inputs': None, 'outputs': None,
                              'mismatches': None}
    print(f'\nwrote and compiled the hls4ml project in {out_dir} ({result["seconds"]:.1f} s)', flush=True)
    if check:
        x = random_inputs(graph, check, seed=0)
        if real_inputs is not None:
            x = np.concatenate([x, np.asarray(real_inputs, dtype=np.float32)])
        expected = ir.predict(graph, x)
        got = np.asarray(hls_model.predict(np.ascontiguousarray(x)), dtype=np.float64).reshape(expected.shape)
        result.update(inputs=len(x), outputs=int(expected.size), mismatches=int(np.sum(got != expected)))
        print(f'C-simulation vs exact emulator: {result["mismatches"]} mismatches in {expected.size} outputs '
              f'({len(x)} inputs: {check} random incl. overflowing'
              f'{"" if real_inputs is None else f", {len(real_inputs)} real"})', flush=True)
    return result
