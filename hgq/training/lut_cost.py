"""Differentiable LUT cost of a model, built from the same bit-widths as EBOPs, fitted to Yosys LUTs.

EBOPs count only the products; the Yosys LUTs of da4ml designs are also accumulation adders, a fixed
overhead per live term, the rounding of every activation, and for SAT activations their clamp logic.
Per weighted layer (x: input element, w: kernel element, b: bias element, unrolled like EBOPs):

    products     = Σ bits_x·bits_w                    (EBOPs without the bias)
    accumulation = Σ live_x·bits_w + bits_x·live_w + Σ bits_b   (width each live term adds to the adder tree)
    terms        = Σ live_x·live_w                    (live terms: each one more adder input)
    activations  = Σ bits of the layer's input quantizer (rounding of each element)
    saturation   = Σ bits of that quantizer when it is SAT/SAT_SYM (clamp logic per element)
    other        = EBOPs of cost-bearing layers that have no model here (tables, batch norm)

    cost = Σ coefficient · term

Only logic that survives in hardware is counted (da4ml and Yosys remove the rest): an input whose tracked
range is one value is a constant folded into the bias; an output that no live weight of the next dense
layer reads (recursively down an MLP chain, `link_consumers`) and the weights that feed only it cost
nothing; an input that no live weight reads needs no rounding or clamp. These masks carry no gradient.
On heavily pruned designs (90-97% of the weights) they are what brings the fit from R² 0.86 to 0.996.

`live(b)` is exactly 1 for b >= 1 and 0 for b = 0, with slope 1 on [0, 1], so a weight one bit from
pruning sees what pruning it saves. Coefficients: `LUTCostCoefficients`, fitted by bench/lut_cost_fit.py
(docs/ebops.md). In training, `use_cost(model, 'luts')` makes every QLayer add beta·(its LUT cost) to
the loss instead of beta·EBOPs (EBOPs are still recorded in `ebops`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import keras
from keras import ops

from ..layers.base import QLayer
from ..layers.linear import QLinearBase
from ._backend import model_function, values_of
from ._walk import qlayers

TERMS = ('products', 'accumulation', 'terms', 'activations', 'saturation', 'other')
COSTS = ('ebops', 'luts')
SAT_MODES = ('SAT', 'SAT_SYM')


@dataclass(frozen=True)
class LUTCostCoefficients:
    """LUTs per unit of each term. Defaults: the non-negative least-squares fit of bench/lut_cost_fit.py to
    Yosys 0.23 LUTs of 37 MLPs, SAT and WRAP, 1-8 bits (2026-12-03; R² 0.996, leave-one-out 0.994; EBOPs
    alone 0.50). `other` (tables, batch norm) was not in the fit: it takes the products coefficient."""

    products: float = 0.3057
    accumulation: float = 0.4591
    terms: float = 0.2414
    activations: float = 0.1524
    saturation: float = 1.629
    other: float = 0.3057

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and v >= 0 and v == v and v != float('inf')):
                raise ValueError(f'LUTCostCoefficients.{f.name}={v!r} must be a finite number >= 0 (a negative '
                                 'coefficient would reward bits)')

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_COEFFICIENTS = LUTCostCoefficients()


def live(bits: Any) -> Any:
    """0/1 indicator of a width that still costs hardware: min(bits, 1), exact on integer widths, slope 1
    on [0, 1] (written b - relu(b - 1) so that the slope at b = 1 is 1 on every backend)."""
    b = ops.relu(bits)
    return b - ops.relu(b - 1.0)


def _zero() -> Any:
    return ops.zeros((), 'float32')


def dense_lut_terms(bits_x: Any, bits_w: Any, bits_sat: Any = None, bits_b: Any = None) -> dict[str, Any]:
    """The terms of one dense layer from bit-widths: bits_x (n_in,), bits_w (n_in, n_out), bits_sat the
    input widths when its quantizer saturates (None: WRAP), bits_b (n_out,) or None."""
    bits_x = ops.relu(ops.convert_to_tensor(bits_x, 'float32'))
    bits_w = ops.relu(ops.convert_to_tensor(bits_w, 'float32'))
    return _linear_terms(bits_x[None], bits_w, ops.matmul, bits_sat, bits_b)


def _linear_terms(bits_x: Any, bits_w: Any, product: Callable[[Any, Any], Any], bits_sat: Any,
                  bits_b: Any) -> dict[str, Any]:
    """Terms of a layer whose outputs are sums of input x weight products; `product` is the layer's own
    (matmul, conv), run on bit tensors so every unrolled multiplication is counted."""
    lx, lw = live(bits_x), live(bits_w)
    accumulation = ops.sum(product(lx, bits_w)) + ops.sum(product(bits_x, lw))
    if bits_b is not None:
        accumulation = accumulation + ops.sum(ops.relu(ops.convert_to_tensor(bits_b, 'float32')))
    sat = _zero() if bits_sat is None else ops.sum(ops.relu(ops.convert_to_tensor(bits_sat, 'float32')))
    return {'products': ops.sum(product(bits_x, bits_w)), 'accumulation': accumulation,
            'terms': ops.sum(product(lx, lw)), 'activations': ops.sum(bits_x), 'saturation': sat,
            'other': _zero()}


def saturates(quantizer: Any) -> bool:
    """Whether a quantizer clamps at inference (SAT/SAT_SYM overflow); schemes without the attribute wrap."""
    return str(getattr(quantizer, 'overflow_mode', 'WRAP')).upper() in SAT_MODES


def layer_lut_terms(layer: QLayer, kernel: Any = None, bias: Any = None, ebops: Any = None) -> dict[str, Any]:
    """The terms of one cost-bearing layer from its current bit-widths (differentiable in the bit
    parameters). Weighted layers (Dense, Conv) get the full model; other QLayers count as `other` = their
    EBOPs (`ebops` when given, else compute_ebops())."""
    if not isinstance(layer, QLinearBase):
        ebops = layer.compute_ebops() if ebops is None else ebops
        return {**{t: _zero() for t in TERMS}, 'other': ops.cast(ebops, 'float32')}
    if kernel is None:  # the deployed weights (batch-norm variants fold their moving statistics in)
        kernel, bias = layer.effective_weights(None, False)
    bits_x = ops.broadcast_to(ops.cast(layer.input_quantizer.bits(), 'float32'), layer.in_shape)[None]
    bits_w = ops.broadcast_to(ops.cast(layer.kernel_quantizer.bits(kernel), 'float32'), ops.shape(kernel))
    bits_b = None
    if bias is not None:
        bits_b = ops.broadcast_to(ops.cast(layer.bias_quantizer.bits(bias), 'float32'), ops.shape(bias))
    # dead logic that da4ml and Yosys remove (masks without gradient, so pruned stays pruned):
    used = _used_outputs(layer)  # outputs that no live weight of the consuming layer reads
    if used is not None:
        bits_w = bits_w * used
        bits_b = None if bits_b is None else bits_b * used
    bits_x = bits_x * _varying_inputs(layer.input_quantizer, layer.in_shape)  # constants fold into the bias
    read = ops.stop_gradient(ops.max(live(bits_w), axis=tuple(a for a in range(len(bits_w.shape)) if
                                                             a != len(bits_w.shape) - 2)))
    bits_x = bits_x * read  # inputs that no live weight reads: no rounding, no clamp
    bits_sat = bits_x if saturates(layer.input_quantizer) else None
    return _linear_terms(bits_x, bits_w, layer.product, bits_sat, bits_b)


def _varying_inputs(quantizer: Any, in_shape: tuple) -> Any:
    """1 where the input element's tracked range is not a single value (0: a constant, e.g. a neuron whose
    incoming weights are all pruned); 1 everywhere for quantizers without tracked ranges."""
    lo, hi = getattr(quantizer, 'range_min', None), getattr(quantizer, 'range_max', None)
    if lo is None or hi is None:
        return ops.ones(in_shape, 'float32')
    lo, hi = ops.convert_to_tensor(lo), ops.convert_to_tensor(hi)
    return ops.stop_gradient(ops.broadcast_to(ops.cast(lo != hi, 'float32'), in_shape))


def _used_outputs(layer: QLinearBase) -> Any:
    """Per output channel, 1 if the consuming dense layer (`cost_consumer`, set by link_consumers) reads it
    through a live weight whose own output is used (recursively down the chain); None when unknown."""
    ref = getattr(layer, 'cost_consumer', None)
    consumer = None if ref is None else ref()
    if consumer is None:
        return None
    kernel, _ = consumer.effective_weights(None, False)
    live_w = live(ops.broadcast_to(ops.cast(consumer.kernel_quantizer.bits(kernel), 'float32'), ops.shape(kernel)))
    downstream = _used_outputs(consumer)
    if downstream is not None:
        live_w = live_w * downstream
    return ops.stop_gradient(ops.max(live_w, axis=1))


def link_consumers(model: keras.layers.Layer) -> None:
    """Set `cost_consumer` of every dense QLayer whose only consumer is a dense QLayer of matching width (the
    MLP chain), so its cost can leave out outputs that nothing reads. Other graphs keep every output."""
    from ..layers.linear import QDense

    for layer in qlayers(model):
        consumer = None
        nodes = list(getattr(layer, '_outbound_nodes', []) or [])
        ops_ = {id(n.operation): n.operation for n in nodes if getattr(n, 'operation', None) is not None}
        if isinstance(layer, QDense) and len(ops_) == 1:
            (op,) = ops_.values()
            if isinstance(op, QDense) and op.built and len(op.in_shape) == 1 and op.in_shape[0] == layer.units:
                consumer = weakref.ref(op)  # a weak reference: Keras would track a Layer attribute as a sublayer
        layer.cost_consumer = consumer


def combine(terms: dict[str, Any], coefficients: LUTCostCoefficients = DEFAULT_COEFFICIENTS) -> Any:
    """Σ coefficient · term."""
    c = coefficients.as_dict()
    return sum(c[t] * terms[t] for t in TERMS)


def dense_lut_cost(bits_x: Any, bits_w: Any, bits_sat: Any = None,
                   coefficients: LUTCostCoefficients = DEFAULT_COEFFICIENTS, bits_b: Any = None) -> Any:
    """Weighted sum of `dense_lut_terms` (differentiable in every bit-width)."""
    return combine(dense_lut_terms(bits_x, bits_w, bits_sat, bits_b), coefficients)


def layer_lut_cost(layer: QLayer, kernel: Any = None, bias: Any = None,
                   coefficients: LUTCostCoefficients = DEFAULT_COEFFICIENTS, ebops: Any = None) -> Any:
    """Σ coefficient · term of one layer (see layer_lut_terms)."""
    return combine(layer_lut_terms(layer, kernel, bias, ebops), coefficients)


def _model_terms(model: keras.layers.Layer, values: list[Any]) -> dict[str, Any]:
    with keras.StatelessScope(state_mapping=list(zip(model.variables, values, strict=True))):
        per_layer = [layer_lut_terms(layer) for layer in qlayers(model)]
    return {t: sum((p[t] for p in per_layer), _zero()) for t in TERMS}


def model_lut_terms(model: keras.layers.Layer) -> dict[str, float]:
    """Every term summed over the model, from its current bit-widths and tracked ranges (compiled, cached).
    After `calibrate` these are the exact counts that bench/lut_cost_fit.py fits."""
    if not qlayers(model):
        return {t: 0.0 for t in TERMS}
    link_consumers(model)
    values = model_function(model, _model_terms, tensorflow=False)(values_of(model.variables))
    return {t: float(keras.ops.convert_to_numpy(v)) for t, v in values.items()}


def lut_estimate(model: keras.layers.Layer, coefficients: LUTCostCoefficients = DEFAULT_COEFFICIENTS) -> float:
    """The model's LUT cost (predicted Yosys LUTs) from its current bit-widths."""
    terms = model_lut_terms(model)
    return float(sum(getattr(coefficients, t) * terms[t] for t in TERMS))


