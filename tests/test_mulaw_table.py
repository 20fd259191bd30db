"""μ-law tables: the indexed description agrees with the float64 companding formula on the input grid."""

import numpy as np
import pytest

from hgq.quantizers.fixed_point import FixedFormat
from hgq.quantizers.indexed import indexed_format
from hgq.quantizers.schemes.mulaw_table import mulaw_index_reference, mulaw_tables


@pytest.mark.parametrize('bits,mu,a', [(3, 255.0, 1.0), (4, 255.0, 2.5), (5, 10.0, 0.75)])
def test_indexed_matches_formula(bits: int, mu: float, a: float) -> None:
    t, lv = mulaw_tables(a, mu, bits)
    fmt = FixedFormat(np.array(1), np.array(3), np.array(12), 'TRN', 'SAT')
    d = indexed_format(fmt, t, lv, bits)
    x = fmt.quantize(np.arange(-2**15, 2**15) * 2.0 ** -12)
    ref = mulaw_index_reference(x, a, mu, bits)
    mismatches = int(np.sum(d.encode(x) != ref))
    assert mismatches == 0, f'{mismatches} indices differ from the float64 formula'
    assert np.all(np.diff(lv) > 0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match='bits >= 2'):
        mulaw_tables(1.0, 255.0, 1)
