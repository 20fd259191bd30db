"""The one input-port policy (hgq.ir.ports): its formats, and both backends reading the same port."""

from __future__ import annotations

import numpy as np
import pytest

from hgq.ir.graph import Format, Graph, Node
from hgq.ir.ports import MIXED_HEADROOM_BITS, SAT_HEADROOM_BITS, STICKY_FRACTION_BITS, input_port, to_port


def _graph(*consumers: tuple[Format, str, str]) -> Graph:
    nodes = [Node('x', 'input', [], (4,))]
    for n, (fmt, rnd, ovf) in enumerate(consumers):
        nodes.append(Node(f'q{n}', 'quantize', ['x'], (4,), {'fmt': fmt, 'round_mode': rnd, 'overflow_mode': ovf}))
    return Graph(nodes, ['x'], [n.name for n in nodes[1:]])


@pytest.mark.parametrize(('consumers', 'want'), [
    ([(Format.of(1, 2, 3, (4,)), 'RND', 'SAT')], (2 + SAT_HEADROOM_BITS, 4, 'SAT')),
    ([(Format.of(1, 2, 3, (4,)), 'TRN', 'WRAP')], (2, 3, 'WRAP')),
    ([(Format.of(0, 3, 2, (4,)), 'RND', 'WRAP')], (2, 3, 'WRAP')),  # unsigned [0, 8): a signed port of 2^3 wraps alike
    ([(Format.of(1, 2, 3, (4,)), 'RND_CONV', 'SAT')], (2 + SAT_HEADROOM_BITS, 3 + STICKY_FRACTION_BITS, 'SAT')),
    ([(Format.of(1, 2, 3, (4,)), 'RND', 'WRAP'), (Format.of(1, 4, 1, (4,)), 'TRN', 'SAT')],
     (4 + MIXED_HEADROOM_BITS, 4, 'SAT')),
])
def test_port_format_follows_the_policy(consumers: list, want: tuple[int, int, str]) -> None:
    port = input_port(_graph(*consumers), 'x')
    assert (port.i, port.f, port.overflow) == want


def test_fully_pruned_input_gets_a_one_bit_port() -> None:
    fmt = Format.of(1, -4, 2, (4,))  # width -1: pruned
    port = input_port(_graph((fmt, 'RND', 'SAT')), 'x')
    assert (port.width, port.overflow) == (1, 'WRAP')


def test_to_port_truncates_then_saturates_or_wraps() -> None:
    port = input_port(_graph((Format.of(1, 0, 1, (4,)), 'TRN', 'SAT')), 'x')  # i = 3, f = 1
    x = np.array([0.74, -0.26, 100.0, -100.0])
    assert to_port(x, port).tolist() == [0.5, -0.5, 7.5, -8.0]
    wrap = input_port(_graph((Format.of(1, 0, 1, (4,)), 'TRN', 'WRAP')), 'x')  # i = 0, f = 1
    assert to_port(np.array([1.0, -1.5]), wrap).tolist() == [-1.0, 0.5]


def test_hls4ml_and_rtl_read_the_same_port() -> None:
    from hgq.export.hls4ml_layers import Converter
    from hgq.export.rtl_trace import port_formats

    g = _graph((Format.of(1, 2, 3, (4,)), 'RND', 'SAT'), (Format.of(1, 1, 5, (4,)), 'TRN', 'SAT'))
    hls_type = Converter(g, 'io_parallel').input_type(g.node('x'))
    rtl_port = port_formats(g)[0]
    assert (hls_type.k, hls_type.i, hls_type.f, hls_type.overflow_mode) == (
        int(rtl_port.fmt.k.max()), int(rtl_port.fmt.i.max()), int(rtl_port.fmt.f.max()), rtl_port.overflow)
    assert (hls_type.i, hls_type.f) == (2 + SAT_HEADROOM_BITS, 5)
