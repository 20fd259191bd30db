"""The range analysis and the shared windows, pinned on tiny graphs by brute force over every input."""

from itertools import product

import numpy as np
import pytest

from hgq.ir import analysis, emulator
from hgq.ir.graph import Format, Graph, Node, same_padding
from hgq.ir.windows import conv_windows, pool_windows


def _every_input(shape, fmt):
    """All inputs on the grid of fmt (k=1, i, f uniform), as a batch."""
    k, i, f = fmt
    step = 2.0 ** -f
    grid = np.arange(-k * 2.0**i, 2.0**i, step)
    n = int(np.prod(shape))
    return np.array(list(product(grid, repeat=n))).reshape(-1, *shape)


def _quantize(shape, fmt):
    return [Node('x', 'input', [], shape),
            Node('q', 'quantize', ['x'], shape, {'fmt': Format.of(*fmt, shape=shape), 'round_mode': 'TRN',
                                                'overflow_mode': 'WRAP'})]


def _assert_tight(graph, x, loose=()):
    """Bounds equal the brute-force min/max; nodes in `loose` (correlated inputs) are only contained."""
    env = emulator.run(graph, x, return_all=True)
    infos = analysis.analyze(graph)
    for node in graph.nodes[2:]:
        got = env[node.name].values()
        info = infos[node.name]
        if node.name in loose:
            assert np.all(info.lo <= got.min(axis=0)) and np.all(info.hi >= got.max(axis=0)), node.name
            continue
        np.testing.assert_array_equal(info.lo, got.min(axis=0), err_msg=node.name)
        np.testing.assert_array_equal(info.hi, got.max(axis=0), err_msg=node.name)


def test_dense_relu_bounds_equal_brute_force():
    fmt = (1, 1, 1)
    w = np.array([[0.5, -1.25, 0.0], [-0.75, 0.25, 2.0]])
    nodes = _quantize((2,), fmt) + [
        Node('d', 'dense', ['q'], (3,), {'weight': w, 'weight_fmt': Format.of(1, 2, 2, shape=w.shape),
                                         'bias': np.array([0.5, 0.0, -0.25]), 'bias_fmt': Format.of(1, 1, 2, (3,))}),
        Node('r', 'relu', ['d'], (3,)),
    ]
    _assert_tight(Graph(nodes, ['x'], ['r']), _every_input((2,), fmt))


