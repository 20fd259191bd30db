"""Where a model's activations saturate: one overflow policy for every activation quantizer of a model.

Activation formats come from calibrated ranges, so overflow only happens on a sample outside what
calibration saw. The policy says what the hardware does then, per place:

- ``SAT``: every activation clamps to its format's range (a min/max mux per element: LUTs).
- ``WRAP``: every activation wraps (two's complement, like ap_fixed's AP_WRAP; free in logic). An
  out-of-range value comes out as a wrong value of the same format, far from the true one.
- ``input-SAT``: the quantizers that read the model input clamp (out-of-range inputs are clipped, which is
  what a detector feature near its range edge should get), the hidden ones wrap (their calibrated ranges
  cover the data the clipped inputs can produce, up to the calibration set's coverage).

Only the modes change: formats, trained values and EBOPs stay as they are; the overflow mode acts at
inference only (training tracks ranges and never overflows). Quantizers without an ``overflow_mode``
(schemes that describe themselves as indexes/levels) are left alone.
"""

from __future__ import annotations

from typing import Any

from ..quantizers.base import Quantizer

POLICIES = ('SAT', 'WRAP', 'input-SAT')
# the attribute that holds the quantizer applied first to a layer's input, by layer
_FIRST = ('input_quantizer', 'quantizer')


def check_policy(policy: str, where: str = 'activation_overflow') -> str:
    """The canonical policy name (case-insensitive) or a ValueError listing the valid ones."""
    for p in POLICIES:
        if str(policy).lower() == p.lower():
            return p
    raise ValueError(f'{where}={policy!r} is not an overflow policy; valid: {", ".join(POLICIES)}')


def _layer_quantizers(layer: Any) -> dict[str, Quantizer]:
    return {n: q for n, q in vars(layer).items() if isinstance(q, Quantizer)}


def _input_tensors(layer: Any) -> list[Any]:
    return [t for node in getattr(layer, '_inbound_nodes', ()) for t in node.input_tensors]


def _output_tensors(layer: Any) -> list[Any]:
    return [t for node in getattr(layer, '_inbound_nodes', ()) for t in node.output_tensors]


def input_quantizers(model: Any) -> list[tuple[str, str]]:
    """(layer name, quantizer attribute) of each quantizer that reads a model input: the first quantizer of a
    layer fed by an input, through any layers that only move data (Reshape, Flatten: no quantizer)."""
    raw = {id(t) for t in model.inputs}
    found: list[tuple[str, str]] = []
    for layer in model.layers:  # in graph order: a pass-through layer's outputs are marked before their readers
        if not any(id(t) in raw for t in _input_tensors(layer)):
            continue
        qs = _layer_quantizers(layer)
        first = next((a for a in _FIRST if a in qs), None)
        if first is not None:
            found.append((layer.name, first))
        elif not qs:
            raw.update(id(t) for t in _output_tensors(layer))
        else:
            raise ValueError(f'{layer.name}: reads the model input but has no input quantizer (it has '
                             f'{", ".join(sorted(qs))}); the input-SAT policy cannot tell which quantizer clips')
    return found


def activation_overflow_modes(model: Any) -> dict[tuple[str, str], str]:
    """{(layer name, quantizer attribute): overflow mode} of every activation quantizer that has one."""
    return {(layer.name, n): q.overflow_mode for layer in model.layers
            for n, q in _layer_quantizers(layer).items()
            if q.role == 'activation' and hasattr(q, 'overflow_mode')}


def apply_activation_overflow(model: Any, policy: str) -> dict[tuple[str, str], str]:
    """Set every activation quantizer's overflow mode as `policy` says (see the module docstring); returns
    the modes set. Call it before export (and before training with ``cost: luts``: SAT costs LUTs)."""
    policy = check_policy(policy)
    inputs = set(input_quantizers(model)) if policy == 'input-SAT' else set()
    for layer in model.layers:
        for n, q in _layer_quantizers(layer).items():
            if q.role != 'activation' or not hasattr(q, 'overflow_mode'):
                continue
            mode = ('SAT' if (layer.name, n) in inputs else 'WRAP') if policy == 'input-SAT' else policy
            if mode == 'WRAP' and getattr(q, 'trainable_i', False):
                # it trained by clipping at its learned integer bits; wrapping there would compute another function
                raise ValueError(f'{layer.name}/{n}: learns its integer bits (trainable_i=True), which needs a '
                                 f'saturating overflow, but activation_overflow={policy!r} makes it WRAP; use '
                                 "activation_overflow: SAT with trainable_i")
            q.overflow_mode = mode
    return activation_overflow_modes(model)
