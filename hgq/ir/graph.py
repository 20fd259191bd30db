"""The fixed-point graph: what a calibrated model computes, in exact formats, with no Keras inside.

Every tensor has a per-element format (k, i, f) (an index from `encode` is the unsigned integer
format (0, b, 0)) (shape = tensor shape without the batch axis,
or broadcastable to it). Constants (weights, biases, tables) are float64 arrays whose values are
exactly representable in their formats (they are k+i+f <= 53-bit numbers). Backends read only
these objects.

Nodes, in topological order, each producing one named tensor:

| op | attributes | semantics |
|---|---|---|
| input | shape | the model input (float values, quantized by a following `quantize`) |
| quantize | fmt: Format, round_mode, overflow_mode | ap_fixed cast per element |
| dense | weight (n_in, n_out), bias (n_out,) or None | y = x @ W + b, exact (no rounding) |
| conv | weight (*kernel, c_in, c_out), bias, strides, padding | exact N-D convolution, channels last |
| affine | scale (c,), offset (c,) | y = x·scale + offset per channel (last axis), exact |
| relu | | max(x, 0), exact |
| encode | thresholds (*shape, n-1) ascending on the input grid; index_bits b | index = #{j: x >= t_j} |
| decode | levels (*shape, n) exact; fmt: Format of the levels | y = levels[index] per element |
| table | table (fn at every input code), domain_f, domain_min_code, out_fmt, round/overflow_mode | lookup, quantize |
| max_pool | pool_size, strides, padding | exact |
| avg_pool | pool_size, strides, padding, fmt, round_mode, overflow_mode | sum / count, then quantize |
| add | | exact sum of the inputs |
| concat | axis (without batch) | exact |
| reshape | shape (without batch) | relabelling (flatten is a reshape) |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def same_padding(spatial: tuple[int, ...], kernel: tuple[int, ...],
                 strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """(before, after) zero padding per spatial axis for Keras/TensorFlow 'same' convolutions.

    The output has ceil(size / stride) positions; the odd padding element goes after (right/bottom).
    Every backend pads this way, so it lives here once.
    """
    pads = []
    for size, k, s in zip(spatial, kernel, strides):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return pads


@dataclass(frozen=True)
class Format:
    """Per-element fixed-point format; arrays broadcast to the tensor shape (no batch axis)."""

    k: np.ndarray
    i: np.ndarray
    f: np.ndarray

    @staticmethod
    def of(k: Any, i: Any, f: Any, shape: tuple[int, ...] | None = None) -> Format:
        arrays = [np.asarray(v, dtype=np.int64) for v in (k, i, f)]
        if shape is not None:
            arrays = [np.broadcast_to(a, shape).copy() for a in arrays]
        return Format(*arrays)

    @property
    def width(self) -> np.ndarray:
        """Bits per element, 0 where the element is pruned."""
        return np.maximum(self.k + self.i + self.f, 0)

    def broadcast(self, shape: tuple[int, ...]) -> Format:
        return Format(*(np.broadcast_to(a, shape).copy() for a in (self.k, self.i, self.f)))


@dataclass
class Node:
    """One operation; `inputs` name earlier nodes' outputs; `name` names this node's output."""

    name: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]  # output shape without the batch axis
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ''  # the Keras layer it came from, for error messages and reports


@dataclass
class Graph:
    """A model as fixed-point operations in topological order."""

    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f'no node named {name!r}; nodes: {[n.name for n in self.nodes]}')

    def summary(self) -> str:
        lines = []
        for n in self.nodes:
            lines.append(f'{n.name:<28} {n.op:<10} {str(n.shape):<16} <- {", ".join(n.inputs)}')
        return '\n'.join(lines)