def check_cost(cost: Any, where: str = 'cost') -> str:
    if cost not in COSTS:
        raise ValueError(f'{where} = {cost!r} is not valid; valid values: {", ".join(COSTS)}')
    return cost


def use_cost(model: keras.layers.Layer, cost: str = 'luts',
             coefficients: LUTCostCoefficients = DEFAULT_COEFFICIENTS) -> int:
    """Make every QLayer's loss term beta·(its LUT cost) ('luts') or beta·EBOPs ('ebops', the default).

    Call it before `compile`/`fit`: a compiled train step keeps the cost it was traced with. EBOPs are
    recorded in each layer's `ebops` either way. Returns the number of layers set.
    """
    check_cost(cost)
    layers = qlayers(model)
    link_consumers(model)
    for layer in layers:
        layer.cost_hook = None if cost == 'ebops' else _LUTHook(coefficients)
    return len(layers)


class _LUTHook:
    """The per-layer loss cost for `use_cost(model, 'luts')`: called in the layer's training call."""

    def __init__(self, coefficients: LUTCostCoefficients) -> None:
        self.coefficients = coefficients

    def __call__(self, layer: QLayer, ebops: Any, kernel: Any = None, bias: Any = None) -> Any:
        return layer_lut_cost(layer, kernel, bias, self.coefficients, ebops)


class LUTEstimate:
    """Cost model for BudgetController: the model's LUT cost from its current bit-widths and ranges."""

    def __init__(self, coefficients: LUTCostCoefficients = DEFAULT_COEFFICIENTS) -> None:
        self.coefficients = coefficients

    def __call__(self, model: keras.layers.Layer) -> float:
        return lut_estimate(model, self.coefficients)

    def __repr__(self) -> str:
        return 'LUTEstimate()'


class LUTLogger(keras.callbacks.Callback):
    """Put the model's LUT cost into the logs as `key` at each epoch end (before ParetoCheckpoint etc.)."""

    def __init__(self, key: str = 'lut_estimate',
                 coefficients: LUTCostCoefficients = DEFAULT_COEFFICIENTS) -> None:
        super().__init__()
        self.key, self.coefficients = key, coefficients

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs[self.key] = lut_estimate(self.model, self.coefficients)
