"""Quantizer schemes by name, so configs and layer arguments can say {'scheme': 'lsq', 'bits': 3}.

Why a registry: layers must never special-case a scheme. A scheme module registers its class
here once; `hgq.layers` builds any registered scheme from a plain dict without importing it.
"""

from __future__ import annotations

from typing import Any

from .base import Quantizer

_SCHEMES: dict[str, type[Quantizer]] = {}


def register_scheme(name: str, cls: type[Quantizer]) -> type[Quantizer]:
    """Make `cls` buildable as {'scheme': name, ...}; returns cls (usable as a decorator helper)."""
    if name in _SCHEMES and _SCHEMES[name] is not cls:
        raise ValueError(f'quantizer scheme {name!r} is already registered to {_SCHEMES[name].__name__}')
    _SCHEMES[name] = cls
    return cls


def scheme_names() -> list[str]:
    _load_builtin()
    return sorted(_SCHEMES)


def make_scheme(spec: dict[str, Any], role: str, name: str, owner: str) -> Quantizer:
    """Build the quantizer a {'scheme': ..., **arguments} dict names, for the slot `role`."""
    _load_builtin()
    spec = dict(spec)
    scheme = spec.pop('scheme')
    if scheme not in _SCHEMES:
        raise ValueError(f'{owner}: quantizer scheme {scheme!r} is not known; use one of {scheme_names()}')
    cls = _SCHEMES[scheme]
    try:
        return cls(role=role, name=name, **spec)
    except TypeError as err:
        raise ValueError(f'{owner}: scheme {scheme!r} does not take these arguments: {err}') from err


def _load_builtin() -> None:
    """Import the built-in scheme modules (they register themselves); cheap after the first call."""
    from . import (
        hgq_quantizer,  # noqa: F401
        schemes,  # noqa: F401
    )
