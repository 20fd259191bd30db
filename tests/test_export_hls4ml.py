"""hls4ml export: the C-simulated project must equal the IR emulator bit for bit (`==`, 0 mismatches).

Each model is built from hgq.layers, trained for one epoch on random data, given random per-element
fractional bits (so that formats are heterogeneous and some weights and activations are pruned),
calibrated, traced (`hgq.ir.from_model`), exported and compiled with g++, then compared with
`hgq.ir.predict` on 20,000 samples (>= 100,000 outputs), in range and scaled by 4 so that the
quantizers saturate and wrap (checked: the test counts the overflowing elements).

Needs hls4ml (hgq[export]) and g++; without them the tests skip, except with CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from models import random_data, randomize_formats, sequence_model

import hgq.ir as ir
from hgq import layers as L
from hgq.export import export_hls4ml as _export_hls4ml
from hgq.ir.emulator import FixedTensor
from hgq.ir.graph import Format, Graph, Node
from hgq.ir.intmath import requantize
from hgq.quantizers.fixed_point import quantize_np
from hgq.quantizers.hgq_quantizer import FixedQuantizer

N_SAMPLES = 20_000


def _unavailable(reason: str, fix: str) -> None:
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(f'{reason}; the hls4ml export tests must run on CI. Install it: {fix}', pytrace=False)
    pytest.skip(f'{reason} ({fix})')


@pytest.fixture(scope='module')
def export_hls4ml() -> Any:
    """The exporter, where hls4ml and g++ are there to build and run what it writes."""
    try:
        import hls4ml  # noqa: F401
    except ImportError:
        _unavailable('hls4ml is not installed', 'pip install -e .[export]')
    if shutil.which('g++') is None:
        _unavailable('g++ is not on PATH', 'apt-get install g++')
    return _export_hls4ml


# ---------------------------------------------------------------------------------------------- models
def _train(model: keras.Model, x: np.ndarray, seed: int, **randomize: Any) -> keras.Model:
    from hgq.training import calibrate

    y = np.random.default_rng(seed).normal(size=(len(x), *model.output_shape[1:])).astype('float32')
    model.compile(keras.optimizers.Adam(3e-3), 'mse', run_eagerly=True)  # 4 steps: eager beats tracing
    model.fit(x[:1024], y[:1024], epochs=1, batch_size=256, verbose=0)
    randomize_formats(model, seed, **randomize)
    calibrate(model, x)
    return model



def mlp() -> tuple[keras.Model, np.ndarray]:
    """16-64-32-5 with relu; a batch-norm-folded dense; SAT, WRAP and SAT_SYM input quantizers."""
    x = keras.Input((16,))
    y = L.QDense(64, activation='relu')(x)
    y = L.QDenseBatchNorm(32, activation='relu', input_quantizer={'overflow_mode': 'WRAP'})(y)
    y = L.QDense(5, input_quantizer={'overflow_mode': 'SAT_SYM'})(y)
    data = random_data((16,), 4000, 1)
    return _train(keras.Model(x, y), data, 2), data


def cnn(granularity: str = 'element', extras: bool = False) -> tuple[keras.Model, np.ndarray]:
    """10x10x2: QConv2D 3x3 → QMaxPooling2D → QConv2D ('same', batch norm folded, WRAP input) → QFlatten → QDense;
    `extras` puts a tanh table and a 2x2 average pooling before the flatten."""
    q = {'granularity': granularity}
    x = keras.Input((10, 10, 2))
    y = L.QConv2D(4, 3, activation='relu', input_quantizer=dict(q))(x)
    y = L.QMaxPooling2D(2)(y)
    y = L.QConv2DBatchNorm(4, 3, activation='relu', padding='same', input_quantizer={**q, 'overflow_mode': 'WRAP'})(y)
    if extras:
        y = L.QActivation('tanh', input_quantizer=dict(q), output_quantizer=dict(q))(y)
        y = L.QAveragePooling2D(2, output_quantizer=dict(q))(y)
    y = L.QFlatten()(y)
    y = L.QDense(5, input_quantizer=dict(q))(y)
    data = random_data((10, 10, 2), 2000, 3)
    return _train(keras.Model(x, y), data, 4), data


def tables_pooling_merges() -> tuple[keras.Model, np.ndarray]:
    """Lookup tables (per-element and one-format outputs), average pooling over 4 and 9 elements, batch norm,
    add, concatenation (3-D and 1-D)."""
    x = keras.Input((8, 8, 1))
    y = L.QConv2D(2, 3, padding='same')(x)
    t = L.QActivation('tanh')(y)  # per-element table output (RND)
    p = L.QAveragePooling2D(2)(t)
    b = L.QBatchNormalization()(p)
    z = L.QMaxPooling2D(2)(y)
    s = L.QAdd()([b, z])
    c = L.QConcatenate()([s, z])
    r = L.QActivation('relu')(y)
    a9 = L.QAveragePooling2D(3, strides=2)(r)  # 9 elements, non-negative input: truncation then RND
    s9 = L.QAveragePooling2D(3, strides=2, output_quantizer={'round_mode': 'TRN_ZERO'})(y)  # 9, signed
    f = L.QConcatenate()([L.QFlatten()(c), L.QFlatten()(a9), L.QFlatten()(s9)])
    d = L.QDense(8)(f)
    g = L.QActivation('sigmoid', input_quantizer={'granularity': 'tensor', 'round_mode': 'TRN'},
                      output_quantizer={'granularity': 'tensor'})(d)  # one output format: the table is quantized
    o = L.QDense(5)(g)
    data = random_data((8, 8, 1), 2000, 5)
    return _train(keras.Model(x, o), data, 6, act_f=(1, 6)), data


def sequence() -> tuple[keras.Model, np.ndarray]:
    """tests/models.py's sequence model, trained with random formats, and its data."""
    data = random_data((12, 3), 2000, 7)
    return _train(sequence_model(), data, 8, act_f=(1, 6)), data


