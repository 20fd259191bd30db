"""Time to trace, write and compile the hls4ml C-simulation, and its throughput, for our reference models.

Models: the jets 16-64-32-32-5 MLP and a Fashion-MNIST-shaped CNN (28x28x1: conv-pool-conv-pool-dense),
trained one epoch on random data and calibrated (timing does not depend on the data). Prints a table
and writes JSON. Usage: python bench/export_speed.py [--json bench/results/export_speed.json] [--samples N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from hgq import ir
from hgq.export.hls4ml import export_hls4ml
from hgq.layers import QConv2D, QDense, QFlatten, QMaxPooling2D
from hgq.training import calibrate


def jets_mlp() -> keras.Model:
    return keras.Sequential([keras.Input((16,)), QDense(64, activation='relu'), QDense(32, activation='relu'),
                             QDense(32, activation='relu'), QDense(5)], name='jets_mlp')


def fashion_cnn() -> keras.Model:
    return keras.Sequential([
        keras.Input((28, 28, 1)), QConv2D(4, 3, activation='relu'), QMaxPooling2D(2),
        QConv2D(8, 3, activation='relu'), QMaxPooling2D(2), QFlatten(), QDense(10),
    ], name='fashion_cnn')


def measure(build: object, samples: int, io_type: str) -> dict:
    model = build()
    shape = model.input_shape[1:]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, *shape)).astype(np.float32)
    model.compile('adam', 'mse')
    model.fit(x, np.zeros((len(x), *model.output_shape[1:]), np.float32), epochs=1, verbose=0)
    calibrate(model, x)
    t0 = time.perf_counter()
    graph = ir.from_model(model)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        hls = export_hls4ml(graph, Path(out) / 'prj', io_type=io_type, compile=False)
        t2 = time.perf_counter()
        hls.compile()
        t3 = time.perf_counter()
        xs = rng.normal(size=(samples, *shape)).astype(np.float32)
        hls.predict(xs[:8])
        t4 = time.perf_counter()
        got = np.asarray(hls.predict(xs), dtype=np.float64)
        t5 = time.perf_counter()
    ref = ir.predict(graph, xs)
    t6 = time.perf_counter()
    return {'model': model.name, 'io_type': io_type, 'trace_s': t1 - t0, 'write_s': t2 - t1, 'compile_s': t3 - t2,
            'csim_samples_per_s': samples / (t5 - t4), 'emulator_samples_per_s': samples / (t6 - t5),
            'mismatches': int(np.sum(got.reshape(ref.shape) != ref)), 'outputs': int(ref.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--json', default='bench/results/export_speed.json')
    parser.add_argument('--samples', type=int, default=20_000)
    args = parser.parse_args()
    rows = [measure(jets_mlp, args.samples, 'io_parallel'), measure(fashion_cnn, args.samples // 4, 'io_parallel')]
    print(f'{"model":<12} {"io":<11} {"trace s":>8} {"write s":>8} {"compile s":>10} {"C-sim /s":>10} '
          f'{"emulator /s":>12} {"mismatches":>11}')
    for r in rows:
        print(f'{r["model"]:<12} {r["io_type"]:<11} {r["trace_s"]:>8.2f} {r["write_s"]:>8.2f} {r["compile_s"]:>10.1f} '
              f'{r["csim_samples_per_s"]:>10.0f} {r["emulator_samples_per_s"]:>12.0f} '
              f'{r["mismatches"]:>5}/{r["outputs"]}')
    info = {'date': time.strftime('%Y-%m-%d'), 'nproc': os.cpu_count(), 'platform': platform.platform(),
            'backend': keras.backend.backend(), 'command': 'python bench/export_speed.py', 'rows': rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(info, indent=1))


if __name__ == '__main__':
    main()
