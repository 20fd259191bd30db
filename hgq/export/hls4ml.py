"""Export a fixed-point graph (`hgq.ir.Graph`) to an hls4ml project, bit-exactly.

Route: hand-made layer dictionaries (`hls4ml_layers`) → `hls4ml.model.ModelGraph.from_layer_list`,
with hls4ml's BitExact pass off and every type set from exact ranges of the IR (`hls4ml_types`).
The project is a normal hls4ml project (Vivado or Vitis build scripts, C-simulation with g++).

What is exact, and why (held by tests/test_export_hls4ml.py against `hgq.ir.predict` with `==`):

- accumulators (dense, conv, add, affine, pooling sums) are wide enough for every reachable value;
- `quantize` nodes are ap_fixed casts, one type per tensor (a cast layer) or one per element
  (`FixedPointQuantizer`, io_parallel only);
- the input port: see `export_hls4ml`'s `input_precision`;
- lookup tables (`table`): hls4ml's `UnaryLUT`, holding the IR's own table values laid out by the
  input type's raw bits, then the output quantizer;
- average pooling: hls4ml's truncating ap_fixed division, exact for power-of-two windows, for
  non-negative inputs with TRN/RND output rounding, and for TRN_ZERO (else NotImplementedError);
- one-format quantizers fold into the result type of the layer before them (as hls4ml's own HGQ
  flow does), hoisted above reshapes; that is what makes io_stream work.

hls4ml is imported only when this module is used (it is an optional dependency: hgq[export]).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..ir.graph import Graph
from .hls4ml_indexed import register as register_indexed_layers
from .hls4ml_layers import Built, convert

BACKENDS = {'vivado': 'Vivado', 'vitis': 'Vitis'}
IO_TYPES = ('io_parallel', 'io_stream')


def export_hls4ml(graph: Graph, output_dir: str | os.PathLike, backend: str = 'Vitis', io_type: str = 'io_parallel',
                  project_name: str = 'hgq_prj', part: str | None = None, clock_period: float = 5,
                  compile: bool = True, input_precision: str | None = None, reuse_factor: int = 1,
                  strategy: str = 'Latency') -> Any:
    """Write (and by default compile) an hls4ml project computing `graph` bit-exactly; returns the ModelGraph.

    Args:
        graph: a traced, calibrated model (`hgq.ir.from_model`).
        output_dir: the project directory (created; hls4ml's build scripts are written into it).
        backend: 'Vitis' or 'Vivado'.
        io_type: 'io_parallel', or 'io_stream' (needs one format per quantized tensor).
        project_name: the HLS top function's name.
        part, clock_period: passed to hls4ml's backend configuration (default part: hls4ml's).
        compile: build the C-simulation library with g++ (needed for `.predict`); else only write.
        input_precision: the input port type, e.g. 'ap_fixed<32,16>'. Default: the port of
            `hgq.ir.ports.input_port`, the one policy the RTL backend shares (signed; TRN to one
            fraction bit below an RND quantizer's, 24 below for RND_CONV & co.; WRAP when every
            first quantizer wraps, else SAT 3 integer bits above them), so the model is exact
            for every float64 input (RND_CONV & co.: inputs with at most 24 more fraction bits;
            an input feeding both WRAP and SAT quantizers: below 2^16 times their range).
        reuse_factor, strategy: hls4ml's ReuseFactor and Strategy for every layer ('Latency';
            'Resource' was checked exact too, on the 16-64-32-5 MLP with reuse factor 4).

    Raises:
        ValueError: an operation hls4ml cannot do exactly here (names the Keras layer and what works),
            or per-element quantizers with io_stream.
        NotImplementedError: average pooling over a non-power-of-two window of a signed input (unless
            it rounds TRN_ZERO); a lookup table whose exact entries would exceed 64 bits.
        RuntimeError: an hls4ml pass changed a type that exactness depends on (a guard; not seen).
    """
    key = str(backend).lower()
    if key not in BACKENDS:
        raise ValueError(f'backend={backend!r} is not supported; use one of {sorted(BACKENDS.values())}')
    if io_type not in IO_TYPES:
        raise ValueError(f'io_type={io_type!r} is not valid; use one of {IO_TYPES}')
    if not re.fullmatch(r'[A-Za-z_]\w*', str(project_name)):
        raise ValueError(f'project_name={project_name!r} must be a C++ identifier (letters, digits, _): it names '
                         'the HLS top function')
    if not isinstance(graph, Graph):
        raise TypeError(f'export_hls4ml needs an hgq.ir.Graph (from hgq.ir.from_model), got {type(graph).__name__}')

    built = convert(graph, io_type, input_precision)  # every refusal happens here, before hls4ml is needed
    import hls4ml
    from hls4ml.model import ModelGraph

    output_dir = Path(output_dir)
    config = hls4ml.utils.config.create_config(output_dir=str(output_dir), project_name=project_name,
                                               backend=BACKENDS[key], part=part, clock_period=clock_period,
                                               io_type=io_type)
    config['HLSConfig'] = _hls_config(built, reuse_factor, strategy)
    if any(layer['class_name'].startswith('HGQ') for layer in built.layers):
        register_indexed_layers()
    model = ModelGraph.from_layer_list(config, built.layers, inputs=built.inputs, outputs=built.outputs)
    check_types(model, built)
    if compile:
        model.compile()
    else:
        model.write()
    return model


def _hls_config(built: Built, reuse_factor: int, strategy: str) -> dict[str, Any]:
    return {
        # BitExact off: our types are exact already; the default precision is never used by a layer
        # we configure (check_types verifies that), it only fills hls4ml's unused type slots.
        'Model': {'Precision': {'default': 'ap_fixed<16,6>'}, 'ReuseFactor': int(reuse_factor),
                  'Strategy': strategy, 'BitExact': False},
        'LayerName': {name: {'Precision': dict(p)} for name, p in built.precision.items()},
    }


def check_types(model: Any, built: Built) -> None:
    """Fail loudly if any hls4ml pass replaced a type we set (that would silently break exactness)."""
    backend = model.config.backend
    problems = []
    for name, precisions in built.precision.items():
        layer = model.graph.get(name)
        if layer is None:
            continue  # removed by hls4ml (e.g. an identity cast, a reshape folded into a copy)
        for var, wanted in precisions.items():
            attr = layer.get_attr(f'{var}_t')
            if var == 'result':
                attr = layer.get_output_variable().type
            if attr is None:
                continue
            want = backend.convert_precision_string(wanted)
            got = attr.precision
            if _describe(got) != _describe(want):
                problems.append(f'{name}.{var}: configured {wanted}, hls4ml made it {got}')
    if problems:
        raise RuntimeError('hls4ml changed types that exactness depends on:\n  ' + '\n  '.join(problems))


def _describe(p: Any) -> tuple:
    return (getattr(p, 'width', None), getattr(p, 'integer', None), getattr(p, 'signed', None),
            str(getattr(p, 'rounding_mode', None)), str(getattr(p, 'saturation_mode', None)))
