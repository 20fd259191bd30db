"""Float baseline on a generated jets file: the classic 16-64-32-32-5 MLP, test accuracy and confusion matrix.

    KERAS_BACKEND=jax python projects/jets/baseline.py [--data projects/jets/data/jets_100k.npz]

The number to compare with: this MLP reaches 75-76% on the public hls4ml set (OpenML 42468). It tells whether the
generated physics is as separable as the public set, so the recipe (split, standardisation, optimiser) is fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60/20/20 train/validation/test indices from a seeded permutation."""
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(0.6 * n), int(0.8 * n)
    return order[:a], order[a:b], order[b:]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Row-normalised confusion matrix: row = true class, column = predicted class."""
    m = np.zeros((k, k))
    np.add.at(m, (y_true, y_pred), 1)
    return m / np.maximum(m.sum(axis=1, keepdims=True), 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default=os.path.join(HERE, 'data', 'jets_100k.npz'))
    ap.add_argument('--epochs', type=int, default=30)
    ap.add_argument('--batch-size', type=int, default=256)
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--seed', type=int, default=0, help='split and weight-initialisation seed')
    args = ap.parse_args(argv)

    import keras

    with np.load(args.data, allow_pickle=False) as f:
        x, y = f['x'].astype(np.float32), f['y'].astype(np.int64)
        class_names = [str(c) for c in f['class_names']]
        settings = json.loads(str(f['settings']))
    tr, va, te = split(len(y), args.seed)
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0)
    std[std == 0] = 1.0  # a constant column (never seen, but a division by zero would hide it)
    xs = (x - mean) / std

    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential(
        [keras.Input((x.shape[1],))]
        + [keras.layers.Dense(n, activation='relu') for n in (64, 32, 32)]
        + [keras.layers.Dense(len(class_names))]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=['accuracy'],
    )
    start = time.perf_counter()
    model.fit(
        xs[tr],
        y[tr],
        validation_data=(xs[va], y[va]),
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=2,
    )
    pred = np.argmax(model.predict(xs[te], batch_size=4096, verbose=0), axis=1)
    acc = float(np.mean(pred == y[te]))
    cm = confusion(y[te], pred, len(class_names))
    print(f'data {args.data}: {len(y)} jets, seed {settings.get("seed")}; backend {keras.backend.backend()}')
    print(f'training {time.perf_counter() - start:.0f} s; test accuracy {acc:.4f} on {len(te)} jets')
    print('confusion matrix (rows: true class, row-normalised):')
    print('      ' + ''.join(f'{c:>7}' for c in class_names))
    for name, row in zip(class_names, cm):
        print(f'{name:>6}' + ''.join(f'{v:7.3f}' for v in row))
    return 0


if __name__ == '__main__':
    sys.exit(main())
