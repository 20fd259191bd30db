"""QKeras import: quantizer formats match QKeras' formula (read in qkeras 0.9 quantizers.py), a legacy
.h5 built here with h5py imports and computes the QKeras values, and unsupported features are refused."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from hgq.importers.qkeras import QKerasImportError, import_qkeras, qkeras_format, quantize_qkeras_np


def _qkeras_bits(x, bits, integer, keep_negative=1, symmetric=0):
    """QKeras 0.9 quantized_bits (alpha=None) transcribed: m_i * clip(round(x*m/m_i), lo, m-1) / m."""
    m, m_i = 2.0 ** (bits - keep_negative), 2.0 ** integer
    return m_i * np.clip(np.round(x * m / m_i), keep_negative * (-m + symmetric), m - 1) / m


@pytest.mark.parametrize('bits,integer,keep_negative,symmetric', [(8, 0, 1, 0), (6, 2, 1, 1), (4, 1, 0, 0)])
def test_quantized_bits_format(bits: int, integer: int, keep_negative: int, symmetric: int) -> None:
    x = np.random.default_rng(0).uniform(-6, 6, 5000)
    x[:50] = np.arange(50) * 2.0 ** (integer - bits)  # exact halves: half-to-even matters
    spec = f'quantized_bits({bits},{integer},{symmetric},keep_negative={keep_negative},alpha=1)'
    fmt = qkeras_format('d', 'kernel_quantizer', spec)
    assert int(np.sum(quantize_qkeras_np(x, fmt) != _qkeras_bits(x, bits, integer, keep_negative, symmetric))) == 0


def _write_h5(path, layers, weights):
    with h5py.File(path, 'w') as h:
        h.attrs['model_config'] = json.dumps({'class_name': 'Sequential', 'config': {'layers': layers}})
        g = h.create_group('model_weights')
        for name, arrays in weights.items():
            lg = g.create_group(name)
            names = [f'{name}/{k}:0' for k in ('kernel', 'bias')][:len(arrays)]
            lg.attrs['weight_names'] = [n.encode() for n in names]
            for n, a in zip(names, arrays):
                lg.create_dataset(n, data=a)


def test_h5_dense_imports_exactly(tmp_path) -> None:
    rng = np.random.default_rng(1)
    kernel, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 4]}},
              {'class_name': 'QActivation', 'config': {'name': 'qin', 'activation': 'quantized_bits(8,3,alpha=1)'}},
              {'class_name': 'QDense', 'config': {'name': 'd', 'units': 3, 'use_bias': True, 'activation': None,
                                                  'kernel_quantizer': 'quantized_bits(6,0,alpha=1)',
                                                  'bias_quantizer': 'quantized_bits(6,0,alpha=1)'}},
              {'class_name': 'QActivation', 'config': {'name': 'r', 'activation': 'quantized_relu(6,2)'}}]
    _write_h5(tmp_path / 'm.h5', layers, {'d': [kernel, bias]})
    model = import_qkeras(tmp_path / 'm.h5')
    x = rng.uniform(-8, 8, (256, 4)).astype('float32')
    xq = _qkeras_bits(x, 8, 3)
    y = xq @ _qkeras_bits(kernel, 6, 0) + _qkeras_bits(bias, 6, 0)
    ref = _qkeras_bits(np.maximum(y, 0), 6, 2, keep_negative=0)
    got = np.asarray(model(x))
    assert int(np.sum(got != ref)) == 0


@pytest.mark.parametrize('layer,match', [
    ({'class_name': 'QSimpleRNN', 'config': {'name': 'rnn', 'batch_input_shape': [None, 4]}}, 'rnn: layer QSimpleRNN'),
    ({'class_name': 'QActivation', 'config': {'name': 'a', 'batch_input_shape': [None, 4],
                                              'activation': 'quantized_bits(8,0,1,alpha="auto_po2")'}},
     'a: activation.*alpha'),
    ({'class_name': 'QActivation', 'config': {'name': 'u', 'batch_input_shape': [None, 4],
                                              'activation': 'quantized_ulaw(8,0)'}},
     'u: activation: quantized_ulaw'),
    ({'class_name': 'QActivation', 'config': {'name': 's', 'batch_input_shape': [None, 4],
                                              'activation': 'quantized_bits(8,0,use_stochastic_rounding=True)'}},
     's: activation: use_stochastic'),
])
def test_unsupported_is_refused(tmp_path, layer, match) -> None:
    _write_h5(tmp_path / 'm.h5', [layer], {})
    with pytest.raises(QKerasImportError, match=match):
        import_qkeras(tmp_path / 'm.h5')


def test_not_a_model_file(tmp_path) -> None:
    (tmp_path / 'x.h5').write_text('junk')
    with pytest.raises(QKerasImportError, match='neither a .keras zip nor an HDF5'):
        import_qkeras(tmp_path / 'x.h5')


def test_cli_writes_model_and_refuses_junk(tmp_path) -> None:
    from hgq.cli import main

    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 2]}},
              {'class_name': 'QActivation', 'config': {'name': 'q', 'activation': 'quantized_bits(4,1)'}}]
    _write_h5(tmp_path / 'm.h5', layers, {})
    assert main(['import-qkeras', str(tmp_path / 'm.h5'), str(tmp_path / 'o.keras')]) == 0
    from hgq.workflow.files import load_checkpoint

    x = np.array([[0.375, -5.0], [1.125, 0.625]], dtype='float32')  # ties at step 0.25 and clipping
    got = np.asarray(load_checkpoint(tmp_path / 'o.keras')(x))
    assert int(np.sum(got != _qkeras_bits(x, 4, 1))) == 0
    (tmp_path / 'bad.h5').write_text('junk')
    assert main(['import-qkeras', str(tmp_path / 'bad.h5'), str(tmp_path / 'p.keras')]) == 2
    assert not (tmp_path / 'p.keras').exists()


def test_dense_on_float_input_is_refused(tmp_path) -> None:
    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 2]}},
              {'class_name': 'QDense', 'config': {'name': 'd', 'units': 1, 'activation': None,
                                                  'kernel_quantizer': 'quantized_bits(4,0)',
                                                  'bias_quantizer': 'quantized_bits(4,0)'}}]
    _write_h5(tmp_path / 'm.h5', layers, {'d': [np.ones((2, 1)), np.zeros(1)]})
    with pytest.raises(QKerasImportError, match='d: its input is not quantized'):
        import_qkeras(tmp_path / 'm.h5')


@pytest.mark.parametrize('spec, match', [
    ('quantized_bits(4,0,alpha=1,qnoise_factor=0.5)', 'qnoise_factor=0.5'),
    ('quantized_relu(4,0,relu_upper_bound=0.5)', 'relu_upper_bound'),
    ({'class_name': 'quantized_bits', 'config': {'bits': 4, 'post_training_scale': [2.0]}}, 'post_training_scale'),
    ('quantized_bits(4,0,new_option=3)', "argument 'new_option' is not known"),
])
def test_arguments_that_change_the_forward_are_refused(spec, match) -> None:
    with pytest.raises(QKerasImportError, match=match):
        qkeras_format('layer d', 'kernel_quantizer', spec)


def test_arguments_that_only_change_gradients_are_accepted() -> None:
    plain = qkeras_format('d', 'q', 'quantized_bits(6,1,alpha=1)')
    assert qkeras_format('d', 'q', 'quantized_bits(6,1,alpha=1,use_ste=False,qnoise_factor=1.0)') == plain
    assert qkeras_format('d', 'q', 'quantized_relu(4,1,is_quantized_clip=False)') == (0, 1, 3, 'SAT')


# ---------------------------------------------------------------- real QKeras files (tests/fixtures/qkeras)
# Written once by tests/fixtures/qkeras/make_fixtures.py in the QKeras peer venvs; nothing here imports QKeras.

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

FIXTURES = Path(__file__).parent / 'fixtures' / 'qkeras'
_spec = importlib.util.spec_from_file_location('qkeras_fixture_inputs', FIXTURES / 'inputs.py')
fixture_inputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture_inputs)
REFERENCES = sorted(p.stem for p in FIXTURES.glob('*.npz'))


def _model_file(stem: str) -> Path:
    return FIXTURES / (f'{stem}.h5' if stem.startswith('keras2') else f'{stem}.keras')


def load_reference(stem: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(inputs regenerated from the recipe, QKeras outputs as float32, recipe), both checked by SHA-256."""
    z = np.load(FIXTURES / f'{stem}.npz')
    recipe = json.loads(str(z['recipe']))
    x = fixture_inputs.make_inputs(recipe['seed'], recipe['n'], tuple(recipe['shape']), recipe['narrow'],
                                   recipe['wide'], recipe['lsb_exp'])
    y = np.ldexp(z['y_codes'].astype(np.float64), -int(z['y_exp'])).astype(np.float32)
    assert fixture_inputs.digest(x) == recipe['sha256'], f'{stem}: regenerated inputs differ from the fixture run'
    assert fixture_inputs.digest(y) == recipe['y_sha256'], f'{stem}: decoded outputs differ from QKeras bytes'
    return x, y, recipe


