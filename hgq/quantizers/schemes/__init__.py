"""Built-in quantization schemes beyond HGQ; each module registers itself (see ../registry.py).

Each scheme implements the protocol of ../base.py and describes itself exactly (FixedFormat or
IndexedFormat); docs/quantizers.md gives each one's definition and source.
"""

from . import (
    augq,  # noqa: F401  (registers 'augq')
    lsq,  # noqa: F401  (registers 'lsq')
    mulaw,  # noqa: F401  (registers 'mulaw')
    post,  # noqa: F401  (registers 'post')
    pwlq,  # noqa: F401  (registers 'pwlq')
    table,  # noqa: F401  (TableQuantizer: Keras-serializable, not a training scheme)
)
