"""The fixed-point graph of a calibrated model and its exact integer emulator. Knows no backend."""

from .analysis import TensorInfo, analyze, float32_inexact_nodes
from .emulator import FixedTensor, predict, run
from .from_keras import from_model
from .graph import Format, Graph, Node

__all__ = ['FixedTensor', 'Format', 'Graph', 'Node', 'TensorInfo', 'analyze', 'float32_inexact_nodes', 'from_model',
           'predict', 'run']