def consecutive() -> tuple[keras.Model, np.ndarray]:
    """Two one-format quantizers in a row across a flatten (a fixed WRAP input format, then the dense layer's
    own input quantizer): hls4ml's BitExact flow folds both into one type and loses the first."""
    x = keras.Input((12, 3))
    y = L.QQuantize(FixedQuantizer(k=1, i=2, f=6, round_mode='RND', overflow_mode='WRAP'))(x)
    y = L.QFlatten()(y)
    y = L.QDense(3, input_quantizer={'granularity': 'tensor'})(y)
    data = random_data((12, 3), 1024, 9)
    return _train(keras.Model(x, y), data, 10, act_f=(1, 4)), data


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
        wide_i = fmt.i + 40
        src = env[node.inputs[0]]
        if isinstance(src, FixedTensor):
            rounded = requantize(src.codes, src.f, np.ones_like(fmt.k), wide_i, fmt.f, a['round_mode'], 'SAT')
            rounded = np.ldexp(rounded.astype(np.float64), -fmt.f)
        else:
            rounded = quantize_np(src, 1, wide_i, fmt.f, a['round_mode'], 'SAT')
        live = (fmt.k + fmt.i + fmt.f) > 0
        out = env[node.name].values()
        counts[a['overflow_mode']] += int(((rounded != out) & live).sum())
    return counts


def _describe(graph: Graph) -> dict[str, int]:
    """How heterogeneous the formats are: distinct (k, i, f) per tensor, pruned elements and weights."""
    distinct, pruned, zero_weights = 0, 0, 0
    for node in graph.nodes:
        if node.op == 'quantize':
            fmt = node.attrs['fmt'].broadcast(node.shape)
            distinct = max(distinct, len({(int(k), int(i), int(f)) for k, i, f in zip(
                fmt.k.ravel(), fmt.i.ravel(), fmt.f.ravel())}))
            pruned += int(((fmt.k + fmt.i + fmt.f) <= 0).sum())
        if node.op in ('dense', 'conv'):
            zero_weights += int((node.attrs['weight'] == 0).sum())
    return {'max_distinct_formats': distinct, 'pruned_activations': pruned, 'zero_weights': zero_weights}


def _compare(hls_model: Any, graph: Graph, sample_shape: tuple[int, ...], seed: int, label: str,
             min_outputs: int = 100_000) -> None:
    x = np.random.default_rng(seed).normal(size=(N_SAMPLES, *sample_shape))  # float64: the double bridge
    for scale in (1.0, 4.0):
        xs = x * scale
        got = np.asarray(hls_model.predict(xs)).reshape(N_SAMPLES, -1)
        want = np.asarray(ir.predict(graph, xs)).reshape(N_SAMPLES, -1)
        mismatches = int((got != want).sum())
        print(f'{label} x{scale:g}: {mismatches} mismatches of {want.size} outputs; '
              f'overflows {_overflows(graph, xs[:1000])}')
        assert want.size >= min_outputs
        assert mismatches == 0, f'{label} x{scale:g}: {mismatches} of {want.size} outputs differ'


