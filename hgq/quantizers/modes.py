"""Rounding and overflow modes of `ap_fixed<W, I, Q, O>`, validated once, by name."""

from __future__ import annotations

ROUND_MODES = ('TRN', 'RND', 'RND_CONV', 'TRN_ZERO', 'RND_ZERO', 'RND_INF', 'RND_MIN_INF')
OVERFLOW_MODES = ('WRAP', 'SAT', 'SAT_SYM')


def check_round_mode(mode: str, where: str = 'round_mode') -> str:
    """Return the canonical rounding-mode name or raise a ValueError that lists the valid ones."""
    canonical = str(mode).upper().removeprefix('AP_')
    if canonical not in ROUND_MODES:
        raise ValueError(f'{where}={mode!r} is not a rounding mode; valid: {", ".join(ROUND_MODES)}')
    return canonical


def check_overflow_mode(mode: str, where: str = 'overflow_mode') -> str:
    """Return the canonical overflow-mode name or raise a ValueError that lists the valid ones."""
    canonical = str(mode).upper().removeprefix('AP_')
    if canonical not in OVERFLOW_MODES:
        raise ValueError(f'{where}={mode!r} is not an overflow mode; valid: {", ".join(OVERFLOW_MODES)}')
    return canonical
