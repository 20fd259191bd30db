"""RND_CONV (round half to even, what QKeras computes) in the RTL backend, built from da4ml's TRN quantize.

(a) Exhaustive: every code of several small port formats through one quantize node per (k, i, f, overflow)
    target format, in da4ml's interpreter of the traced logic, == `quantize_np(..., 'RND_CONV')`.
(b) A small model whose every quantizer is a FixedQuantizer with RND_CONV (as `hgq import-qkeras` builds):
    Keras == emulator == hls4ml C-sim == Verilator (`check_backends`, x1 and x4 inputs), and the same graph
    with RND instead gives different outputs on those inputs, so ties are exercised.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest
from exactness import check_backends, require_tools

import hgq.ir as ir
from hgq import layers as L
from hgq.ir.graph import Format, Graph, Node
from hgq.quantizers.fixed_point import quantize_np
from hgq.quantizers.hgq_quantizer import FixedQuantizer

PORTS = [(1, 3, 4), (0, 3, 4), (1, 1, 5), (1, -1, 6), (1, 5, 0), (0, 2, 3)]
TARGETS = [(k, i, f, ovf) for k, i, f, ovf in itertools.product(
    (0, 1), (-2, 0, 1, 2, 3), (-2, -1, 0, 1, 2, 3, 5), ('WRAP', 'SAT', 'SAT_SYM')) if k + i + f > 0]


@pytest.fixture(scope='module')
def rtl() -> object:
    from hgq.export import tools

    try:
        tools.require_da4ml()
    except tools.ToolNotFoundError as e:
        require_tools()  # fails under CI=true, skips otherwise
        pytest.skip(str(e))
    from hgq.export import rtl as module

    return module


def _one_node_per_target() -> Graph:
    nodes = [Node('x', 'input', [], (1,))]
    for n, (k, i, f, ovf) in enumerate(TARGETS):
        nodes.append(Node(f'q{n}', 'quantize', ['x'], (1,), {'fmt': Format.of(k, i, f, (1,)), 'round_mode': 'RND_CONV',
                                                              'overflow_mode': ovf}, source=f'q{n}'))
    return Graph(nodes, ['x'], [n.name for n in nodes[1:]])


@pytest.mark.parametrize('port', PORTS, ids=[f'k{k}i{i}f{f}' for k, i, f in PORTS])
def test_every_code_rounds_half_to_even(rtl: object, tmp_path: Path, port: tuple[int, int, int]) -> None:
    pk, pi, pf = port
    n = 2 ** (pk + pi + pf)
    xs = (np.arange(n) - (n // 2 if pk else 0)) * 2.0**-pf  # every code of the port format
    prj = rtl.write_rtl(_one_node_per_target(), tmp_path, 'rc', input_format=port, write=False)
    got = prj.predict_comb(xs[:, None])
    mismatches, ties = 0, 0
    for (k, i, f, ovf), y in zip(TARGETS, got):
        want = quantize_np(xs, k, i, f, 'RND_CONV', ovf)
        mismatches += int((np.asarray(y).ravel() != want).sum())
        ties += int(np.sum(np.ldexp(xs, f) % 1 == 0.5))
    assert ties > 0
    assert mismatches == 0, f'{mismatches} of {n * len(TARGETS)} codes differ'


def _rnd_conv(k: int, i: int, f: int, ovf: str, role: str = 'activation') -> FixedQuantizer:
    return FixedQuantizer(k=k, i=i, f=f, round_mode='RND_CONV', overflow_mode=ovf, role=role)


def _model() -> keras.Model:
    """8 -> 6 relu -> (1,1,1) RND_CONV SAT_SYM -> 3; weights at 2^-2, activations at 2^-1 or 2^-2: many ties."""
    x = keras.Input((8,))
    d1 = L.QDense(6, input_quantizer=_rnd_conv(1, 2, 2, 'SAT'), kernel_quantizer=_rnd_conv(1, 1, 2, 'SAT', 'weight'),
                  bias_quantizer=_rnd_conv(1, 1, 2, 'SAT', 'weight'))
    y = d1(x)
    y = L.QActivation('relu', output_quantizer=_rnd_conv(0, 2, 1, 'WRAP'))(y)
    y = L.QActivation('linear', output_quantizer=_rnd_conv(1, 1, 1, 'SAT_SYM'))(y)
    d2 = L.QDense(3, input_quantizer=_rnd_conv(1, 1, 1, 'SAT_SYM'),
                  kernel_quantizer=_rnd_conv(1, 1, 2, 'SAT', 'weight'),
                  bias_quantizer=_rnd_conv(1, 1, 2, 'SAT', 'weight'))
    y = d2(y)
    y = L.QActivation('linear', output_quantizer=_rnd_conv(1, 2, 0, 'WRAP'))(y)
    model = keras.Model(x, y)
    rng = np.random.default_rng(3)
    for layer in (d1, d2):
        layer.kernel.assign(rng.integers(-6, 7, size=layer.kernel.shape) / 4.0)
        layer.bias.assign(rng.integers(-4, 5, size=layer.bias.shape) / 4.0)
    return model


def _with_rnd(graph: Graph) -> Graph:
    nodes = [Node(n.name, n.op, n.inputs, n.shape, {**n.attrs, 'round_mode': 'RND'}, source=n.source)
             if n.op == 'quantize' else n for n in graph.nodes]
    return Graph(nodes, graph.inputs, graph.outputs)


def test_rnd_conv_model_exact_on_every_backend(tmp_path: Path) -> None:
    require_tools()
    model = _model()
    x = np.random.default_rng(0).normal(0, 1.5, size=(20_000, 8))
    counts = check_backends(model, x, tmp_path, name='rnd_conv')
    print(counts)
    assert counts['outputs'] == 120_000
    assert all(v == 0 for k, v in counts.items() if k != 'outputs'), counts
    graph = ir.from_model(model)
    xs = np.floor(x * 8) / 8  # on the port grid (f = 2 + 1)
    differ = int((np.asarray(ir.predict(graph, xs)) != np.asarray(ir.predict(_with_rnd(graph), xs))).sum())
    assert differ > 1000, differ  # ties decide many outputs: RND would not pass
