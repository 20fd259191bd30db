"""Hold the numpy reference `quantize_np` against the real `ap_fixed<W, I, Q, O>` C++ headers.

The oracle (tests/cpp/ap_fixed_oracle.cpp) is compiled with g++ against the ap_types headers that
ship inside hls4ml, with one instantiation per (format, rounding mode, overflow mode); it casts
exact inputs into each type and returns the raw bits, which are decoded here and compared with
`quantize_np` by `==`. Compiled executables are cached in pytest's cache directory, keyed by the
source, the headers, the compiler and the format table, so only the first run pays the compile.

Without g++ the oracle test is skipped, except with CI=true, where it fails.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from hgq.quantizers.fixed_point import quantize_np
from hgq.quantizers.modes import OVERFLOW_MODES, ROUND_MODES

ORACLE_SRC = Path(__file__).parent / 'cpp' / 'ap_fixed_oracle.cpp'
CXX_FLAGS = ('-std=c++17', '-O1', '-w')
# Mode order of the oracle's output: rounding-major, as in ap_fixed_oracle.cpp.
ORACLE_ROUND_ORDER = ('TRN', 'RND', 'RND_CONV', 'TRN_ZERO', 'RND_ZERO', 'RND_INF', 'RND_MIN_INF')
ORACLE_OVERFLOW_ORDER = ('WRAP', 'SAT', 'SAT_SYM')
MODES = [(q, o) for q in ORACLE_ROUND_ORDER for o in ORACLE_OVERFLOW_ORDER]

# (signed, W, I) of ap_fixed<W, I> (signed) / ap_ufixed<W, I>; in hgq terms k = signed,
# i = I - k, f = W - I. W from 1 to 20; I negative, zero, inside (0, W] and beyond W (f < 0).
# fmt: off
FORMATS = (
    (1, 1, 1), (1, 1, 0), (1, 1, -3), (1, 1, 4), (1, 2, 1), (1, 2, 2), (1, 2, -1), (1, 2, 5),
    (1, 3, 0), (1, 3, 3), (1, 4, 2), (1, 4, -3), (1, 4, 9), (1, 5, 1), (1, 6, 3), (1, 7, 7),
    (1, 8, 4), (1, 8, -2), (1, 9, 12), (1, 10, 5), (1, 12, 0), (1, 14, 7), (1, 16, 8), (1, 20, 10),
    (1, 20, -4), (1, 18, 23),
    (0, 1, 0), (0, 1, 1), (0, 1, -2), (0, 1, 3), (0, 2, 0), (0, 2, 2), (0, 2, -1), (0, 2, 4),
    (0, 3, 1), (0, 3, 3), (0, 4, 2), (0, 4, -3), (0, 4, 8), (0, 5, 0), (0, 6, 6), (0, 7, 2),
    (0, 8, 4), (0, 8, -3), (0, 9, 13), (0, 10, 3), (0, 12, 12), (0, 14, -2), (0, 16, 8), (0, 20, 10),
    (0, 20, -4), (0, 18, 22),
)
# fmt: on
VALUES_PER_FORMAT = 2400
SEED = 20240607
# src_t in the oracle is ap_fixed<64, 32>: inputs must lie on its 2^-32 grid with |x| < 2^31.
SRC_FRAC_BITS, SRC_MAX_ABS = 32, 2.0**31


def _type_name(signed: int, w: int, i_ap: int, q: str = 'TRN', o: str = 'WRAP') -> str:
    return f'ap_{"" if signed else "u"}fixed<{w},{i_ap},AP_{q},AP_{o}>'


def _code_range(signed: int, w: int) -> tuple[int, int]:
    """Integer codes a W-bit word holds: [-2^(W-1), 2^(W-1) - 1] signed, [0, 2^W - 1] unsigned."""
    return (-(2 ** (w - 1)), 2 ** (w - 1) - 1) if signed else (0, 2**w - 1)


def make_inputs(rng: np.random.Generator, signed: int, w: int, i_ap: int, n: int = VALUES_PER_FORMAT) -> np.ndarray:
    """Inputs for one format: edges, exact ties, in-range and overflowing values, all exact doubles.

    Values are built as (integer code + fraction) * 2^-f, with fractions that are multiples of 2^-8,
    so they are exact, and sit exactly on grid points, on half-steps (ties) and in between.
    """
    f = w - i_ap
    lo, hi = _code_range(signed, w)
    span = 2**w
    # 1. Range ends and their wrap images, on the grid, on ties, and just either side of ties.
    edge_codes = np.array(
        sorted({lo - span, lo - 2, lo - 1, lo, lo + 1, -2, -1, 0, 1, 2, hi - 1, hi, hi + 1, hi + 2, hi + span}),
        dtype=np.float64,
    )
    edge_fracs = np.array(
        [0, 1 / 8, 1 / 4, 3 / 8, 1 / 2 - 2**-8, 1 / 2, 1 / 2 + 2**-8, 5 / 8, 3 / 4, 7 / 8, 1 - 2**-8, 2**-8]
    )
    edges = (edge_codes[:, None] + edge_fracs[None, :]).ravel()
    # 2. Random codes over the range and one wrap period either side: 1/3 ties, 1/6 on the grid.
    n_mid = (2 * (n - edges.size)) // 3
    codes = rng.integers(lo - span - 3, hi + span + 4, size=n_mid).astype(np.float64)
    kind = rng.random(n_mid)
    fracs = np.where(kind < 1 / 3, 0.5, np.where(kind < 1 / 2, 0.0, rng.integers(0, 256, n_mid) / 256))
    mid = codes + fracs
    # 3. Log-uniform magnitudes from below one step to far beyond the range, 1/3 of them made ties.
    n_wide = n - edges.size - n_mid
    exponent = rng.integers(-2, i_ap + f + 7, size=n_wide)  # of the code: x in [2^(-f-2), 2^(I+6))
    mantissa = 1 + rng.integers(0, 64, size=n_wide) / 64
    sign = np.where(rng.random(n_wide) < 0.5, -1.0, 1.0)
    wide = sign * np.ldexp(mantissa, exponent)
    wide = np.where(rng.random(n_wide) < 1 / 3, np.floor(wide) + 0.5, wide)
    x = np.ldexp(np.concatenate([edges, mid, wide]), -f)
    assert x.size == n
    on_src_grid = np.ldexp(x, SRC_FRAC_BITS) == np.round(np.ldexp(x, SRC_FRAC_BITS))
    assert np.all(on_src_grid) and np.all(np.abs(x) < SRC_MAX_ABS), 'inputs must be exact in the oracle src_t'
    return x


def decode_bits(bits: np.ndarray, signed: int, w: int, i_ap: int) -> np.ndarray:
    """Raw W-bit words (two's complement if signed) -> exact float64 values."""
    codes = (bits & np.uint64(2**w - 1)).astype(np.int64)
    if signed:
        codes = np.where(codes >= 2 ** (w - 1), codes - 2**w, codes)
    return np.ldexp(codes.astype(np.float64), -(w - i_ap))


def _ap_types_dir() -> Path | None:
    """hls4ml's bundled ap_types headers, found without importing hls4ml (which pulls in keras)."""
    spec = importlib.util.find_spec('hls4ml')
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / 'templates' / 'vivado' / 'ap_types'
    return path if (path / 'ap_fixed.h').is_file() else None


def _unavailable(reason: str, fix: str) -> None:
    """Skip, or fail under CI=true, where the oracle must run."""
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(f'{reason}; the ap_fixed oracle test must run on CI. Install it: {fix}', pytrace=False)
    pytest.skip(f'{reason} ({fix})')


def _parts(n_parts: int) -> list[list[int]]:
    """Format indices per executable, round-robin so the compile work is even."""
    return [list(range(p, len(FORMATS), n_parts)) for p in range(n_parts)]


def _compile(cxx: str, include: Path, indices: list[int], out: Path) -> None:
    entries = ' '.join(f'X({j}, {FORMATS[j][1]}, {FORMATS[j][2]}, {FORMATS[j][0]})' for j in indices)
    tmp = out.with_name(out.name + f'.tmp{os.getpid()}')
    cmd = [cxx, *CXX_FLAGS, '-I', str(include), f'-DORACLE_FORMATS={entries}', str(ORACLE_SRC), '-o', str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f'compiling the ap_fixed oracle failed:\n{" ".join(cmd)}\n{proc.stderr[-5000:]}')
    os.replace(tmp, out)


@pytest.fixture(scope='session')
def oracle(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, list[int]]]:
    """Compiled oracle executables, each with the FORMATS indices it handles."""
    cxx = shutil.which('g++')
    if cxx is None:
        _unavailable('g++ not found', 'apt-get install -y g++')
    include = _ap_types_dir()
    if include is None:
        _unavailable('hls4ml ap_types headers not found', 'pip install hls4ml')
    n_parts = max(2, min(4, os.cpu_count() or 2))
    parts = _parts(n_parts)
    key = hashlib.sha256()
    version = subprocess.run([cxx, '--version'], capture_output=True, text=True).stdout
    for blob in (version, repr(CXX_FLAGS), repr(FORMATS), repr(parts), ORACLE_SRC.read_text()):
        key.update(blob.encode())
    for header in sorted(include.rglob('*.h')):
        key.update(header.read_bytes())
    digest = key.hexdigest()[:16]
    cache = getattr(pytestconfig, 'cache', None)
    build = cache.mkdir('ap_fixed_oracle') if cache is not None else tmp_path_factory.mktemp('ap_fixed_oracle')
    exes = [build / f'oracle_{digest}_{p}' for p in range(n_parts)]
    todo = [(p, exe) for p, exe in enumerate(exes) if not exe.is_file()]
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        list(pool.map(lambda t: _compile(cxx, include, parts[t[0]], t[1]), todo))
    return list(zip(exes, parts, strict=True))


