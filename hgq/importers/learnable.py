"""Turn a model with fixed formats (e.g. an imported QKeras model) into one that learns its bit-widths.

`to_learnable` replaces every `FixedQuantizer` by an `HGQQuantizer` that starts at the same format, so that
`hgq train --init` continues from the imported network with learned per-weight and per-activation bits
and EBOPs (the HGQ method) instead of from scratch:

- f: `f_init` = the fixed f (per element, per channel or per tensor: `granularity`);
- weights: k and i follow from the weight values (already on the fixed grid): at most the fixed ones;
- activations: the tracked range is set to the fixed format's full range [-k·2^i, 2^i - 2^-f], so in
  inference the learnable quantizer applies exactly (k, i, f) with the fixed overflow mode;
- the rounding mode is kept (RND_CONV for QKeras imports; every backend implements it).

The converted model in inference computes what the fixed one computes, bit for bit. Training then follows
HGQ's rules: activation ranges are tracked (and reset each epoch by `ResetRanges`) with no clipping while
training, so a saturating QKeras activation (e.g. quantized_relu with few integer bits) stops clipping
during training and its integer bits follow the data from then on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..quantizers.base import Quantizer
from ..quantizers.hgq_quantizer import GRANULARITIES, FixedQuantizer, HGQQuantizer


class LearnableConversionError(ValueError):
    """The model cannot be converted; the message names the layer."""


def _learnable_config(q: FixedQuantizer, granularity: str) -> dict[str, Any]:
    import keras

    new = HGQQuantizer(role=q.role, granularity=granularity, f_init=float(q.f), round_mode=q.round_mode,
                       overflow_mode=q.overflow_mode, name=q.name)
    config = keras.saving.serialize_keras_object(new)
    config.pop('build_config', None)
    return config


def _replace_configs(node: Any, granularity: str, fixed: dict[str, FixedQuantizer],
                     by_name: dict[str, FixedQuantizer]) -> Any:
    """The serialized model with each FixedQuantizer config swapped for an HGQQuantizer config."""
    if isinstance(node, dict):
        if node.get('class_name') == 'FixedQuantizer' and isinstance(node.get('config'), dict):
            name = node['config'].get('name')
            q = by_name.get(name)
            if q is None:
                raise LearnableConversionError(f'quantizer {name!r}: found in the config but not in the model')
            fixed[name] = q
            return _learnable_config(q, granularity)
        return {k: _replace_configs(v, granularity, fixed, by_name) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_configs(v, granularity, fixed, by_name) for v in node]
    return node


def _fixed_quantizers(model: Any) -> dict[str, tuple[str, FixedQuantizer]]:
    """name -> (owning layer, quantizer) of every FixedQuantizer of a hgq layer."""
    found: dict[str, tuple[str, FixedQuantizer]] = {}
    for layer in model.layers:
        quantizers = layer.quantizers() if hasattr(layer, 'quantizers') else {}
        for q in quantizers.values():
            if isinstance(q, FixedQuantizer):
                if q.name in found:
                    raise LearnableConversionError(f'layer {layer.name!r}: quantizer name {q.name!r} is used twice; '
                                                   'names must be unique to convert the model')
                found[q.name] = (layer.name, q)
    return found


def to_learnable(model: Any, granularity: str = 'element') -> Any:
    """A new model in which every FixedQuantizer is an HGQQuantizer starting at the same (k, i, f).

    Weights and the other quantizers are copied. In inference the new model equals `model` bit for bit;
    see the module docstring for what changes once it trains.
    """
    import keras

    import hgq.layers  # noqa: F401 - registers the layers for deserialization

    if granularity not in GRANULARITIES:
        raise ValueError(f'granularity={granularity!r} is not valid; use one of {GRANULARITIES}')
    found = _fixed_quantizers(model)
    if not found:
        raise LearnableConversionError(f'model {model.name!r} has no FixedQuantizer to make learnable (it already '
                                       'learns its formats, or has no hgq layers)')
    by_name = {name: q for name, (_, q) in found.items()}
    fixed: dict[str, FixedQuantizer] = {}
    config = _replace_configs(keras.saving.serialize_keras_object(model), granularity, fixed, by_name)
    new = keras.saving.deserialize_keras_object(config)
    _copy_weights(model, new)
    for layer in new.layers:
        for q in (layer.quantizers() if hasattr(layer, 'quantizers') else {}).values():
            if isinstance(q, HGQQuantizer) and q.name in fixed:
                _start_at(q, fixed[q.name])
    return new


def _quantizer_variable_ids(model: Any) -> set[int]:
    ids: set[int] = set()
    for layer in model.layers:
        for q in (layer.quantizers() if hasattr(layer, 'quantizers') else {}).values():
            if isinstance(q, Quantizer):
                ids.update(id(v) for v in q.variables)
    return ids


def _copy_weights(old: Any, new: Any) -> None:
    """Every non-quantizer variable of `old` into the variable of `new` with the same path."""
    skip_old, skip_new = _quantizer_variable_ids(old), _quantizer_variable_ids(new)
    targets = {v.path: v for v in new.variables if id(v) not in skip_new}
    for v in old.variables:
        if id(v) in skip_old:
            continue
        target = targets.get(v.path)
        if target is None or tuple(target.shape) != tuple(v.shape):
            raise LearnableConversionError(f'variable {v.path!r} {tuple(v.shape)} has no counterpart in the '
                                           'converted model')
        target.assign(v.value)


def _start_at(q: HGQQuantizer, fixed: FixedQuantizer) -> None:
    """Activation quantizers: the tracked range is the fixed format's full range, so (k, i) are the fixed ones."""
    if q.role != 'activation':
        return
    lo = -float(fixed.k) * 2.0**fixed.i
    hi = 2.0**fixed.i - 2.0**-fixed.f
    q.range_min.assign(np.full(q.range_min.shape, lo, dtype='float32'))
    q.range_max.assign(np.full(q.range_max.shape, hi, dtype='float32'))