def _timed_compile(hls_model: Any) -> float:
    """g++ build of an already written project (what ModelGraph.compile does after writing it)."""
    start = time.perf_counter()
    hls_model._compile()  # hls4ml 1.3: build_lib.sh in the project directory (cwd-safe), then load the library
    return time.perf_counter() - start


# name: (model factory, export arguments, sample shape)
MODELS: dict[str, tuple[Callable[[], tuple[keras.Model, np.ndarray]], dict[str, Any], tuple[int, ...]]] = {
    'mlp': (mlp, {}, (16,)),
    'cnn': (cnn, {}, (10, 10, 2)),
    'cnn_stream': (lambda: cnn('tensor', extras=True), {'io_type': 'io_stream'}, (10, 10, 2)),
    'misc': (tables_pooling_merges, {}, (8, 8, 1)),
    'consecutive_stream': (consecutive, {'io_type': 'io_stream'}, (12, 3)),
}


@pytest.fixture(scope='module')
def exported(export_hls4ml: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every model trained, traced and written; the g++ builds run in background threads (the slow part)
    while the next model trains. Each entry: (graph, hls model, future of the build time in s)."""
    root = tmp_path_factory.mktemp('hls4ml')
    out: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(MODELS), os.cpu_count() or 1))) as pool:
        for name, (make, kwargs, _) in MODELS.items():
            keras.utils.set_random_seed(1234)
            model, _ = make()
            graph = ir.from_model(model)
            start = time.perf_counter()
            hls_model = export_hls4ml(graph, root / name, compile=False, **kwargs)
            print(f'{name}: export (write) {time.perf_counter() - start:.1f} s')
            out[name] = (graph, hls_model, pool.submit(_timed_compile, hls_model), root / name)
        yield out


def _built(exported: dict[str, Any], name: str) -> tuple[Graph, Any]:
    graph, hls_model, build, _ = exported[name]
    print(f'{name}: g++ build {build.result():.1f} s (in parallel with other work)')
    return graph, hls_model


# ---------------------------------------------------------------------------------------------- tests
def test_mlp_per_element_formats_exact(exported: dict[str, Any]) -> None:
    graph, hls_model = _built(exported, 'mlp')
    stats = _describe(graph)
    print('mlp', stats)
    assert stats['max_distinct_formats'] > 4 and stats['pruned_activations'] > 0 and stats['zero_weights'] > 0
    _compare(hls_model, graph, (16,), 11, 'mlp')
    overflows = _overflows(graph, np.random.default_rng(11).normal(size=(1000, 16)) * 4)
    assert overflows['SAT'] > 0 and overflows['WRAP'] > 0 and overflows['SAT_SYM'] > 0
    for script in ('build_prj.tcl', 'build_lib.sh', 'hgq_prj_bridge.cpp'):
        assert (exported['mlp'][3] / script).exists()


def test_cnn_per_element_formats_exact(exported: dict[str, Any]) -> None:
    graph, hls_model = _built(exported, 'cnn')
    print('cnn', _describe(graph))
    _compare(hls_model, graph, (10, 10, 2), 12, 'cnn')
    overflows = _overflows(graph, np.random.default_rng(12).normal(size=(1000, 10, 10, 2)) * 4)
    assert overflows['SAT'] > 0 and overflows['WRAP'] > 0


def test_cnn_one_format_per_tensor_io_stream_exact(exported: dict[str, Any]) -> None:
    graph, hls_model = _built(exported, 'cnn_stream')
    assert {'table', 'avg_pool'} <= {n.op for n in graph.nodes}
    assert hls_model.config.get_config_value('IOType') == 'io_stream'
    _compare(hls_model, graph, (10, 10, 2), 13, 'cnn io_stream')


def test_tables_pooling_batchnorm_merges_exact(exported: dict[str, Any]) -> None:
    graph, hls_model = _built(exported, 'misc')
    assert {'table', 'avg_pool', 'affine', 'add', 'concat', 'max_pool'} <= {n.op for n in graph.nodes}
    _compare(hls_model, graph, (8, 8, 1), 14, 'tables/pooling/merges')


def test_consecutive_one_format_quantizers_io_stream_exact(exported: dict[str, Any]) -> None:
    graph, hls_model = _built(exported, 'consecutive_stream')
    quantizers = [n for n in graph.nodes if n.op == 'quantize']
    assert len(quantizers) == 2 and quantizers[0].attrs['overflow_mode'] == 'WRAP'
    _compare(hls_model, graph, (12, 3), 16, 'consecutive io_stream', min_outputs=60_000)


def test_vivado_backend_sequence_model_exact(export_hls4ml: Any, tmp_path: Path) -> None:
    """Also the default path: export_hls4ml(..., compile=True)."""
    model, _ = sequence()
    graph = ir.from_model(model)
    start = time.perf_counter()
    hls_model = export_hls4ml(graph, tmp_path / 'vivado', backend='Vivado', project_name='seq',
                              part='xc7z020clg400-1', clock_period=10)
    print(f'sequence vivado: export + g++ build {time.perf_counter() - start:.1f} s')
    assert hls_model.config.get_config_value('Backend') == 'Vivado'
    assert (tmp_path / 'vivado' / 'build_prj.tcl').exists()
    _compare(hls_model, graph, (12, 3), 15, 'sequence vivado', min_outputs=60_000)


# ---------------------------------------------------------------------------------------------- errors
# Refusals happen while converting, before hls4ml is imported: these run without hls4ml or g++.

def _q(name: str, src: str, shape: tuple[int, ...], f: Any = 4, overflow: str = 'SAT') -> Node:
    return Node(name, 'quantize', [src], shape, {'fmt': Format.of(1, 3, f, shape), 'round_mode': 'RND',
                                                 'overflow_mode': overflow}, source=f'layer_{name}')


def _graph(*nodes: Node) -> Graph:
    return Graph(list(nodes), [nodes[0].name], [nodes[-1].name])


def test_per_element_quantizer_with_io_stream_names_layer_and_remedies(tmp_path: Path) -> None:
    f = np.arange(8).reshape(8) % 3 + 2
    g = _graph(Node('x', 'input', [], (8,)), _q('q', 'x', (8,), f))
    with pytest.raises(ValueError, match=r"layer_q.*io_parallel.*granularity='tensor'"):
        _export_hls4ml(g, tmp_path / 'p', io_type='io_stream', compile=False)


def test_unsupported_operation_names_its_source_layer(tmp_path: Path) -> None:
    g = _graph(Node('x', 'input', [], (8,)), _q('q', 'x', (8,)),
               Node('s', 'softmax', ['q'], (8,), source='my_softmax'))
    with pytest.raises(ValueError, match=r"my_softmax.*'softmax'.*supported operations: input, quantize"):
        _export_hls4ml(g, tmp_path / 'p', compile=False)


def test_average_pooling_over_non_power_of_two_window_is_refused(tmp_path: Path) -> None:
    shape = (6, 6, 1)
    pool = Node('p', 'avg_pool', ['q'], (2, 2, 1), {'pool_size': (3, 3), 'strides': (3, 3), 'padding': 'valid',
                                                   'fmt': Format.of(1, 3, 4, (2, 2, 1)), 'round_mode': 'RND',
                                                   'overflow_mode': 'SAT'}, source='my_pool')
    g = _graph(Node('x', 'input', [], shape), _q('q', 'x', shape), pool)
    with pytest.raises(NotImplementedError, match=r"my_pool.*9 elements.*signed input.*power-of-two.*TRN_ZERO"):
        _export_hls4ml(g, tmp_path / 'p', compile=False)


def test_unquantized_input_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    g = _graph(Node('x', 'input', [], (8,)), Node('r', 'relu', ['x'], (8,), source='my_relu'))
    with pytest.raises(ValueError, match=r'my_relu.*Quantize the input first'):
        _export_hls4ml(g, tmp_path / 'p', compile=False)
    ok = _graph(Node('x', 'input', [], (8,)), _q('q', 'x', (8,)))
    with pytest.raises(ValueError, match=r"backend='Quartus' is not supported; use one of \['Vitis', 'Vivado'\]"):
        _export_hls4ml(ok, tmp_path / 'p', backend='Quartus', compile=False)
    with pytest.raises(ValueError, match='io_type'):
        _export_hls4ml(ok, tmp_path / 'p', io_type='io_serial', compile=False)
    with pytest.raises(ValueError, match='not an ap_fixed'):
        _export_hls4ml(ok, tmp_path / 'p', input_precision='float', compile=False)
