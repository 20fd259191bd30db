"""Exact value ranges and formats of every tensor of a Graph, and where float32 cannot be exact.

Ranges come from `ranges.exact_ranges`, the one exact integer range analysis (interval arithmetic
over the quantizers' formats: the widest values the hardware can ever see, not the calibration
data). They give each node's output format — the
accumulator and result precisions that backends declare — and the float32 exactness check:
Keras computes in float32, which is exact for a sum of fixed-point products only while every
partial sum fits its 24-bit significand (docs/export.md states the bound).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .graph import Format, Graph
from .ranges import Range, element_formats, exact_ranges

FLOAT32_SIGNIFICAND_BITS = 24


@dataclass
class TensorInfo:
    """Per-element bounds [lo, hi] (float64, for reports), the exact format, and the bound on any partial sum."""

    lo: np.ndarray
    hi: np.ndarray
    fmt: Format
    partial_sum_bits: int = 0  # width needed by the largest intermediate sum in float arithmetic
    range: Range | None = None  # the exact integer range it is read from


def _info(r: Range) -> TensorInfo:
    lo, hi = r.values()
    return TensorInfo(lo, hi, element_formats(r), r.partial_bits, r)


def analyze(graph: Graph) -> dict[str, TensorInfo | None]:
    """TensorInfo of every node's output (None for the float inputs), read from `ranges.exact_ranges`."""
    return {name: None if r is None else _info(r) for name, r in exact_ranges(graph).items()}


def float32_inexact_nodes(graph: Graph, infos: dict[str, TensorInfo | None] | None = None) -> list[tuple[str, int]]:
    """(node, bits) for every node whose float32 evaluation in Keras may round (bits > 24)."""
    infos = infos if infos is not None else analyze(graph)
    return [(n.name, infos[n.name].partial_sum_bits) for n in graph.nodes
            if infos[n.name] is not None and infos[n.name].partial_sum_bits > FLOAT32_SIGNIFICAND_BITS]


def warn_if_float32_inexact(graph: Graph) -> list[tuple[str, int]]:
    """Warn (and return) where the Keras model cannot equal the exact fixed-point result bit for bit."""
    bad = float32_inexact_nodes(graph)
    if bad:
        listing = ', '.join(f'{name} ({bits} bits)' for name, bits in bad)
        warnings.warn(f'float32 Keras inference may differ from the exact fixed-point result at: {listing}. Sums '
                      f'wider than {FLOAT32_SIGNIFICAND_BITS} bits round in float32; the exported hardware and '
                      'the emulator stay exact. Narrow these layers\' inputs or weights to make Keras exact too.',
                      stacklevel=2)
    return bad