def _run_oracle(exe: Path, jobs: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
    """Send (format index, inputs) records; get back one (len(MODES), n) uint64 array per record."""
    payload = b''.join(
        np.array([j, x.size], dtype=np.int32).tobytes() + x.astype(np.float64).tobytes() for j, x in jobs
    )
    proc = subprocess.run([str(exe)], input=payload, capture_output=True, timeout=600)
    assert proc.returncode == 0, f'{exe.name} exited {proc.returncode}: {proc.stderr.decode(errors="replace")}'
    out = np.frombuffer(proc.stdout, dtype=np.uint64)
    sizes = [len(MODES) * x.size for _, x in jobs]
    assert out.size == sum(sizes), f'{exe.name} returned {out.size} words, expected {sum(sizes)}'
    chunks = np.split(out, np.cumsum(sizes)[:-1])
    return [c.reshape(len(MODES), x.size) for c, (_, x) in zip(chunks, jobs, strict=True)]


def test_oracle_mode_order_matches_hgq() -> None:
    """The oracle's mode lists cover exactly hgq's modes, so no mode goes untested."""
    assert sorted(ORACLE_ROUND_ORDER) == sorted(ROUND_MODES)
    assert sorted(ORACLE_OVERFLOW_ORDER) == sorted(OVERFLOW_MODES)


def test_inputs_cover_ties_overflow_and_range() -> None:
    """Every format's inputs include exact ties, in-range values and overflows on both sides."""
    rng = np.random.default_rng(SEED)
    for signed, w, i_ap in FORMATS:
        x = make_inputs(rng, signed, w, i_ap)
        scaled = np.ldexp(x, w - i_ap)
        lo, hi = _code_range(signed, w)
        assert np.sum(scaled - np.floor(scaled) == 0.5) >= 100, (signed, w, i_ap)
        assert np.sum((scaled >= lo) & (scaled <= hi)) >= 100, (signed, w, i_ap)
        assert np.sum(scaled > hi + 1) >= 100, (signed, w, i_ap)
        assert np.sum(scaled < lo - 1) >= 100, (signed, w, i_ap)


def test_quantize_np_matches_ap_fixed(oracle: list[tuple[Path, list[int]]]) -> None:
    """quantize_np == the ap_fixed cast, bit for bit, for every format, rounding and overflow mode."""
    rng = np.random.default_rng(SEED)
    inputs = [make_inputs(rng, *fmt) for fmt in FORMATS]
    with ThreadPoolExecutor(max_workers=len(oracle)) as pool:
        results = list(pool.map(lambda e: _run_oracle(e[0], [(j, inputs[j]) for j in e[1]]), oracle))
    bits_of = {j: bits for (_, idx), res in zip(oracle, results, strict=True) for j, bits in zip(idx, res, strict=True)}
    assert sorted(bits_of) == list(range(len(FORMATS)))

    n_compared, mismatches, n_bad = 0, [], 0
    for j, (signed, w, i_ap) in enumerate(FORMATS):
        x = inputs[j]
        for m, (q, o) in enumerate(MODES):
            expected = decode_bits(bits_of[j][m], signed, w, i_ap)
            got = quantize_np(x, signed, i_ap - signed, w - i_ap, q, o)
            bad = np.flatnonzero(got != expected)
            n_compared += x.size
            n_bad += bad.size
            for b in bad[: max(0, 30 - len(mismatches))]:
                mismatches.append(
                    f'{_type_name(signed, w, i_ap, q, o)} (k={signed}, i={i_ap - signed}, '
                    f'f={w - i_ap}): x={x[b]!r} (= {np.ldexp(x[b], w - i_ap)!r} steps) '
                    f'ap_fixed={expected[b]!r} quantize_np={got[b]!r}'
                )
    n_values = sum(x.size for x in inputs)
    print(
        f'ap_fixed oracle: {n_values} values x {len(MODES)} modes over {len(FORMATS)} formats '
        f'= {n_compared} comparisons, {n_bad} mismatches',
        file=sys.stderr,
    )
    assert n_values >= 100_000
    assert n_bad == 0, f'{n_bad} of {n_compared} values differ from ap_fixed; first ones:\n' + '\n'.join(mismatches)


# Hand-computed values: these hold without the C++ oracle.
# (x, k, i, f, round_mode, overflow_mode, expected)
# fmt: off
HAND_CASES = [
    # ap_fixed<3,3>: integers in [-4, 3]. Ties under each rounding mode.
    (2.5, 1, 2, 0, 'RND_CONV', 'WRAP', 2.0),
    (1.5, 1, 2, 0, 'RND_CONV', 'WRAP', 2.0),
    (-2.5, 1, 2, 0, 'RND_CONV', 'WRAP', -2.0),
    (2.5, 1, 2, 0, 'RND', 'WRAP', 3.0),
    (-2.5, 1, 2, 0, 'RND', 'WRAP', -2.0),  # half up, towards +inf
    (2.5, 1, 2, 0, 'RND_ZERO', 'WRAP', 2.0),
    (-2.5, 1, 2, 0, 'RND_ZERO', 'WRAP', -2.0),
    (2.5, 1, 2, 0, 'RND_INF', 'WRAP', 3.0),
    (-2.5, 1, 2, 0, 'RND_INF', 'WRAP', -3.0),
    (2.5, 1, 2, 0, 'RND_MIN_INF', 'WRAP', 2.0),
    (-2.5, 1, 2, 0, 'RND_MIN_INF', 'WRAP', -3.0),
    (-2.5, 1, 2, 0, 'TRN', 'WRAP', -3.0),
    (-2.5, 1, 2, 0, 'TRN_ZERO', 'WRAP', -2.0),
    (-2.75, 1, 2, 0, 'RND_ZERO', 'WRAP', -3.0),  # not a tie: nearest
    # Overflow in ap_fixed<3,3>.
    (5.0, 1, 2, 0, 'TRN', 'WRAP', -3.0),
    (3.5, 1, 2, 0, 'RND_CONV', 'WRAP', -4.0),  # rounds to 4, which wraps
    (3.5, 1, 2, 0, 'RND_CONV', 'SAT', 3.0),
    (-5.0, 1, 2, 0, 'TRN', 'SAT', -4.0),
    (-5.0, 1, 2, 0, 'TRN', 'SAT_SYM', -3.0),
    (-4.0, 1, 2, 0, 'TRN', 'SAT_SYM', -3.0),
    (-9.0, 1, 2, 0, 'TRN', 'WRAP', -1.0),
    # ap_ufixed<3,3>: integers in [0, 7].
    (9.0, 0, 3, 0, 'TRN', 'WRAP', 1.0),
    (-1.0, 0, 3, 0, 'TRN', 'WRAP', 7.0),
    (-1.0, 0, 3, 0, 'TRN', 'SAT', 0.0),
    (-1.0, 0, 3, 0, 'TRN', 'SAT_SYM', 0.0),
    (9.0, 0, 3, 0, 'TRN', 'SAT', 7.0),
    # ap_fixed<4,2>: step 0.25, range [-2, 1.75].
    (0.375, 1, 1, 2, 'RND_CONV', 'WRAP', 0.5),
    (0.125, 1, 1, 2, 'RND_CONV', 'WRAP', 0.0),
    (1.875, 1, 1, 2, 'TRN', 'WRAP', 1.75),
    (2.0, 1, 1, 2, 'TRN', 'WRAP', -2.0),
    (-0.1, 1, 1, 2, 'TRN', 'WRAP', -0.25),
    (-0.1, 1, 1, 2, 'TRN_ZERO', 'WRAP', 0.0),
    # ap_fixed<2,4> (f = -2): step 4, range [-8, 4].
    (6.0, 1, 3, -2, 'RND_CONV', 'WRAP', -8.0),
    (6.0, 1, 3, -2, 'RND_CONV', 'SAT', 4.0),
    (5.0, 1, 3, -2, 'RND', 'SAT', 4.0),
    # ap_fixed<2,-1> (i = -2, f = 3): step 1/8, range [-1/4, 1/8].
    (0.2, 1, -2, 3, 'RND', 'SAT', 0.125),
    (-0.3, 1, -2, 3, 'RND', 'WRAP', -0.25),
    (-0.4, 1, -2, 3, 'RND', 'WRAP', 0.125),  # rounds to code -3, which wraps to 1
    # ap_fixed<1,1>: one sign bit, values {-1, 0}; SAT_SYM cannot be symmetric there.
    (-1.0, 1, 0, 0, 'TRN', 'SAT', -1.0),
    (-3.0, 1, 0, 0, 'TRN', 'SAT_SYM', -1.0),
    (0.7, 1, 0, 0, 'TRN', 'SAT_SYM', 0.0),
    (1.0, 1, 0, 0, 'TRN', 'WRAP', -1.0),
    # Width <= 0: the constant 0.
    (3.7, 0, -1, 0, 'RND', 'SAT', 0.0),
    (-3.7, 1, -2, 0, 'TRN', 'WRAP', 0.0),
]
# fmt: on


def test_quantize_np_hand_values() -> None:
    """Hand-computed cases, in one test (each test pays the conftest's keras reset)."""
    wrong = []
    for x, k, i, f, round_mode, overflow_mode, expected in HAND_CASES:
        got = quantize_np(x, k, i, f, round_mode, overflow_mode)
        if not got == expected:
            wrong.append(
                f'quantize_np({x}, k={k}, i={i}, f={f}, {round_mode}, {overflow_mode}) = {got}, expected {expected}'
            )
    assert not wrong, '\n'.join(wrong)


def test_ap_prefix_accepted() -> None:
    assert quantize_np(2.5, 1, 2, 0, 'AP_RND_CONV', 'AP_WRAP') == 2.0
