"""QKeras side of bench/qkeras_peer.py; runs in a Keras 2 venv (tensorflow-cpu 2.15.1, qkeras 0.9.0, hls4ml 1.3.0).

For each bit-width: the jets MLP 16-64-32-32-5 with uniform QKeras quantizers, trained with the same
optimizer, learning-rate schedule, batch size and epochs as the HGQ runs; its accuracy; the model saved as
.h5 (what a QKeras user has); its outputs on the test inputs (the reference for our import); and hls4ml's
own conversion (config_from_keras_model granularity='name', Vitis, io_parallel), compiled and C-simulated on
the same inputs, with the number of outputs that differ from QKeras (`!=`).

Usage: python qkeras_jets.py --data split.npz --out DIR --bits 4 6 8 --epochs N [--hls-samples N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def build(bits: int, hidden: list[int]) -> object:
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    x = inp = keras.Input((16,), name='inputs')
    x = QActivation(quantized_bits(bits, 2, alpha=1), name='q_in')(x)  # standardized features: |x| < 4
    for n, units in enumerate(hidden):
        x = QDense(units, kernel_quantizer=quantized_bits(bits, 0, alpha=1),
                   bias_quantizer=quantized_bits(bits, 0, alpha=1), name=f'dense_{n}')(x)
        x = QActivation(quantized_relu(bits, 2), name=f'relu_{n}')(x)
    x = QDense(5, kernel_quantizer=quantized_bits(bits, 0, alpha=1), bias_quantizer=quantized_bits(bits, 0, alpha=1),
               name='logits')(x)
    return keras.Model(inp, x, name=f'qkeras_jets_{bits}b')


def train(model: object, d: dict, epochs: int, batch: int, lr: float, seed: int) -> float:
    import tensorflow as tf
    from tensorflow import keras

    tf.keras.utils.set_random_seed(seed)
    steps = -(-len(d['x_train']) // batch)
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps * epochs, alpha=0.01)  # as hgq train's 'cosine'
    model.compile(keras.optimizers.Adam(schedule), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    start = time.perf_counter()
    model.fit(d['x_train'], d['y_train'], validation_data=(d['x_val'], d['y_val']), epochs=epochs, batch_size=batch,
              verbose=0)
    return time.perf_counter() - start


def hls4ml_mismatches(model: object, x: np.ndarray, ref: np.ndarray, work: Path, io_type: str = 'io_parallel'
                      ) -> dict:
    import hls4ml

    config = hls4ml.utils.config_from_keras_model(model, granularity='name', backend='Vitis')
    hls = hls4ml.converters.convert_from_keras_model(model, hls_config=config, output_dir=str(work), backend='Vitis',
                                                     io_type=io_type, project_name='qk')
    start = time.perf_counter()
    hls.compile()
    compile_s = time.perf_counter() - start
    got = np.asarray(hls.predict(np.ascontiguousarray(x.astype(np.float32))), dtype=np.float64).reshape(ref.shape)
    diff = np.abs(got - ref)
    return {'outputs': int(ref.size), 'mismatches': int((got != ref).sum()), 'max_abs_diff': float(diff.max()),
            'argmax_disagreements': int((got.argmax(1) != ref.argmax(1)).sum()), 'compile_s': round(compile_s, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', type=Path, required=True)
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--bits', type=int, nargs='+', default=[4, 6, 8])
    p.add_argument('--epochs', type=int, required=True)
    p.add_argument('--batch', type=int, default=1024)
    p.add_argument('--lr', type=float, default=0.003)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--hls-samples', type=int, default=10_000)
    p.add_argument('--no-hls4ml', action='store_true')
    args = p.parse_args()
    import qkeras
    import tensorflow as tf

    with np.load(args.data) as z:
        d = {k: z[k] for k in z.files}
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for bits in args.bits:
        model = build(bits, [64, 32, 32])
        seconds = train(model, d, args.epochs, args.batch, args.lr, args.seed)
        val = float(model.evaluate(d['x_val'], d['y_val'], verbose=0, batch_size=4096)[1])
        test = float(model.evaluate(d['x_test'], d['y_test'], verbose=0, batch_size=4096)[1])
        h5 = args.out / f'qkeras_{bits}b.h5'
        model.save(h5)
        ref = np.asarray(model.predict(d['x_test'], verbose=0, batch_size=4096), dtype=np.float64)
        np.save(args.out / f'qkeras_{bits}b_test_outputs.npy', ref)
        row = {'bits': bits, 'epochs': args.epochs, 'train_s': round(seconds, 1), 'val_accuracy': val,
               'test_accuracy': test, 'h5': str(h5)}
        if not args.no_hls4ml:
            n = args.hls_samples
            row['hls4ml'] = hls4ml_mismatches(model, d['x_test'][:n], ref[:n], args.out / f'hls4ml_{bits}b')
        print(json.dumps(row), flush=True)
        results.append(row)
    import hls4ml

    versions = {'tensorflow': tf.__version__, 'qkeras': getattr(qkeras, '__version__', '0.9.0'),
                'hls4ml': hls4ml.__version__}
    (args.out / 'qkeras.json').write_text(json.dumps({'versions': versions, 'results': results}, indent=1))


if __name__ == '__main__':
    main()
