"""The fixed-point graph of a calibrated model and its exact integer emulator. Knows no backend."""

from .emulator import FixedTensor, predict, run
from .from_keras import from_model
from .graph import Format, Graph, Node

__all__ = ['FixedTensor', 'Format', 'Graph', 'Node', 'from_model', 'predict', 'run']
