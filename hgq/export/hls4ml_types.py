"""The fixed-point container types (ap_fixed) that hold the IR's exact ranges in the hls4ml backend.

Backends need, for every tensor, a type wide enough that no value the IR can produce is rounded
or overflows: accumulators of dense/conv layers, results of add/relu/affine, the index type of a
lookup table. The ranges themselves come from `hgq.ir.ranges` (the one exact range analysis);
this module only spells them as C++ types: `container(r)` is the narrowest single `(k, i, f)`
that holds every element of a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.graph import Format, Node
from ..ir.ranges import Range, container_kif


@dataclass
class FixedType:
    """One ap_fixed type: k sign bit, i integer bits (without sign), f fractional bits."""

    k: int
    i: int
    f: int
    round_mode: str = 'TRN'
    overflow_mode: str = 'WRAP'

    @property
    def width(self) -> int:
        return self.k + self.i + self.f

    def hls(self) -> str:
        """The C++ type, e.g. `ap_fixed<8,3,AP_RND,AP_SAT>`."""
        if self.width < 1:
            raise ValueError(f'internal: type of width {self.width} ({self})')
        modes = ''
        if (self.round_mode, self.overflow_mode) != ('TRN', 'WRAP'):
            modes = f',AP_{self.round_mode},AP_{self.overflow_mode}'
        if self.k:
            return f'ap_fixed<{self.width},{self.k + self.i}{modes}>'
        return f'ap_ufixed<{self.width},{self.i}{modes}>'


def container(r: Range) -> FixedType:
    """The narrowest ap_fixed type holding every element of the range (width >= 1)."""
    return FixedType(*container_kif(r))


def node_format_type(fmt: Format, shape: tuple[int, ...], round_mode: str, overflow_mode: str) -> FixedType | None:
    """The single ap_fixed type of a per-element format when all elements share it (and none is pruned)."""
    fmt = fmt.broadcast(shape)
    ks, is_, fs = (np.unique(a) for a in (fmt.k, fmt.i, fmt.f))
    if len(ks) == len(is_) == len(fs) == 1 and int(ks[0] + is_[0] + fs[0]) > 0:
        return FixedType(int(ks[0]), int(is_[0]), int(fs[0]), round_mode, overflow_mode)
    return None


def node_source(node: Node) -> str:
    return node.source or node.name
