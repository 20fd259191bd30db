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
