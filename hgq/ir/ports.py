"""The input-port policy: which fixed-point word carries each graph input, for every backend.

The IR's inputs are real numbers; hardware takes fixed-point words. Both backends (the hls4ml
project's top-level argument and the RTL top's input port) use the one format chosen here, so a
word fed to either design gives the same output, and the conversion of a float to that word is
stated once:

- **signed**, one format for the whole tensor;
- **fraction bits** f = the finest live consumer's f, plus 1 for RND (its rounding sees the
  half-step bit), plus STICKY_FRACTION_BITS for the other rounding modes (RND_CONV, RND_ZERO,
  TRN_ZERO, ...: they depend on every dropped bit, so the port keeps that many more);
- **integer bits** i (without the sign) = the widest live consumer's k + i − 1, plus headroom:
  0 when every consumer wraps (wrapping modulo the port's range first changes nothing), and
  SAT_HEADROOM_BITS when every consumer saturates (inputs up to 2^3 = 8× beyond the consumer's
  range still reach it and saturate there; beyond, the float-to-word conversion saturates, which
  gives the same result). Consumers that mix WRAP and SAT get MIXED_HEADROOM_BITS: the port must
  either wrap or saturate, which is exact for either kind only below 2^(i_port);
- **overflow** of the float-to-word conversion: WRAP when every consumer wraps, else SAT.
  Rounding is always TRN (the fraction bits above make it exact).

A design is exact for every input the port carries (TRN/RND consumers: every float64 input;
other rounding modes: inputs with at most f + 24 fraction bits; mixed consumers: below 2^(i_port)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quantizers.fixed_point import quantize_np
from .graph import Graph

SAT_HEADROOM_BITS = 3
MIXED_HEADROOM_BITS = 16
STICKY_FRACTION_BITS = 24
_EXTRA_FRACTION_BITS = {'TRN': 0, 'RND': 1}


@dataclass(frozen=True)
class InputPort:
    """One graph input's port: a signed word of 1 + i + f bits; floats enter by TRN and `overflow`."""

    name: str
    i: int
    f: int
    overflow: str  # 'WRAP' or 'SAT'

    @property
    def width(self) -> int:
        return 1 + self.i + self.f


def input_port(graph: Graph, name: str) -> InputPort:
    """The port of graph input `name` under the policy of this module.

    Raises:
        ValueError: the input feeds something other than a quantizer (its floats have no format).
    """
    consumers = [n for n in graph.nodes if name in n.inputs]
    bad = [c for c in consumers if c.op != 'quantize']
    if bad:
        raise ValueError(f'{bad[0].source or bad[0].name}: the model input {name!r} feeds a {bad[0].op!r} '
                         'directly; its float values have no fixed-point format. Quantize the input first '
                         '(hgq.layers.QQuantize, or a layer with an input quantizer)')
    shape = graph.node(name).shape
    top_i, top_f, modes = None, None, set()
    for c in consumers:
        fmt = c.attrs['fmt'].broadcast(shape)
        live = fmt.width > 0
        if not live.any():
            continue
        extra = _EXTRA_FRACTION_BITS.get(c.attrs['round_mode'], STICKY_FRACTION_BITS)
        i = int((fmt.k + fmt.i)[live].max()) - 1
        f = int(fmt.f[live].max()) + extra
        top_i = i if top_i is None else max(top_i, i)
        top_f = f if top_f is None else max(top_f, f)
        modes.add('WRAP' if c.attrs['overflow_mode'] == 'WRAP' else 'SAT')
    if top_i is None or top_f is None:  # every element pruned: a 1-bit port that nothing reads
        return InputPort(name, 0, 0, 'WRAP')
    headroom = {frozenset({'WRAP'}): 0, frozenset({'SAT'}): SAT_HEADROOM_BITS}.get(frozenset(modes),
                                                                                   MIXED_HEADROOM_BITS)
    i_port = max(top_i + headroom, -top_f)  # at least the sign bit
    return InputPort(name, i_port, top_f, 'WRAP' if modes == {'WRAP'} else 'SAT')


def to_port(x: np.ndarray, port: InputPort) -> np.ndarray:
    """Floats as the port's words carry them (TRN, then the port's overflow): what a backend computes on."""
    return quantize_np(np.asarray(x, dtype=np.float64), 1, port.i, port.f, 'TRN', port.overflow)
