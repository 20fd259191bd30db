"""Sliding windows of channels-last tensors, Keras padding and strides: the one implementation.

The emulator, the range analysis, the hls4ml sizing and the RTL trace all see a convolution or
pooling input through these windows, so every backend pads (graph.same_padding) and strides the
same way. Arrays may be codes, bounds, fraction bits or object arrays (Python ints, da4ml
variables); `lead` leading axes (a batch) are carried through untouched.
"""

from __future__ import annotations

import numpy as np

from .graph import same_padding


def _padded(a: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], padding: str,
            fill: object, lead: int) -> np.ndarray:
    if padding == 'valid':
        return a
    if padding != 'same':
        raise ValueError(f"padding={padding!r} is not supported; use 'valid' or 'same'")
    rank = len(kernel)
    spatial = a.shape[lead:lead + rank]
    pads = same_padding(spatial, kernel, strides)
    shape = (*a.shape[:lead], *(n + p0 + p1 for n, (p0, p1) in zip(spatial, pads)), *a.shape[lead + rank:])
    out = np.empty(shape, dtype=a.dtype)
    out[...] = fill
    out[(slice(None),) * lead + tuple(slice(p0, p0 + n) for n, (p0, _) in zip(spatial, pads))] = a
    return out


def conv_windows(a: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], padding: str,
                 fill: object = 0, lead: int = 0) -> np.ndarray:
    """(*lead, *out_spatial, *kernel, c) windows; 'same' pads with `fill` (0 for values)."""
    a = _padded(a, kernel, strides, padding, fill, lead)
    rank = len(kernel)
    w = np.lib.stride_tricks.sliding_window_view(a, kernel, axis=tuple(range(lead, lead + rank)))
    w = w[(slice(None),) * lead + tuple(slice(None, None, s) for s in strides)]
    # (*lead, *out, c, *kernel) -> (*lead, *out, *kernel, c)
    order = (*range(lead + rank), *range(lead + rank + 1, lead + 2 * rank + 1), lead + rank)
    return np.ascontiguousarray(w.transpose(order))


def pool_windows(a: np.ndarray, pool: tuple[int, ...], strides: tuple[int, ...], lead: int = 0) -> np.ndarray:
    """(*lead, *out_spatial, c, window) of a 'valid' pooling, the window flattened last."""
    rank = len(pool)
    w = np.lib.stride_tricks.sliding_window_view(a, pool, axis=tuple(range(lead, lead + rank)))
    w = w[(slice(None),) * lead + tuple(slice(None, None, s) for s in strides)]
    return w.reshape(*w.shape[: lead + rank + 1], -1)