def test_fixture_set_covers_the_issue() -> None:
    """≥5 reference models per file kind, each with ≥10,000 inputs of which some clip the first quantizer."""
    for flavour in ('keras2', 'keras3'):
        assert len([s for s in REFERENCES if s.startswith(flavour)]) >= 5
    for stem in REFERENCES:
        x, _, recipe = load_reference(stem)
        assert len(x) >= 10_000 and recipe['wide'] > recipe['narrow']


@pytest.mark.parametrize('stem', REFERENCES)
def test_imported_fixture_equals_qkeras(stem: str) -> None:
    x, y, _ = load_reference(stem)
    model = import_qkeras(_model_file(stem))
    got = np.asarray(model(x, training=False))
    assert got.shape == y.shape
    mismatches = int(np.sum(got != y))
    assert mismatches == 0, f'{stem}: {mismatches} of {y.size} outputs differ from QKeras'


@pytest.mark.parametrize('flavour', ['keras2', 'keras3'])
def test_real_qbatchnormalization_is_refused(flavour: str) -> None:
    ext = 'h5' if flavour == 'keras2' else 'keras'
    match = (r"bn: layer QBatchNormalization is not supported: QKeras multiplies the outputs of 'd1' .*float32.*"
             r'folding inv into the weights .*QDenseBatchnorm')
    with pytest.raises(QKerasImportError, match=match):
        import_qkeras(FIXTURES / f'{flavour}_qbn_refused.{ext}')


