"""One check for every quantizer scheme: Keras inference == emulator == hls4ml C-sim == Verilator, with `==`.

Scheme tests build a small calibrated model and call `check_backends`; it traces the model once, writes
and compiles both projects under `root`, and returns the mismatch counts (all must be 0) and the number
of outputs compared per input scale. Inputs are snapped to the RTL port's grid first, so that every
backend sees the same numbers; scale 4 drives the quantizers beyond their calibrated ranges.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import hgq.ir as ir


def require_tools() -> None:
    """Skip without hls4ml/da4ml/Verilator/g++, except under CI=true where they must be there."""
    from hgq.export import tools

    try:
        tools.require_da4ml()
        tools.verilator_root()
        tools.require_make_and_cxx()
        import hls4ml  # noqa: F401
    except (tools.ToolNotFoundError, ImportError) as e:
        if os.environ.get('CI', '').lower() == 'true':
            pytest.fail(f'{e}; the exactness tests must run on CI', pytrace=False)
        pytest.skip(str(e))


def _flat(y: Any) -> np.ndarray:
    ys = y if isinstance(y, list) else [y]
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in ys], axis=1)


def _port_grid(project: Any, x: np.ndarray) -> np.ndarray:
    """x truncated to the RTL input port's step and clipped into its range (single-input models)."""
    port = project.traced.ports[0] if hasattr(project, 'traced') else None
    if port is None:
        return x
    f = np.broadcast_to(port.fmt.f, port.shape).astype(np.float64)
    i = np.broadcast_to(port.fmt.i, port.shape).astype(np.float64)
    k = np.broadcast_to(port.fmt.k, port.shape).astype(np.float64)
    x = np.floor(np.ldexp(x, f.astype(np.int64))) * 2.0**-f
    lo, hi = -k * 2.0**i, 2.0**i - 2.0**-f
    return np.clip(x, lo, hi)


def check_backends(model: keras.Model, x: np.ndarray, root: Path, name: str = 'hgq_check',
                   scales: tuple[float, ...] = (1.0, 4.0)) -> dict[str, Any]:
    """Mismatch counts of Keras, hls4ml C-sim and Verilator against the emulator, per input scale."""
    from hgq.export.hls4ml import export_hls4ml
    from hgq.export.rtl import write_rtl

    graph = ir.from_model(model)
    hls = export_hls4ml(graph, root / 'hls4ml', project_name=name)
    rtl = write_rtl(graph, root / 'rtl', name).write().compile()
    counts: dict[str, Any] = {'outputs': 0}
    for scale in scales:
        xs = _port_grid(rtl, np.asarray(x, dtype=np.float64) * scale)
        want = _flat(ir.predict(graph, xs))
        got = {'keras': _flat(model.predict(xs.astype(np.float32), verbose=0, batch_size=4096)),
               'hls4ml': _flat(hls.predict(np.ascontiguousarray(xs))).reshape(want.shape),
               'verilator': _flat(rtl.predict(xs)).reshape(want.shape)}
        for backend, y in got.items():
            counts[f'{backend} x{scale:g}'] = int((y != want).sum())
        counts['outputs'] += want.size
    return counts
