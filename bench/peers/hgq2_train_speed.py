"""Training-speed worker for the peer library HGQ2 (PyPI `hgq2`, import name `hgq`).

Run it ONLY with the interpreter of the separate HGQ2 venv (`make peers`: .peers/hgq2/bin/python):
HGQ2 installs an import package called `hgq`, like ours, so the two never share an environment.
`bench/train_speed.py` launches it once per backend (KERAS_BACKEND set in the environment) and reads
the JSON it writes. Standalone:

    KERAS_BACKEND=jax .peers/hgq2/bin/python bench/peers/hgq2_train_speed.py --epochs 3

The model mirrors bench/train_speed.py: a 16-64-32-32-5 MLP (ReLU) of HGQ2 QDense layers, each with a
per-element input quantizer (KIF, WRAP, integer bits from the tracked range: HGQ2's 'datalane' default),
per-element kernel and bias quantizers (KBI: HGQ2's 'weight'/'bias' defaults) and EBOPs on (beta0=beta).
This file imports nothing from our repository.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

JIT_CHOICES = {'auto': 'auto', 'true': True, 'false': False}

def make_classification(
    n_samples: int = 100_000, n_features: int = 16, n_classes: int = 5, seed: int = 20261123
) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate of bench/common.py:make_classification (only used when no --data file is given)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, n_features)).astype(np.float32)
    w = rng.normal(size=(n_features, n_classes))
    logits = x.astype(np.float64) @ w + 0.5 * rng.normal(size=(n_samples, n_classes))
    return x, np.argmax(logits, axis=1).astype(np.int32)


def backend_versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for dist in ('tensorflow-cpu', 'tensorflow', 'jax', 'jaxlib', 'quantizers'):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=Path, help='.npz with arrays x, y (default: generate the standard set)')
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--batch-size', type=int, default=1024)
    parser.add_argument('--beta', type=float, default=1e-6)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--jit-compile', choices=sorted(JIT_CHOICES), default='auto')
    parser.add_argument('--out', type=Path, help='write the result JSON here (default: stdout)')
    args = parser.parse_args()

    if args.data is not None:
        with np.load(args.data) as d:
            x, y = d['x'], d['y']
    else:
        x, y = make_classification()

    import keras

    import hgq  # HGQ2's package (imports hgq.config and hgq.layers)

    QuantizerConfig = hgq.config.QuantizerConfig
    QDense = hgq.layers.QDense

    here = Path(__file__).resolve().parent.parent.parent
    if Path(hgq.__file__).resolve().is_relative_to(here):
        sys.exit(f'imported our own hgq from {hgq.__file__}, not HGQ2: run this with the HGQ2 venv interpreter')

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t0)

        def on_train_begin(self, logs=None):
            self.times = []

    keras.utils.set_random_seed(args.seed)
    caught: dict[str, int] = {}
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter('always')

        def dense(units: int, activation: str | None, name: str) -> keras.layers.Layer:
            return QDense(
                units,
                activation=activation,
                name=name,
                beta0=args.beta,
                enable_ebops=True,
                iq_conf=QuantizerConfig('kif', 'datalane'),
                kq_conf=QuantizerConfig('kbi', 'weight'),
                bq_conf=QuantizerConfig('kbi', 'bias'),
            )

        inp = keras.Input((x.shape[1],))
        h = inp
        for n, units in enumerate((64, 32, 32)):
            h = dense(units, 'relu', f'dense{n}')(h)
        out = dense(int(y.max()) + 1, None, 'logits')(h)
        model = keras.Model(inp, out)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=['accuracy'],
            jit_compile=JIT_CHOICES[args.jit_compile],
        )
        timer = EpochTimer()
        hist = model.fit(
            x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0, callbacks=[timer]
        )
        ebops = sum(float(np.asarray(layer._ebops)) for layer in model.layers if getattr(layer, 'enable_ebops', False))
        for w in wlist:  # deduplicated, with a count
            where = '/'.join(Path(w.filename).parts[-3:])
            key = f'{w.category.__name__}: {w.message} ({where}:{w.lineno})'
            caught[key] = caught.get(key, 0) + 1

    times = timer.times
    steady = statistics.median(times[1:]) if len(times) > 1 else None
    result = {
        'impl': 'hgq2',
        'backend': keras.backend.backend(),
        'versions': {
            'hgq2': hgq.__version__,
            'keras': keras.__version__,
            'numpy': np.__version__,
            'python': sys.version.split()[0],
            **backend_versions(),
        },
        'n_samples': int(len(x)),
        'batch_size': args.batch_size,
        'beta': args.beta,
        'jit_compile': bool(model.jit_compile),
        'epoch_s': times,
        'first_epoch_s': times[0] if times else None,
        'steady_epoch_s': steady,
        'samples_per_s': len(x) / steady if steady else None,
        'final_loss': float(hist.history['loss'][-1]),
        'final_accuracy': float(hist.history['accuracy'][-1]),
        'final_ebops': ebops,
        'params': int(model.count_params()),
        'warnings': caught,
        'env': {k: os.environ.get(k) for k in ('KERAS_BACKEND', 'OMP_NUM_THREADS', 'XLA_FLAGS')},
    }
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + '\n')
    else:
        print(text)


if __name__ == '__main__':
    main()