def test_imported_weights_are_the_qkeras_quantized_ones() -> None:
    """po2 alpha: per-channel scales show up in the stored kernel (alpha=[0.25, 0.5, 1, 2, ...] on d2)."""
    model = import_qkeras(_model_file('keras3_mlp_b4_po2'))
    kernel = np.asarray(model.get_layer('d2').kernel, np.float64)
    alpha = np.array([0.25, 0.5, 1.0, 2.0, 0.5, 1.0, 0.25, 2.0])
    codes = kernel / alpha * 2 ** 3  # quantized_bits(4, 0): step 2^-3, codes in [-8, 7]
    assert np.all(codes == np.round(codes)) and codes.min() >= -8 and codes.max() <= 7
    assert np.unique(np.abs(kernel)[:, 3]).max() > 1  # alpha=2 channel really exceeds the alpha=1 range


def test_imported_cnn_through_emulator_and_hls4ml(tmp_path) -> None:
    """The imported CNN in our flow: IR emulator == hls4ml C-sim == Keras == QKeras on all 10,000 inputs.
    RTL: while da4ml has no RND_CONV, write_rtl refuses with a clear error (asserted); once it accepts,
    Verilator must match too."""
    from exactness import require_tools

    import hgq.ir as ir
    from hgq.export.hls4ml import export_hls4ml

    require_tools()
    x, y, _ = load_reference('keras2_cnn1d_b3')
    model = import_qkeras(_model_file('keras2_cnn1d_b3'))
    graph = ir.from_model(model)
    xs = x.astype(np.float64)
    want = np.asarray(ir.predict(graph, xs), np.float64).reshape(y.shape)
    hls = export_hls4ml(graph, tmp_path / 'hls4ml', project_name='qk_cnn1d')
    got = {'qkeras': y, 'keras': np.asarray(model(x, training=False)),
           'hls4ml': np.asarray(hls.predict(np.ascontiguousarray(xs))).reshape(y.shape)}
    try:
        from hgq.export.rtl import write_rtl

        rtl = write_rtl(graph, tmp_path / 'rtl', 'qk_cnn1d').write().compile()
    except NotImplementedError as err:
        assert 'RND_CONV' in str(err)
    else:
        got['verilator'] = np.asarray(rtl.predict(xs)).reshape(y.shape)
    counts = {k: int(np.sum(v != want)) for k, v in got.items()}
    assert counts == dict.fromkeys(got, 0), counts