@pytest.mark.parametrize('padding', ['valid', 'same'])
def test_conv_and_max_pool_bounds_equal_brute_force(padding):
    fmt = (1, 0, 1)  # codes -2..1: 4^4 = 256 inputs
    w = np.array([[[1.0]], [[-0.5]], [[0.25]]])  # kernel 3, 1 -> 1 channel
    out = 4 if padding == 'same' else 2
    nodes = _quantize((4, 1), fmt) + [
        Node('c', 'conv', ['q'], (out, 1), {'weight': w, 'weight_fmt': Format.of(1, 1, 2, shape=w.shape),
                                            'bias': None, 'strides': (1,), 'padding': padding}),
        Node('m', 'max_pool', ['c'], (out // 2, 1), {'pool_size': (2,), 'strides': (2,), 'padding': 'valid'}),
    ]
    # the pooled conv outputs share inputs, so the max's interval is sound but not tight
    _assert_tight(Graph(nodes, ['x'], ['m']), _every_input((4, 1), fmt), loose=('m',))


def test_windows_match_a_direct_loop():
    rng = np.random.default_rng(0)
    a = rng.integers(-9, 9, size=(5, 4, 2))
    kernel, strides = (3, 2), (2, 1)
    got = conv_windows(a, kernel, strides, 'same', fill=0)
    pads = same_padding(a.shape[:2], kernel, strides)
    padded = np.pad(a, [*pads, (0, 0)])
    for oy, ox in product(range(got.shape[0]), range(got.shape[1])):
        y, x = oy * strides[0], ox * strides[1]
        np.testing.assert_array_equal(got[oy, ox], padded[y:y + 3, x:x + 2])
    batch = conv_windows(a[None], kernel, strides, 'same', fill=0, lead=1)
    np.testing.assert_array_equal(batch[0], got)
    pooled = pool_windows(a, (2, 2), (2, 2))
    assert pooled.shape == (2, 2, 2, 4)
    np.testing.assert_array_equal(pooled[1, 0, 1], a[2:4, 0:2, 1].ravel())
    with pytest.raises(ValueError, match='padding'):
        conv_windows(a, kernel, strides, 'causal')


def test_encode_decode_bounds_equal_brute_force():
    fmt = (1, 1, 1)  # inputs -2 .. 1.5
    thresholds = np.array([[-1.0, 0.5, 1.0], [1.5, 1.5, 1.5]])  # element 1 reaches indices 0 and 3 only
    levels = np.array([[-0.75, 0.0, 0.25, 2.5], [-0.5, 9.0, 9.0, 1.25]])
    nodes = _quantize((2,), fmt) + [
        Node('e', 'encode', ['q'], (2,), {'thresholds': thresholds, 'index_bits': 2}),
        Node('d', 'decode', ['e'], (2,), {'levels': levels, 'fmt': Format.of(1, 4, 2, (2,))}),
    ]
    # decode bounds come from the reachable index *interval*; element 1's gap (indices 1, 2) is not excluded
    graph = Graph(nodes, ['x'], ['d'])
    _assert_tight(graph, _every_input((2,), fmt), loose=('d',))
    info = analysis.analyze(graph)['d']
    np.testing.assert_array_equal(info.lo, [-0.75, -0.5])
    np.testing.assert_array_equal(info.hi[0], 2.5)


def test_avg_pool_table_and_add_bounds_contain_brute_force():
    """The handlers this analysis gained when it became the one range analysis of every backend."""
    fmt = (1, 1, 1)  # codes -4..3: 8^3 inputs
    table = np.tanh(np.arange(-4, 4) / 2.0)  # tanh at every input code of the (k=1, i=1, f=1) domain
    nodes = _quantize((3, 1), fmt) + [
        Node('a', 'avg_pool', ['q'], (1, 1), {'pool_size': (3,), 'strides': (3,), 'padding': 'valid',
                                             'fmt': Format.of(1, 1, 3, (1, 1)), 'round_mode': 'RND',
                                             'overflow_mode': 'SAT'}),
        Node('t', 'table', ['q'], (3, 1), {'table': table, 'domain_f': 1, 'domain_min_code': -4,
                                           'out_fmt': Format.of(1, 0, 4, (3, 1)), 'round_mode': 'RND',
                                           'overflow_mode': 'SAT'}),
        Node('s', 'add', ['q', 't'], (3, 1)),
    ]
    graph = Graph(nodes, ['x'], ['a', 's'])
    _assert_tight(graph, _every_input((3, 1), fmt), loose=('a', 's'))
    infos = analysis.analyze(graph)
    # the tanh table is monotone: its bounds are the quantized ends of the table, exactly
    np.testing.assert_array_equal(infos['t'].lo, np.full((3, 1), -0.9375))
    np.testing.assert_array_equal(infos['t'].hi, np.full((3, 1), 0.875))  # round(16·tanh(1.5)) = 14
    # every element's own format holds its bounds
    for name in ('a', 't', 's'):
        info = infos[name]
        k, i, f = info.fmt.k, info.fmt.i, info.fmt.f
        assert np.all(info.hi <= 2.0**i - 2.0**-f) and np.all(info.lo >= -k * 2.0**i), name


def test_mul_bounds_equal_brute_force_with_broadcasting():
    """A variable × variable product (the op ASQ's per-sample step and softmax build on), incl. x·x."""
    fmt = (1, 1, 1)  # codes -4..3
    shape = (3,)
    nodes = _quantize(shape, fmt) + [
        Node('s', 'reshape', ['q'], (3, 1)),
        Node('m', 'mul', ['q', 'q'], shape),                    # x·x: correlated, only contained
        Node('b', 'mul', ['s', 'q'], (3, 3)),                   # (3,1)·(3,): an outer product (diagonal x·x)
    ]
    graph = Graph(nodes, ['x'], ['m', 'b'])
    x = _every_input(shape, fmt)
    _assert_tight(graph, x, loose=('m', 'b'))
    got = emulator.run(graph, x, return_all=True)['b'].values()
    np.testing.assert_array_equal(got, x[:, :, None] * x[:, None, :])
    lo, hi = analysis.analyze(graph)['b'].lo, analysis.analyze(graph)['b'].hi
    off = ~np.eye(3, dtype=bool)  # independent pairs: the corner products are reached
    np.testing.assert_array_equal(lo[off], got.min(axis=0)[off])
    np.testing.assert_array_equal(hi[off], got.max(axis=0)[off])
