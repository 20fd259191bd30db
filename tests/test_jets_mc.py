"""The Monte-Carlo jets data: feature maths on hand-computed jets, the shipped file, and a tiny real generation.

Generation needs the optional extra (pythia8mc + fastjet); without it those tests skip with the install command.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

JETS_DIR = Path(__file__).parents[1] / 'projects' / 'jets'
SHIPPED = JETS_DIR / 'data' / 'jets_100k.npz'


def _load_jets_mc():
    spec = importlib.util.spec_from_file_location('jets_mc', JETS_DIR / 'jets_mc.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules['jets_mc'] = module  # multiprocessing workers pickle functions by module name
    spec.loader.exec_module(module)
    return module


jets_mc = _load_jets_mc()
F = {name: i for i, name in enumerate(jets_mc.FEATURE_NAMES)}


def _massless(pt: list[float], y: list[float], phi: list[float]) -> np.ndarray:
    pt, y, phi = (np.asarray(v, np.float64) for v in (pt, y, phi))
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(y), pt * np.cosh(y)], axis=1)


# A 3-4-5 triangle in (y, phi) across the phi = +-pi seam: R12 = 0.3, R13 = 0.4, R23 = 0.5; z = 1/4, 1/4, 1/2.
THREE = _massless([1.0, 1.0, 2.0], [0.0, 0.3, 0.0], [math.pi - 0.2, math.pi - 0.2, -math.pi + 0.2])
ZZZ = 0.25 * 0.25 * 0.5


def test_ecfs_of_three_particles_by_hand():
    pt, y, phi = jets_mc.kinematics(THREE)
    z = pt / pt.sum()
    r = jets_mc.delta_r_matrix(y, phi)
    np.testing.assert_allclose(r[[0, 0, 1], [1, 2, 2]], [0.3, 0.4, 0.5], rtol=1e-12)
    assert jets_mc.ecf2(z, r, 0.0) == pytest.approx(0.0625 + 0.125 + 0.125, rel=1e-12)
    assert jets_mc.ecf2(z, r, 1.0) == pytest.approx(0.0625 * 0.3 + 0.125 * 0.4 + 0.125 * 0.5, rel=1e-12)
    assert jets_mc.ecf2(z, r, 2.0) == pytest.approx(0.0625 * 0.09 + 0.125 * 0.16 + 0.125 * 0.25, rel=1e-12)
    e3 = jets_mc.ecf3(z, r, (1.0, 2.0))
    expected = {1: 0.3, 2: 0.3 * 0.4, 3: 0.3 * 0.4 * 0.5}  # product of the v smallest angles
    for v, prod in expected.items():
        assert e3[(v, 1.0)] == pytest.approx(ZZZ * prod, rel=1e-12)
        assert e3[(v, 2.0)] == pytest.approx(ZZZ * prod**2, rel=1e-12)


def test_ecf3_large_jet_matches_brute_force():
    """The k-by-k pass (k >= 48) against a plain triple loop over all triplets."""
    rng = np.random.default_rng(0)
    n = 60
    z = rng.exponential(size=n)
    z /= z.sum()
    y, phi = rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)
    r = jets_mc.delta_r_matrix(y, phi)
    i, j, k = np.array([(i, j, k) for i in range(n) for j in range(i + 1, n) for k in range(j + 1, n)]).T
    angles = np.sort(np.stack([r[i, j], r[i, k], r[j, k]]), axis=0)
    w = z[i] * z[j] * z[k]
    e3 = jets_mc.ecf3(z, r, (1.0, 2.0))
    for v in (1, 2, 3):
        prod = np.prod(angles[:v], axis=0)
        for beta in (1.0, 2.0):
            assert e3[(v, beta)] == pytest.approx(float(np.sum(w * prod**beta)), rel=1e-11)


def test_jet_features_by_hand():
    x = jets_mc.jet_features(THREE, THREE)
    e2 = {1: 0.13125, 2: 0.056875}
    e3 = {(v, b): ZZZ * p**b for v, p in ((1, 0.3), (2, 0.12), (3, 0.06)) for b in (1, 2)}
    expected = {
        'zlogz': 2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5),
        'c1_b0_mmdt': 0.3125,
        'c1_b1_mmdt': e2[1],
        'c1_b2_mmdt': e2[2],
        'c2_b1_mmdt': e3[(3, 1)] / e2[1] ** 2,
        'c2_b2_mmdt': e3[(3, 2)] / e2[2] ** 2,
        'd2_b1_mmdt': e3[(3, 1)] / e2[1] ** 3,
        'd2_b2_mmdt': e3[(3, 2)] / e2[2] ** 3,
        'd2_a1_b1_mmdt': e3[(3, 1)] / e2[1] ** 3,
        'd2_a1_b2_mmdt': e3[(3, 1)] / e2[2] ** 1.5,
        'm2_b1_mmdt': e3[(1, 1)] / e2[1],
        'm2_b2_mmdt': e3[(1, 2)] / e2[2],
        'n2_b1_mmdt': e3[(2, 1)] / e2[1] ** 2,
        'n2_b2_mmdt': e3[(2, 2)] / e2[2] ** 2,
        'multiplicity': 3.0,
    }
    for name, value in expected.items():
        assert x[F[name]] == pytest.approx(value, rel=1e-10), name
    p = THREE.sum(axis=0)
    assert x[F['mass_mmdt']] == pytest.approx(math.sqrt(p[3] ** 2 - p[0] ** 2 - p[1] ** 2 - p[2] ** 2), rel=1e-10)


def test_degenerate_groomed_jets_are_finite():
    """One groomed constituent: every ratio is 0/0 and is set to 0; two: the 3-point ECFs vanish exactly."""
    one = jets_mc.jet_features(THREE[:1], THREE)
    two = jets_mc.jet_features(THREE[:2], THREE)
    ratios = [n for n in jets_mc.FEATURE_NAMES if n[:2] in ('c2', 'd2', 'm2', 'n2')]
    for x in (one, two):
        assert np.all(np.isfinite(x))
        assert all(x[F[n]] == 0.0 for n in ratios)
        assert x[F['multiplicity']] == 3.0
    assert one[F['c1_b0_mmdt']] == 0.0 and one[F['mass_mmdt']] == 0.0
    assert two[F['c1_b1_mmdt']] == pytest.approx(0.5 * 0.5 * 0.3)


def test_shipped_dataset():
    assert SHIPPED.is_file(), f'{SHIPPED} missing: python projects/jets/generate.py --jets-per-class 20000 ...'
    assert SHIPPED.stat().st_size <= 10 * 2**20
    with np.load(SHIPPED, allow_pickle=False) as f:
        x, y = f['x'], f['y']
        assert [str(s) for s in f['feature_names']] == list(jets_mc.FEATURE_NAMES)
        assert [str(s) for s in f['class_names']] == list(jets_mc.CLASS_NAMES)
        settings = json.loads(str(f['settings']))
    assert x.dtype == np.float32 and y.dtype == np.int8
    assert x.shape == (len(y), 16) and len(y) >= 100_000
    assert np.all(np.isfinite(x))
    fractions = np.bincount(y, minlength=5) / len(y)
    assert len(fractions) == 5 and np.all(fractions >= 0.15)
    assert settings['seed'] == 0 and settings['jets_per_class'] * 5 == len(y)
    assert 'pythia8mc' in settings['versions'] and settings['grooming']['zcut'] == 0.1


def _require_generators():
    try:
        jets_mc._require_generators()
    except ImportError:
        pytest.skip(f'optional jets extra missing: {jets_mc.PIP_HINT}')


@pytest.fixture(scope='module')
def tiny():
    """20 jets per class, all in one process (about 10 s)."""
    _require_generators()
    return jets_mc.generate(20, seed=7, procs=1, chunk_size=20)


def test_tiny_generation(tiny):
    x, y, stats = tiny
    assert x.shape == (100, 16) and x.dtype == np.float32 and y.dtype == np.int8
    assert np.all(np.isfinite(x))
    assert set(np.unique(y)) == set(range(5)) and np.all(np.bincount(y) == 20)
    mass = {c: np.median(x[y == i, F['mass_mmdt']]) for i, c in enumerate(jets_mc.CLASS_NAMES)}
    assert 65 <= mass['w'] <= 95
    assert 75 <= mass['z'] <= 105
    assert mass['t'] > mass['g']
    mult = x[:, F['multiplicity']]
    assert np.all(mult >= 1) and np.all(mult == np.round(mult))
    assert np.array_equal(x[:, F['d2_a1_b1_mmdt']], x[:, F['d2_b1_mmdt']])  # identical by definition
    assert all(s['events'] >= 20 for s in stats.values())


def test_same_seed_same_jets(tiny):
    """A chunk rebuilt on its own from its derived seed gives bit-identical features."""
    x, _, _ = tiny
    again = jets_mc.generate_chunk(2, 20, jets_mc.chunk_seed(7, 2, 0))[0].astype(np.float32)
    # the file's rows are x_sorted[order] with rows sorted by (class, chunk): the W chunk is x_sorted[40:60]
    order = np.random.default_rng([7, jets_mc.SHUFFLE_STREAM]).permutation(100)
    w = x[np.argsort(order)[40:60]]
    assert np.array_equal(w, again)
