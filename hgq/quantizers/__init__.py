"""Fixed-point math and trainable quantizers. Imports nothing else from hgq."""

from .fixed_point import FixedFormat, quantize_np, quantize_with
from .indexed import Description, IndexedFormat, indexed_format, indexed_quantize_with
from .modes import OVERFLOW_MODES, ROUND_MODES

__all__ = ['FixedFormat', 'IndexedFormat', 'Description', 'indexed_format', 'indexed_quantize_with',
           'quantize_np', 'quantize_with', 'OVERFLOW_MODES', 'ROUND_MODES']
