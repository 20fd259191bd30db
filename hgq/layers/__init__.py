"""Keras 3 layers with learnable per-element fixed-point formats. Imports only hgq.quantizers."""

from . import asq as _asq  # noqa: F401  (registers scheme "asq")
from .activation import QActivation, QQuantize, QSoftmax
from .base import QLayer
from .batchnorm import QBatchNormalization, QConv1DBatchNorm, QConv2DBatchNorm, QDenseBatchNorm
from .linear import QConv1D, QConv2D, QDense
from .structure import (
    QAdd,
    QAveragePooling1D,
    QAveragePooling2D,
    QConcatenate,
    QFlatten,
    QMaxPooling1D,
    QMaxPooling2D,
    QReshape,
)

__all__ = [
    'QActivation', 'QAdd', 'QAveragePooling1D', 'QAveragePooling2D', 'QBatchNormalization', 'QConcatenate',
    'QConv1D', 'QConv1DBatchNorm', 'QConv2D', 'QConv2DBatchNorm', 'QDense', 'QDenseBatchNorm', 'QFlatten',
    'QLayer', 'QMaxPooling1D', 'QMaxPooling2D', 'QQuantize', 'QReshape', 'QSoftmax',
]
