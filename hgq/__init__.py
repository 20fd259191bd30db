"""hgq: train neural networks with learned per-weight and per-activation fixed-point formats."""