_QIN = {'class_name': 'QActivation', 'config': {'name': 'qin', 'activation': 'quantized_bits(6,2,alpha=1)'}}


@pytest.mark.parametrize('shape, layer, match', [
    ([None, 8, 4], {'class_name': 'QConv1D', 'config': {
        'name': 'c', 'filters': 2, 'kernel_size': [3], 'dilation_rate': [2], 'padding': 'valid',
        'kernel_quantizer': 'quantized_bits(4,0)', 'bias_quantizer': 'quantized_bits(4,0)'}},
     'c: layer QConv1D with dilation_rate'),
    ([None, 8, 4], {'class_name': 'QConv1D', 'config': {
        'name': 'c', 'filters': 2, 'kernel_size': [3], 'padding': 'causal',
        'kernel_quantizer': 'quantized_bits(4,0)', 'bias_quantizer': 'quantized_bits(4,0)'}},
     "c: layer QConv1D with padding='causal'"),
    ([None, 8, 4], {'class_name': 'AveragePooling1D', 'config': {'name': 'p', 'pool_size': [3]}},
     r'p: layer AveragePooling1D with pool_size=\(3,\).*power-of-two'),
    ([None, 8, 4], {'class_name': 'AveragePooling1D', 'config': {'name': 'p', 'pool_size': [2], 'padding': 'same'}},
     "p: layer AveragePooling1D .*padding='same'"),
    ([None, 4], {'class_name': 'QActivation', 'config': {'name': 'a', 'activation': 'quantized_bits(6,2,alpha=2)'}},
     'a: activation: a power-of-two alpha other than 1 is supported on weights only'),
    ([None, 4], {'class_name': 'QDense', 'config': {
        'name': 'd', 'units': 2, 'kernel_quantizer': 'quantized_bits(4,0,alpha=0.3)',
        'bias_quantizer': 'quantized_bits(4,0)'}}, 'd: kernel_quantizer: .*alpha=0.3 is not a power of two'),
    ([None, 4], {'class_name': 'QDense', 'config': {
        'name': 'd', 'units': 2, 'kernel_quantizer': 'quantized_bits(4,0,alpha="auto")',
        'bias_quantizer': 'quantized_bits(4,0)'}}, "d: kernel_quantizer: quantized_bits alpha='auto'"),
    ([None, 4], {'class_name': 'QActivation', 'config': {'name': 'a',
                                                         'activation': 'quantized_po2(4,log2_rounding="floor")'}},
     r"a: activation: quantized_po2\(log2_rounding='floor'\) on an activation is not supported"),
    ([None, 4], {'class_name': 'QActivation', 'config': {'name': 'a', 'activation': 'quantized_relu_po2(4,0,0.5)'}},
     'a: activation: quantized_relu_po2 with negative_slope'),
    ([None, 4], {'class_name': 'QActivation', 'config': {
        'name': 'a', 'activation': 'quantized_po2(6,quadratic_approximation=True)'}},
     r'a: activation: quantized_po2: \d+ input grid value\(s\) .* log2 rounding boundary'),
    ([None, 3, 3, 2], {'class_name': 'GlobalAveragePooling2D', 'config': {'name': 'g'}},
     r'g: layer GlobalAveragePooling2D over \(3, 3\) \(9 values\) is not supported'),
    ([None, 4], {'class_name': 'QActivation', 'config': {'name': 'a', 'activation': 'quantized_ulaw(8,0)'}},
     r"a: activation: quantized_ulaw is not supported \(its levels are .*TensorFlow's float32 log, which is not "
     r'correctly rounded'),
    ([None, 4, 4, 2], {'class_name': 'QAveragePooling2D', 'config': {
        'name': 'p', 'pool_size': [2, 2], 'average_quantizer': 'quantized_bits(2,0,alpha=1)'}},
     r'p: average_quantizer gives 1/pool_area = 0.0, not 0.25'),
    ([None, 4], {'class_name': 'ReLU', 'config': {'name': 'r', 'max_value': 6.0}},
     'r: layer ReLU with max_value'),
    ([None, 4], {'class_name': 'Activation', 'config': {'name': 's', 'activation': 'softmax'}},
     "s: activation 'softmax' is not supported"),
    ([None, 4], {'class_name': 'QDenseBatchnorm', 'config': {
        'name': 'd', 'units': 2, 'kernel_quantizer': 'quantized_bits(4,0)', 'bias_quantizer': None}},
     'd: bias_quantizer is None'),
])
def test_unsupported_layer_arguments_are_refused(tmp_path, shape, layer, match) -> None:
    first = {'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': shape}}
    n = shape[-1]
    weights = {'c': [np.ones((3, n, 2)), np.zeros(2)], 'd': [np.ones((n, 2)), np.zeros(2)]}
    name = layer['config']['name']
    w = {name: weights[name]} if name in weights else {}
    if layer['class_name'] == 'QDenseBatchnorm':
        w = {'d': [np.ones((n, 2)), np.zeros(2)]}
        _write_bn_h5(tmp_path / 'm.h5', [first, _QIN, layer], w)
    else:
        _write_h5(tmp_path / 'm.h5', [first, _QIN, layer], w)
    with pytest.raises(QKerasImportError, match=match):
        import_qkeras(tmp_path / 'm.h5')


