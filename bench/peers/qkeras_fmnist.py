"""QKeras side of bench/qkeras_peer.py for the Fashion-MNIST CNN; runs in the Keras 2 venv (as qkeras_jets.py).

The architecture of projects/fashion_mnist (conv 3x3x8 relu, maxpool 2, conv 3x3x16 relu, maxpool 2, flatten,
dense 32 relu, dense 10) with uniform QKeras quantizers of b bits: the input (pixels in [0, 1)) through
quantized_bits(b, 0), weights and biases quantized_bits(b, 0, alpha=1), activations quantized_relu(b, 2).
Trained with the optimizer, schedule, batch size and epochs of the HGQ runs; saved as .h5 with its test
outputs; hls4ml 1.3's own conversion (granularity='name', Vitis, io_stream: hls4ml's choice for CNNs)
C-simulated on the same inputs, outputs != QKeras counted.

Usage: python qkeras_fmnist.py --data split.npz --out DIR --bits 4 6 8 --epochs N [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qkeras_jets import hls4ml_mismatches, train  # noqa: E402


def build(bits: int, filters: tuple[int, int] = (8, 16), dense: int = 32) -> object:
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    def wq() -> object:
        return quantized_bits(bits, 0, alpha=1)

    x = inp = keras.Input((28, 28, 1), name='inputs')
    x = QActivation(quantized_bits(bits, 0, alpha=1), name='q_in')(x)
    for n, c in enumerate(filters):
        x = QConv2D(c, 3, kernel_quantizer=wq(), bias_quantizer=wq(), name=f'conv_{n}')(x)
        x = QActivation(quantized_relu(bits, 2), name=f'relu_c{n}')(x)
        x = keras.layers.MaxPooling2D(2, name=f'pool_{n}')(x)
    x = keras.layers.Flatten(name='flatten')(x)
    x = QDense(dense, kernel_quantizer=wq(), bias_quantizer=wq(), name='dense_0')(x)
    x = QActivation(quantized_relu(bits, 2), name='relu_d0')(x)
    x = QDense(10, kernel_quantizer=wq(), bias_quantizer=wq(), name='logits')(x)
    return keras.Model(inp, x, name=f'qkeras_fmnist_{bits}b')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', type=Path, required=True)
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--bits', type=int, nargs='+', default=[4, 6, 8])
    p.add_argument('--epochs', type=int, required=True)
    p.add_argument('--batch', type=int, default=256)
    p.add_argument('--lr', type=float, default=0.003)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--hls-samples', type=int, default=2_000)
    p.add_argument('--io-type', default='io_stream')
    p.add_argument('--no-hls4ml', action='store_true')
    args = p.parse_args()
    import qkeras
    import tensorflow as tf

    with np.load(args.data) as z:
        d = {k: z[k] for k in z.files}
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for bits in args.bits:
        model = build(bits)
        seconds = train(model, d, args.epochs, args.batch, args.lr, args.seed)
        val = float(model.evaluate(d['x_val'], d['y_val'], verbose=0, batch_size=1024)[1])
        test = float(model.evaluate(d['x_test'], d['y_test'], verbose=0, batch_size=1024)[1])
        h5 = args.out / f'qkeras_{bits}b.h5'
        model.save(h5)
        ref = np.asarray(model.predict(d['x_test'], verbose=0, batch_size=1024), dtype=np.float64)
        np.save(args.out / f'qkeras_{bits}b_test_outputs.npy', ref)
        row = {'bits': bits, 'epochs': args.epochs, 'train_s': round(seconds, 1), 'val_accuracy': val,
               'test_accuracy': test, 'h5': str(h5)}
        print(json.dumps(row), flush=True)
        results.append(row)
        (args.out / 'partial.json').write_text(json.dumps(results, indent=1))
    if not args.no_hls4ml:
        for row in results:
            bits, n = row['bits'], args.hls_samples
            ref = np.load(args.out / f'qkeras_{bits}b_test_outputs.npy')
            model = qkeras.utils.load_qmodel(str(args.out / f'qkeras_{bits}b.h5'), compile=False)
            try:
                row['hls4ml'] = hls4ml_mismatches(model, d['x_test'][:n], ref[:n], args.out / f'hls4ml_{bits}b',
                                                  io_type=args.io_type)
            except Exception as e:  # noqa: BLE001 - reported, the other bit-widths go on
                row['hls4ml'] = {'error': f'{type(e).__name__}: {e}'[:500]}
            print(json.dumps(row), flush=True)
    import hls4ml

    versions = {'tensorflow': tf.__version__, 'qkeras': getattr(qkeras, '__version__', '0.9.0'),
                'hls4ml': hls4ml.__version__}
    (args.out / 'qkeras.json').write_text(json.dumps({'versions': versions, 'io_type': args.io_type,
                                                      'results': results}, indent=1))


if __name__ == '__main__':
    main()
