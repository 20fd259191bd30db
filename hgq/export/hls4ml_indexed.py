"""hls4ml layers for the IR's `encode` and `decode` ops, backed by our own C++ in hls_templates/.

hls4ml 1.3 has no per-element threshold comparison or per-element level table (its `UnaryLUT` holds
one table for a whole layer, indexed by raw input bits), so we register two small layers through
hls4ml's extension API: `HGQEncode` (thresholds as a weight array, n_in × n_thresholds) and
`HGQDecode` (levels as a weight array, n_in × n_levels), each with a config struct and a call into
`hls_templates/hgq_indexed.h`. Registration is idempotent and happens right before a project that
needs it is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / 'hls_templates'
HEADER = TEMPLATE_DIR / 'hgq_indexed.h'
BACKENDS = ('Vitis', 'Vivado')
_registered = False

_ENCODE_CONFIG = """struct config{index} {{
    static const unsigned n_in = {n_in};
    static const unsigned n_thresholds = {n_thresholds};
    typedef {threshold_t} threshold_t;
}};\n"""
_DECODE_CONFIG = """struct config{index} {{
    static const unsigned n_in = {n_in};
    static const unsigned n_levels = {n_levels};
    typedef {level_t} level_t;
}};\n"""


def register() -> None:
    """Teach hls4ml the two layers, their templates and our header (once per process)."""
    global _registered
    if _registered:
        return
    if not HEADER.is_file():
        raise FileNotFoundError(f'{HEADER} is missing: hgq exports indexed quantizers to hls4ml with its own C++ '
                                'from the hls_templates/ folder of the hgq source tree; reinstall hgq from source')
    import hls4ml
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    from hls4ml.model.attributes import Attribute, WeightAttribute
    from hls4ml.model.layers import Layer

    class HGQEncode(Layer):
        _expected_attributes = [Attribute('n_in'), Attribute('n_thresholds'), WeightAttribute('thresholds')]

        def initialize(self) -> None:
            inp = self.get_input_variable()
            self.add_output_variable(inp.shape)
            self.set_attr('n_in', inp.size())
            self.add_weights_variable(name='thresholds', var_name='t{index}')

    class HGQDecode(Layer):
        _expected_attributes = [Attribute('n_in'), Attribute('n_levels'), WeightAttribute('levels')]

        def initialize(self) -> None:
            inp = self.get_input_variable()
            self.add_output_variable(inp.shape)
            self.set_attr('n_in', inp.size())
            self.add_weights_variable(name='levels', var_name='lv{index}')

    def config_template(layer_cls: type, text: str, weight: str, type_key: str, count: str) -> type:
        class Config(LayerConfigTemplate):
            def __init__(self) -> None:
                super().__init__(layer_cls)
                self.template = text

            def format(self, node: Any) -> str:
                return self.template.format(index=node.index, n_in=node.get_attr('n_in'),
                                            **{count: node.get_attr(count)},
                                            **{type_key: node.get_weights(weight).type.name})

        return Config

    def call_template(layer_cls: type, function: str, weight: str) -> type:
        class Call(FunctionCallTemplate):
            def __init__(self) -> None:
                super().__init__(layer_cls, include_header=[f'nnet_utils/{HEADER.name}'])
                self.template = f'nnet::{function}<{{input_t}}, {{output_t}}, {{config}}>({{input}}, {{output}}, ' \
                                '{weights});'

            def format(self, node: Any) -> str:
                params = self._default_function_params(node)
                params['config'] = f'config{node.index}'
                params['weights'] = node.get_weights(weight).name
                return self.template.format(**params)

        return Call

    hls4ml.model.layers.register_layer('HGQEncode', HGQEncode)
    hls4ml.model.layers.register_layer('HGQDecode', HGQDecode)
    for name in BACKENDS:
        backend = hls4ml.backends.get_backend(name)
        backend.register_template(config_template(HGQEncode, _ENCODE_CONFIG, 'thresholds', 'threshold_t',
                                                  'n_thresholds'))
        backend.register_template(config_template(HGQDecode, _DECODE_CONFIG, 'levels', 'level_t', 'n_levels'))
        backend.register_template(call_template(HGQEncode, 'hgq_encode', 'thresholds'))
        backend.register_template(call_template(HGQDecode, 'hgq_decode', 'levels'))
        backend.register_source(HEADER)
    _registered = True