def _write_bn_h5(path, layers, weights, variance: float = 1.0) -> None:
    """Like _write_h5, plus unit batch-norm statistics (gamma, beta, moving mean/variance) per layer."""
    with h5py.File(path, 'w') as h:
        h.attrs['model_config'] = json.dumps({'class_name': 'Sequential', 'config': {'layers': layers}})
        g = h.create_group('model_weights')
        for name, (kernel, bias) in weights.items():
            lg = g.create_group(name)
            n = kernel.shape[-1]
            arrays = {'kernel': kernel, 'bias': bias, 'batch_normalization/gamma': np.ones(n),
                      'batch_normalization/beta': np.zeros(n), 'batch_normalization/moving_mean': np.zeros(n),
                      'batch_normalization/moving_variance': np.full(n, variance)}
            names = [f'{name}/{k}:0' for k in arrays]
            lg.attrs['weight_names'] = [s.encode() for s in names]
            for s, a in zip(names, arrays.values()):
                lg.create_dataset(s, data=a)


def _qkeras_po2(x, bits, max_value=None, quad=False, floor=False):
    """QKeras quantized_po2 transcribed (q2 quantizers.py:1804-1875, :1992-2004), in float32 like TF."""
    x = np.asarray(x, np.float32)
    eps = np.float32(1e-7)
    sign = np.sign(x)
    sign = sign + (1 - np.abs(sign))
    a = np.abs(x)
    v = np.where(a < eps, eps, a)
    if max_value is not None:
        v = np.where(v >= max_value, np.float32(max_value), v)
    effect = bits - 1 - (1 if max_value is None or max_value > 1 else 0)
    lo, hi = -2 ** effect, 2 ** effect - 1
    hi = 2 * (hi // 2) if quad else hi
    t = np.log(np.sqrt(v) if quad else v) / np.float32(np.log(2.0))
    e = (2 if quad else 1) * np.clip(np.floor(t) if floor else np.round(t), lo, hi)
    return sign * 2.0 ** np.where(a < eps, lo, e)


@pytest.mark.parametrize('spec, args', [
    ('quantized_po2(4)', dict(bits=4)), ('quantized_po2(4,1)', dict(bits=4, max_value=1)),
    ('quantized_po2(5,quadratic_approximation=True)', dict(bits=5, quad=True)),
    ('quantized_po2(4,1.5,log2_rounding="floor")', dict(bits=4, max_value=1.5, floor=True)),
])
def test_po2_weights_match_qkeras_formula(spec, args) -> None:
    from hgq.importers.qkeras_quantizers import quantize_po2_weights

    w = np.random.default_rng(3).normal(0, 0.7, 4000).astype(np.float32)
    w[:4] = [0.0, -0.0, 1e-9, -3e-8]  # sign'(0) = +1, |x| < eps -> 2^min_exp
    w = w[np.abs(np.log2(np.abs(w.astype(np.float64)) + 1e-30) % 0.5) > 1e-4]  # keep clear of boundaries
    w = np.concatenate([[0.0, -0.0, 1e-9, -3e-8], w]).astype(np.float32)
    got = quantize_po2_weights('d', 'kernel_quantizer', spec, w)
    assert int(np.sum(got != _qkeras_po2(w, **args))) == 0


def test_po2_weight_on_a_rounding_boundary_is_refused() -> None:
    from hgq.importers.qkeras_quantizers import quantize_po2_weights

    with pytest.raises(QKerasImportError, match='within 1e-05 of a quantized_po2 rounding boundary'):
        quantize_po2_weights('d', 'kernel_quantizer', 'quantized_po2(4)', np.float32([np.sqrt(2.0), 0.3]))


@pytest.mark.parametrize('stem', ['keras2_cnn2d_b6', 'keras3_branch_b6'])
def test_cli_import_of_a_fixture_reloads_exactly(tmp_path, stem: str) -> None:
    """`hgq import-qkeras` writes a checkpoint that reloads (pooling, Add, Concatenate, fixed quantizers) and
    still computes the QKeras outputs."""
    from hgq.cli import main
    from hgq.workflow.files import load_checkpoint

    x, y, _ = load_reference(stem)
    assert main(['import-qkeras', str(_model_file(stem)), str(tmp_path / 'm.keras')]) == 0
    got = np.asarray(load_checkpoint(tmp_path / 'm.keras')(x[:2000], training=False))
    assert int(np.sum(got != y[:2000])) == 0


def test_raw_input_into_qdense_with_a_given_input_format(tmp_path) -> None:
    """Many QKeras models feed the float input straight into a QDense; with the input's fixed-point format
    given, the import is exact on that grid (QKeras multiplies the same numbers)."""
    rng = np.random.default_rng(5)
    kernel, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 4]}},
              {'class_name': 'QDense', 'config': {'name': 'd', 'units': 3, 'activation': 'quantized_relu(6,2)',
                                                  'kernel_quantizer': 'quantized_bits(6,0,alpha=1)',
                                                  'bias_quantizer': 'quantized_bits(6,0,alpha=1)'}}]
    _write_h5(tmp_path / 'm.h5', layers, {'d': [kernel, bias]})
    model = import_qkeras(tmp_path / 'm.h5', input_format=(1, 3, 4))
    x = (rng.integers(-128, 128, (512, 4)) / 16).astype('float32')  # on the ap_fixed<8,4> grid
    y = x.astype(np.float64) @ _qkeras_bits(kernel, 6, 0) + _qkeras_bits(bias, 6, 0)
    ref = _qkeras_bits(np.maximum(y, 0), 6, 2, keep_negative=0)
    assert int(np.sum(np.asarray(model(x)) != ref)) == 0
    with pytest.raises(QKerasImportError, match='input_format'):
        import_qkeras(tmp_path / 'm.h5', input_format=(2, 3, 4))


