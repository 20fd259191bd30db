"""The keras.ops path of the fixed-point math equals the exact numpy reference, value for value."""

import itertools

import numpy as np
import pytest
from keras import ops

from hgq.quantizers.fixed_point import (
    ceil_log2_np,
    ceil_log2_ops,
    integer_bits_of_range,
    integer_bits_of_values,
    quantize_np,
    quantize_with,
)
from hgq.quantizers.modes import OVERFLOW_MODES, ROUND_MODES, check_round_mode

RNG = np.random.default_rng(7)


def float32_exact_inputs(n: int) -> np.ndarray:
    """Values on a 2^-10 grid within ±64 (exact in float32), with ties and overflowing magnitudes."""
    codes = RNG.integers(-(2**16), 2**16, size=n)
    return (codes * 2.0**-10).astype(np.float32)


@pytest.mark.parametrize('round_mode,overflow_mode', list(itertools.product(ROUND_MODES, OVERFLOW_MODES)))
def test_ops_quantize_equals_numpy(round_mode, overflow_mode):
    x = float32_exact_inputs(4096)
    k = RNG.integers(0, 2, size=x.shape).astype(np.float32)
    i = RNG.integers(-3, 6, size=x.shape).astype(np.float32)
    f = RNG.integers(-2, 9, size=x.shape).astype(np.float32)
    expected = quantize_np(x, k, i, f, round_mode, overflow_mode)
    got = ops.convert_to_numpy(quantize_with(ops, ops.convert_to_tensor(x), k, i, f, round_mode, overflow_mode))
    mismatches = int(np.sum(got.astype(np.float64) != expected))
    assert mismatches == 0, f'{mismatches} mismatches for {round_mode}/{overflow_mode}'


def test_hand_computed_values():
    x = [0.3, -0.3, 2.5, -2.5, 7.9, -9.0]
    assert quantize_np(x, 1, 2, 1, 'RND', 'WRAP').tolist() == [0.5, -0.5, 2.5, -2.5, 0.0, -1.0]
    assert quantize_np(x, 1, 2, 1, 'RND', 'SAT').tolist() == [0.5, -0.5, 2.5, -2.5, 3.5, -4.0]
    assert quantize_np(x, 1, 2, 1, 'TRN', 'SAT_SYM').tolist() == [0.0, -0.5, 2.5, -2.5, 3.5, -3.5]
    assert quantize_np([2.5, 3.5, -2.5], 1, 3, 0, 'RND_CONV', 'WRAP').tolist() == [2.0, 4.0, -2.0]
    assert quantize_np([1.0, 3.0], 0, 1, 0, 'TRN', 'WRAP').tolist() == [1.0, 1.0]  # 3 wraps mod 2
    assert quantize_np([5.0], 1, -2, 1, 'TRN', 'WRAP').tolist() == [0.0]  # width 0: pruned


def test_quantize_np_rejects_nan_and_bad_formats():
    with pytest.raises(ValueError, match='NaN/Inf'):
        quantize_np([1.0, np.nan], 1, 3, 2)
    with pytest.raises(ValueError, match='k'):
        quantize_np([1.0], 2, 3, 2)
    with pytest.raises(ValueError, match='round_mode'):
        check_round_mode('ROUND_UP')


def test_ceil_log2_ops_is_exact():
    powers = 2.0 ** np.arange(-60, 60)
    v = np.concatenate([powers, powers * 1.0000001, powers * 0.9999999, RNG.uniform(1e-6, 1e6, 5000)])
    v = v.astype(np.float32)
    got = ops.convert_to_numpy(ceil_log2_ops(ops, ops.convert_to_tensor(v)))
    assert np.array_equal(got.astype(np.int64), ceil_log2_np(v.astype(np.float64)))


def test_integer_bits_hold_values_exactly():
    f = RNG.integers(-2, 8, size=3000).astype(np.float64)
    q = np.round(RNG.normal(0, 8, size=3000) * 2.0**f) * 2.0**-f
    k, i = integer_bits_of_values(np, q, f, ceil_log2_np)
    # narrowest: the value fits with (k, i) and would not fit with i - 1
    assert np.array_equal(quantize_np(q, k, i, f, 'TRN', 'WRAP'), q)
    nonzero = q != 0
    narrower = quantize_np(q, k, i - 1, f, 'TRN', 'WRAP')
    assert np.all(narrower[nonzero] != q[nonzero])
    assert np.all(k + i + f == np.where(nonzero, k + i + f, 0))
    assert np.all((k + i + f)[~nonzero] == 0)
    got_k, got_i = (ops.convert_to_numpy(t) for t in integer_bits_of_values(
        ops, ops.convert_to_tensor(q.astype(np.float32)), f.astype(np.float32), lambda v: ceil_log2_ops(ops, v)))
    assert np.array_equal(got_k, k) and np.array_equal(got_i, i)


def test_integer_bits_of_range_covers_range():
    lo = np.array([-1.0, 0.0, -0.25, 0.0, -3.0])
    hi = np.array([0.0, 0.75, 0.5, 0.0, 3.0])
    f = np.full(5, 2.0)
    k, i = integer_bits_of_range(np, lo, hi, f, ceil_log2_np)
    assert k.tolist() == [1, 0, 1, 0, 1]
    assert i.tolist() == [0, 0, 0, -2, 2]  # [-1, 0.75]; [0, 0.75]; [-1, 0.75]; pruned; [-4, 3.75]
