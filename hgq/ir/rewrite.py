"""Exact graph rewrites: the same numbers, cheaper logic.

`factor_sample_scale`: a dense or conv layer whose input is x̂ = code·β, with β one value per sample (ASQ's
`mul` after `scaled_encode`), computes W·(code·β) + b = β·(W·code) + b. Every product and sum in the IR is
exact (fixed point, no rounding before the next quantizer), so both forms give the same value bit for bit and
the next quantizer rounds the same number; the rewritten form multiplies β into the layer's outputs (one
product per output) instead of into each input, and the adder graph sees the narrow codes.
"""

from __future__ import annotations

import numpy as np

from .graph import Format, Graph, Node


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {n.name: [] for n in graph.nodes}
    for node in graph.nodes:
        for name in node.inputs:
            out[name].append(node)
    return out


def _is_sample_scale(node: Node, by_name: dict[str, Node]) -> bool:
    """A `mul` of a tensor by a per-sample scalar (shape (1,)), as ASQ lowers x̂ = code·β."""
    return (node.op == 'mul' and len(node.inputs) == 2 and tuple(by_name[node.inputs[1]].shape) == (1,)
            and by_name[node.inputs[0]].op == 'scaled_encode')


def factor_sample_scale(graph: Graph) -> Graph:
    """dense/conv(code·β) -> affine(mul(dense/conv(code), β), offset=bias): β multiplies the outputs.

    Applies where the `mul` feeds only that layer (otherwise the inputs' product is needed anyway). The layer's
    last node keeps its name, so its consumers and the graph outputs are unchanged."""
    by_name = {n.name: n for n in graph.nodes}
    consumers = _consumers(graph)
    replace: dict[str, list[Node]] = {}
    dropped: set[str] = set()
    for node in graph.nodes:
        if node.op not in ('dense', 'conv') or not node.inputs:
            continue
        scale = by_name[node.inputs[0]]
        if not _is_sample_scale(scale, by_name) or len(consumers[scale.name]) != 1 or scale.name in graph.outputs:
            continue
        code, beta = scale.inputs
        attrs = dict(node.attrs)
        bias, bias_fmt = attrs.pop('bias', None), attrs.pop('bias_fmt', None)
        linear = Node(f'{node.name}_unscaled', node.op, [code, *node.inputs[1:]], node.shape, attrs, node.source)
        new = [linear]
        if bias is None:
            new.append(Node(node.name, 'mul', [linear.name, beta], node.shape, {}, node.source))
        else:
            product = Node(f'{node.name}_scaled', 'mul', [linear.name, beta], node.shape, {}, node.source)
            ones = np.ones(np.shape(bias))
            new += [product, Node(node.name, 'affine', [product.name], node.shape,
                                  {'scale': ones, 'scale_fmt': Format.of(0, 1, 0, np.shape(bias)),
                                   'offset': bias, 'offset_fmt': bias_fmt}, node.source)]
        replace[node.name] = new
        dropped.add(scale.name)
    if not replace:
        return graph
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.name in dropped:
            continue
        nodes.extend(replace.get(node.name, [node]))
    return Graph(nodes, list(graph.inputs), list(graph.outputs))


__all__ = ['factor_sample_scale']
