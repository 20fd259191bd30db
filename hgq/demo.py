"""`make demo`: train a quantized 16-64-32-32-5 MLP with a beta ramp and show what it buys.

Runs on data the package generates (hgq.data.toy), needs nothing else: a float baseline, one HGQ
run keeping its Pareto front (val accuracy vs EBOPs), then the most accurate checkpoint is
calibrated, traced into the fixed-point IR and checked against the exact emulator.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _build_float(keras):  # noqa: ANN001, ANN202 - keras is imported late so the backend can be chosen
    return keras.Sequential([
        keras.Input((16,)),
        keras.layers.Dense(64, activation='relu'),
        keras.layers.Dense(32, activation='relu'),
        keras.layers.Dense(32, activation='relu'),
        keras.layers.Dense(5),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--epochs', type=int, default=60)
    parser.add_argument('--out', default='runs/demo')
    parser.add_argument('--samples', type=int, default=50_000)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from hgq import ir
    from hgq.data.toy import make_toy_jets
    from hgq.layers import QDense
    from hgq.training import (
        BetaScheduler,
        EBOPsLogger,
        Log,
        ParetoCheckpoint,
        ProgressBar,
        ResetRanges,
        calibrate,
        exact_ebops,
        read_index,
    )

    print(f'backend: {keras.backend.backend()}')
    x, y = make_toy_jets(args.samples, seed=1)
    xv, yv = make_toy_jets(args.samples // 4, seed=2)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    float_model = _build_float(keras)
    float_model.compile(keras.optimizers.Adam(3e-3), loss, metrics=['accuracy'])
    float_model.fit(x, y, epochs=15, batch_size=256, verbose=0)
    float_acc = float_model.evaluate(xv, yv, verbose=0)[1]
    print(f'float baseline: val accuracy {float_acc:.4f}')

    model = keras.Sequential([
        keras.Input((16,)),
        QDense(64, activation='relu'),
        QDense(32, activation='relu'),
        QDense(32, activation='relu'),
        QDense(5),
    ])
    model.compile(keras.optimizers.Adam(3e-3), loss, metrics=['accuracy'])
    run_dir = Path(args.out)
    start = time.time()
    model.fit(x, y, validation_data=(xv, yv), epochs=args.epochs, batch_size=256, verbose=0, callbacks=[
        ResetRanges(), BetaScheduler(Log(1e-7, 3e-4, args.epochs)), EBOPsLogger(),
        ParetoCheckpoint(run_dir, metrics={'val_accuracy': 'max', 'ebops': 'min'}, overwrite=True),
        ProgressBar(mode='overall'),
    ])
    print(f'trained {args.epochs} epochs in {time.time() - start:.0f} s')

    front = sorted(read_index(str(run_dir))['checkpoints'], key=lambda c: -c['metrics']['val_accuracy'])
    print(f'\nPareto front ({len(front)} checkpoints, {run_dir}):')
    print(f'{"epoch":>6} {"val_acc":>8} {"EBOPs":>10}')
    for c in front:
        print(f'{c["epoch"]:>6} {c["metrics"]["val_accuracy"]:>8.4f} {c["metrics"]["ebops"]:>10.0f}')

    best = keras.models.load_model(run_dir / front[0]['file'])
    calibrate(best, x)
    graph = ir.from_model(best)
    keras_out = keras.ops.convert_to_numpy(best(xv, training=False)).astype(np.float64)
    exact_out = ir.predict(graph, xv)
    mismatches = int(np.sum(keras_out != exact_out))
    print(f'\nmost accurate checkpoint (epoch {front[0]["epoch"]}), calibrated:')
    print(f'  exact EBOPs {exact_ebops(best):.0f}; val accuracy Keras {np.mean(keras_out.argmax(1) == yv):.4f}, '
          f'fixed-point emulator {np.mean(exact_out.argmax(1) == yv):.4f}')
    print(f'  Keras vs exact emulator: {mismatches} mismatches in {keras_out.size} outputs')
    return 0 if mismatches == 0 else 1


if __name__ == '__main__':
    os.environ.setdefault('KERAS_BACKEND', 'jax')
    raise SystemExit(main())
