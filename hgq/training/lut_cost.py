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

`live(b)` is exactly 1 for b >= 1 and 0 for b = 0, with slope 1 on [0, 1], so a weight one bit from
pruning sees what pruning it saves. Coefficients: `LUTCostCoefficients`, fitted by bench/lut_cost_fit.py
(docs/ebops.md). In training, `use_cost(model, 'luts')` makes every QLayer add beta·(its LUT cost) to
the loss instead of beta·EBOPs (EBOPs are still recorded in `ebops`).
"""

from __future__ import annotations

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
    """LUTs per unit of each term (bench/lut_cost_fit.py; see docs/ebops.md for the fit)."""

    products: float = 0.3397
    accumulation: float = 0.0
    terms: float = 2.750
    activations: float = 0.0
    saturation: float = 0.0
    other: float = 0.3397

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
    bits_sat = bits_x if saturates(layer.input_quantizer) else None
    return _linear_terms(bits_x, bits_w, layer.product, bits_sat, bits_b)


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