def test_batchnorm_fold_on_a_rounding_tie_is_refused(tmp_path) -> None:
    """γ=1, σ²+ε=1 exactly: the folded kernel 1/16 is a tie of quantized_bits(4,0); QKeras' float32 fold
    (rsqrt, possibly fused) could land on either side, so the import must refuse rather than guess."""
    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 2]}}, _QIN,
              {'class_name': 'QDenseBatchnorm', 'config': {
                  'name': 'd', 'units': 2, 'epsilon': 0.25, 'kernel_quantizer': 'quantized_bits(4,0,alpha=1)',
                  'bias_quantizer': 'quantized_bits(6,2,alpha=1)'}}]
    kernel = np.array([[0.0625, 0.3], [0.2, -0.4]])
    _write_bn_h5(tmp_path / 'm.h5', layers, {'d': [kernel, np.zeros(2)]}, variance=0.75)
    with pytest.raises(QKerasImportError, match='d: kernel_quantizer: a folded batch-norm weight lies within 2'):
        import_qkeras(tmp_path / 'm.h5')
    kernel[0, 0] = 0.07  # clear of the tie: imports, kernel = quantized fold
    _write_bn_h5(tmp_path / 'n.h5', layers, {'d': [kernel, np.zeros(2)]}, variance=0.75)
    got = np.asarray(import_qkeras(tmp_path / 'n.h5').get_layer('d').kernel)
    assert int(np.sum(got != _qkeras_bits(kernel.astype(np.float32), 4, 0))) == 0


def test_sums_wider_than_float32_are_reported(tmp_path) -> None:
    """16-bit inputs × 16-bit weights over 4 terms need > 24 bits: QKeras' float32 sums may round there."""
    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 4]}},
              {'class_name': 'QActivation', 'config': {'name': 'qin', 'activation': 'quantized_bits(16,5,alpha=1)'}},
              {'class_name': 'QDense', 'config': {'name': 'd', 'units': 2, 'kernel_quantizer': 'quantized_bits(16,0)',
                                                  'bias_quantizer': 'quantized_bits(16,0)'}}]
    _write_h5(tmp_path / 'm.h5', layers, {'d': [np.full((4, 2), 0.3), np.zeros(2)]})
    with pytest.warns(UserWarning, match='d: its sums need .* bits, more than float32 holds'):
        import_qkeras(tmp_path / 'm.h5')


