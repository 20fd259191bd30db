"""hls4ml layers for the IR ops hls4ml lacks (`encode`, `decode`, `scaled_encode`, a product with a per-sample
scalar), backed by our own C++ in hls_templates/.

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
ADAPTIVE_HEADER = TEMPLATE_DIR / 'hgq_adaptive.h'
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
_SCALED_ENCODE_CONFIG = """struct config{index} {{
    static const unsigned n_in = {n_in};
    static const unsigned n_thresholds = {n_thresholds};
    static const int offset = {offset};
    static const int step_exponent = {step_exponent};
    static const int code_bits = {code_bits};
    typedef {coefficient_t} coefficient_t;
}};\n"""
_SCALE_CONFIG = """struct config{index} {{
    static const unsigned n_in = {n_in};
}};\n"""


def register() -> None:
    """Teach hls4ml the two layers, their templates and our header (once per process)."""
    global _registered
    if _registered:
        return
    if not (HEADER.is_file() and ADAPTIVE_HEADER.is_file()):
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

    class HGQScaledEncode(Layer):
        _expected_attributes = [Attribute('n_in'), Attribute('n_thresholds'), Attribute('offset'),
                                Attribute('step_exponent'), Attribute('code_bits'), WeightAttribute('coefficients')]

        def initialize(self) -> None:
            inp = self.get_input_variable(self.inputs[0])
            self.add_output_variable(inp.shape)
            self.set_attr('n_in', inp.size())
            self.add_weights_variable(name='coefficients', var_name='c{index}')

    class HGQScale(Layer):
        _expected_attributes = [Attribute('n_in')]

        def initialize(self) -> None:
            inp = self.get_input_variable(self.inputs[0])
            self.add_output_variable(inp.shape)
            self.set_attr('n_in', inp.size())

    class ScaledEncodeConfig(LayerConfigTemplate):
        def __init__(self) -> None:
            super().__init__(HGQScaledEncode)
            self.template = _SCALED_ENCODE_CONFIG

        def format(self, node: Any) -> str:
            return self.template.format(index=node.index, coefficient_t=node.get_weights('coefficients').type.name,
                                        **{k: node.get_attr(k) for k in ('n_in', 'n_thresholds', 'offset',
                                                                         'step_exponent', 'code_bits')})

    class ScaleConfig(LayerConfigTemplate):
        def __init__(self) -> None:
            super().__init__(HGQScale)
            self.template = _SCALE_CONFIG

        def format(self, node: Any) -> str:
            return self.template.format(index=node.index, n_in=node.get_attr('n_in'))

    def two_input_call(layer_cls: type, function: str, weight: str | None) -> type:
        class Call(FunctionCallTemplate):
            def __init__(self) -> None:
                super().__init__(layer_cls, include_header=[f'nnet_utils/{ADAPTIVE_HEADER.name}'])

            def format(self, node: Any) -> str:
                x, beta = (node.get_input_variable(name) for name in node.inputs[:2])
                out = node.get_output_variable()
                extra = f', {node.get_weights(weight).name}' if weight else ''
                return (f'nnet::{function}<{x.type.name}, {beta.type.name}, {out.type.name}, config{node.index}>'
                        f'({x.name}, {beta.name}, {out.name}{extra});')

        return Call

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
    hls4ml.model.layers.register_layer('HGQScaledEncode', HGQScaledEncode)
    hls4ml.model.layers.register_layer('HGQScale', HGQScale)
    for name in BACKENDS:
        backend = hls4ml.backends.get_backend(name)
        backend.register_template(config_template(HGQEncode, _ENCODE_CONFIG, 'thresholds', 'threshold_t',
                                                  'n_thresholds'))
        backend.register_template(config_template(HGQDecode, _DECODE_CONFIG, 'levels', 'level_t', 'n_levels'))
        backend.register_template(call_template(HGQEncode, 'hgq_encode', 'thresholds'))
        backend.register_template(call_template(HGQDecode, 'hgq_decode', 'levels'))
        backend.register_source(HEADER)
        backend.register_template(ScaledEncodeConfig)
        backend.register_template(ScaleConfig)
        backend.register_template(two_input_call(HGQScaledEncode, 'hgq_scaled_encode', 'coefficients'))
        backend.register_template(two_input_call(HGQScale, 'hgq_scale', None))
        backend.register_source(ADAPTIVE_HEADER)
    _registered = True
