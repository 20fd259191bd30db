"""Backends: write a fixed-point graph (`hgq.ir.Graph`) out for hardware flows. Imports hgq.ir only.

`export_hls4ml(graph, output_dir, ...)`: an hls4ml project (HLS C++, C-simulation), bit-exact.
hls4ml itself is imported on first use (optional dependency: `pip install hgq[export]`).
`hgq.export.rtl` (import it directly): Verilog through da4ml, simulated with Verilator and
synthesized with Yosys; see docs/rtl.md.
"""

from .hls4ml import export_hls4ml

__all__ = ['export_hls4ml']