# ---------------------------------------------------------------- power-of-two activations (level tables)

def _relu_po2(x, bits, max_value=None):
    """QKeras quantized_relu_po2 (negative_slope=0) transcribed (q2 quantizers.py:2142-2175), float32 like TF."""
    x = np.asarray(x, np.float32)
    r = np.maximum(x, np.float32(0))
    if max_value is not None:
        r = np.where(x <= np.float32(max_value), r, np.float32(max_value))
    sign_bit = 0 if max_value is not None and max_value <= 1 else 1
    lo, hi = -2 ** (bits - sign_bit), 2 ** (bits - sign_bit) - 1
    a = np.maximum(x, np.float32(0))
    v = np.where(a < np.float32(1e-7), np.float32(1e-7), a)
    if max_value is not None:
        v = np.where(v >= np.float32(max_value), np.float32(max_value), v)
    e = np.where(a < np.float32(1e-7), lo, np.clip(np.round(np.log2(v.astype(np.float64))), lo, hi))
    xq = (2.0 ** e).astype(np.float32)
    return r + (xq - r)


@pytest.mark.parametrize('spec, ref', [
    ('quantized_po2(4)', lambda x: _qkeras_po2(x, 4)),
    ('quantized_po2(5,1)', lambda x: _qkeras_po2(x, 5, max_value=1)),
    ('quantized_relu_po2(3)', lambda x: _relu_po2(x, 3)),
    ('quantized_relu_po2(3,4)', lambda x: _relu_po2(x, 3, max_value=4)),
])
def test_po2_activation_is_the_qkeras_function_on_every_grid_value(tmp_path, spec, ref) -> None:
    """Every input the table can see (quantized_bits(8,3): the multiples of 2^-4 in [-8, 8)) gives QKeras' value."""
    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 1]}},
              {'class_name': 'QActivation', 'config': {'name': 'q', 'activation': 'quantized_bits(8,3,alpha=1)'}},
              {'class_name': 'QActivation', 'config': {'name': 'p', 'activation': spec}}]
    _write_h5(tmp_path / 'm.h5', layers, {})
    model = import_qkeras(tmp_path / 'm.h5')
    x = (np.arange(-128, 128) / 16).astype(np.float32)[:, None]
    want = np.asarray(ref(x), np.float32)
    got = np.asarray(model(x, training=False))
    assert len(np.unique(want)) >= 4
    assert int(np.sum(got != want)) == 0


def test_po2_activation_needs_a_quantized_input(tmp_path) -> None:
    layers = [{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [None, 2]}},
              {'class_name': 'QActivation', 'config': {'name': 'p', 'activation': 'quantized_po2(4)'}}]
    _write_h5(tmp_path / 'm.h5', layers, {})
    with pytest.raises(QKerasImportError, match='p: activation .*needs a quantized input'):
        import_qkeras(tmp_path / 'm.h5')


def test_imported_po2_activation_model_saves_loads_and_exports(tmp_path) -> None:
    """The level table survives save/load (TableQuantizer config), the IR emulator computes it exactly, and
    to_learnable (hgq train --init) keeps it."""
    import hgq.ir as ir
    from hgq.importers.learnable import to_learnable
    from hgq.workflow.files import load_checkpoint

    x, y, _ = load_reference('keras3_po2act_b4')
    model = import_qkeras(_model_file('keras3_po2act_b4'))
    model.save(tmp_path / 'm.keras')
    loaded = load_checkpoint(tmp_path / 'm.keras')
    table = loaded.get_layer('p1').output_quantizer.describe()
    assert table.n_levels >= 8  # quantized_po2(4): ±2^-4..2^3
    got = {'loaded': np.asarray(loaded(x, training=False)),
           'emulator': np.asarray(ir.predict(ir.from_model(loaded), x.astype(np.float64))).reshape(y.shape),
           'learnable': np.asarray(to_learnable(loaded)(x, training=False))}
    assert {k: int(np.sum(v != y)) for k, v in got.items()} == dict.fromkeys(got, 0)
