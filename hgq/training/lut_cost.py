"""Differentiable LUT cost of a dense layer, built from the same bit-widths as EBOPs.

EBOPs count only the products; Yosys LUTs of da4ml designs are mostly accumulation adders and, for
SAT activations, clamp logic. This module adds those terms so the cost can track LUTs:

    cost = c_prod * sum(bits_x * bits_w)                (products, = EBOPs without bias)
         + c_acc  * sum(bits_x + bits_w over live terms) (adder-tree width each term adds)
         + c_sat  * sum(bits_a of SAT activations)       (clamp logic per element)
         + c_terms * (number of live terms)              (per-term adder/routing overhead)

A term is live when its weight has bits > 0; the indicator is smooth (tanh) so gradients reach it.
STATUS: the defaults (products 0.3397, terms 2.750, others 0) are a no-intercept least-squares fit
of Yosys LUTs on the 13 designs already in bench/results/ebops_vs_luts.json (EBOPs, active_mults);
leave-one-out R^2 0.988 there vs 0.42 for EBOPs + intercept. The accumulation and SAT terms are not
fitted yet (issue 15: bench/lut_cost_fit.py with >= 20 SAT/WRAP designs is still to be written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keras import ops


@dataclass(frozen=True)
class LUTCostCoefficients:
    """Weights of the three terms (placeholders until fitted; see module docstring)."""

    products: float = 0.3397
    accumulation: float = 0.0
    saturation: float = 0.0
    terms: float = 2.750


DEFAULT_COEFFICIENTS = LUTCostCoefficients()


def live(bits_w: Any, sharpness: float = 4.0) -> Any:
    """Smooth 0/1 indicator of a weight that still costs hardware (bits > 0); exactly 0 at bits <= 0."""
    return ops.tanh(sharpness * ops.relu(bits_w))


def dense_lut_terms(bits_x: Any, bits_w: Any, bits_sat: Any = None) -> dict[str, Any]:
    """The three raw terms for one dense layer.

    bits_x: (n_in,) input bit-widths; bits_w: (n_in, n_out) kernel bit-widths; bits_sat: bit-widths of
    the layer's SAT-mode output activations (None when it wraps or has none).
    """
    bits_x = ops.relu(ops.convert_to_tensor(bits_x, 'float32'))
    bits_w = ops.relu(ops.convert_to_tensor(bits_w, 'float32'))
    bits_x = ops.broadcast_to(ops.reshape(bits_x, (-1, 1)), ops.shape(bits_w))
    alive = live(bits_w) * ops.cast(bits_x > 0, 'float32')
    products = ops.sum(bits_x * bits_w)
    accumulation = ops.sum(alive * (bits_x + bits_w))
    if bits_sat is None:
        saturation = ops.zeros((), 'float32')
    else:
        saturation = ops.sum(ops.relu(ops.convert_to_tensor(bits_sat, 'float32')))
    return {'products': products, 'accumulation': accumulation, 'saturation': saturation,
            'terms': ops.sum(alive)}


def dense_lut_cost(bits_x: Any, bits_w: Any, bits_sat: Any = None,
                   coefficients: LUTCostCoefficients = DEFAULT_COEFFICIENTS) -> Any:
    """Weighted sum of `dense_lut_terms` (differentiable in every bit-width)."""
    t = dense_lut_terms(bits_x, bits_w, bits_sat)
    return (coefficients.products * t['products'] + coefficients.accumulation * t['accumulation']
            + coefficients.saturation * t['saturation'] + coefficients.terms * t['terms'])
