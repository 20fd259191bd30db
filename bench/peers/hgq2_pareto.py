"""Pareto-front worker for the peer library HGQ2 (PyPI `hgq2`, import name `hgq`): one training run with a beta
ramp, HGQ2's own Pareto checkpoints, each checkpoint calibrated with HGQ2's `trace_minmax` and evaluated.

Run it ONLY with the interpreter of the separate HGQ2 venv: HGQ2 installs an import package called `hgq`, like
ours, so this file imports nothing from our repository. `bench/pareto_vs_hgq2.py` launches it and reads the JSON:

    KERAS_BACKEND=jax .peers/hgq2/bin/python bench/peers/hgq2_pareto.py \\
        --data split.npz --epochs 200 --out hgq2_front.json

Recipe (the same as our `hgq train` of the jets project): 16-64-32-32-5 MLP of HGQ2 `QDense` layers (ReLU, last
layer linear) with HGQ2's default quantizers (per-element KIF WRAP activations, KBI SAT_SYM weights and biases)
and EBOPs on; Adam with CosineDecay(lr, steps_per_epoch*epochs, alpha=0.01); sparse categorical cross-entropy on
logits; beta set per epoch by HGQ2's `BetaScheduler(PieceWiseSchedule([(0, start, 'log'), (epochs, end,
'constant')]))`, i.e. beta(e) = start*(end/start)**(e/epochs), the formula of our `hgq.training.Log`;
`FreeEBOPs` + `ParetoFront(['val_accuracy', 'ebops'], [1, -1])` keep the checkpoints.

Per checkpoint: `trace_minmax` on the calibration samples (HGQ2's calibration; it returns HGQ2's EBOPs), then
the test accuracy of the calibrated model, HGQ2's EBOPs and the EBOPs of our definition (docs/ebops.md),
recomputed here from HGQ2's calibrated formats and quantized values:

- HGQ2's number per QDense: sum(bits_x @ bits_w) + sum(bits_b), where bits is HGQ2's `Quantizer.bits`: for WRAP
  and SAT_SYM quantizers the magnitude bits b = i + f, *without* the sign bit; for weights and biases the
  declared b of the quantizer, whatever the value (a weight 0.17 with b = 8 counts 8).
- ours (`common_ebops`): bits_x = k + i + f of the calibrated activation format (HGQ2's `fbits`: sign
  included, 0 when i + f <= 0); bits_w = the narrowest width (sign included) that holds the quantized weight at
  its f, 0 for a weight equal to 0; likewise for the non-zero biases. This is what `hgq.report.ebops_per_layer`
  computes for our models.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

WIDTHS = (16, 64, 32, 32, 5)


def value_bits(q: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Width (sign included) of the narrowest format with f fractional bits holding each value q; 0 for q == 0.

    The same rule as our `integer_bits_of_values`: a positive code c needs bit_length(c) bits, a negative one
    1 + bit_length(-c - 1) (two's complement)."""
    codes = np.rint(np.asarray(q, np.float64) * np.exp2(np.broadcast_to(f, np.shape(q)))).astype(np.int64)
    mag = np.where(codes < 0, -codes - 1, codes)
    nbits = np.zeros(mag.shape, np.float64)
    nz = mag > 0
    nbits[nz] = np.floor(np.log2(mag[nz])) + 1
    return np.where(codes == 0, 0.0, nbits + (codes < 0))


def layer_report(layer: Any) -> dict[str, Any]:
    """EBOPs of one calibrated HGQ2 QDense in both definitions, with the mean widths behind them."""
    from keras import ops

    n_in = int(layer.kernel.shape[0])
    bits_x = np.asarray(ops.convert_to_numpy(layer.iq.fbits_((1, n_in))), np.float64).reshape(-1)
    q_w = np.asarray(ops.convert_to_numpy(layer.qkernel), np.float64)
    f_w = np.asarray(ops.convert_to_numpy(layer.kq.quantizer.f), np.float64)
    bits_w = value_bits(q_w, f_w)
    ebops = float(bits_x @ bits_w.sum(axis=1))
    if layer.bias is not None:
        q_b = np.asarray(ops.convert_to_numpy(layer.qbias), np.float64)
        ebops += float(value_bits(q_b, np.asarray(ops.convert_to_numpy(layer.bq.quantizer.f))).sum())
    nonzero = q_w != 0
    return {'layer': layer.name, 'hgq2_ebops': float(ops.convert_to_numpy(layer.ebops)), 'common_ebops': ebops,
            'input_bits': round(float(bits_x.mean()), 2), 'nonzero_weights': int(nonzero.sum()),
            'weight_bits': round(float(bits_w[nonzero].mean()), 2) if nonzero.any() else 0.0,
            'hgq2_weight_bits': round(float(np.mean(ops.convert_to_numpy(layer.kq.bits_(q_w.shape)))), 2)}


def thin(entries: list[Any], ratio: float, min_val: float, max_val: float = 1.0) -> list[Any]:
    """(path, [val_accuracy, ebops]) entries, most accurate first: each kept one costs at most `ratio` x the EBOPs
    of the last one kept (the same rule as bench/front_vs_hgq2.py applies to ours); none below `min_val`; of those
    above `max_val` only the cheapest (more accuracy than that costs more and is not asked for)."""
    kept: list[Any] = []
    for e in sorted(entries, key=lambda e: -float(e[1][1])):
        if float(e[1][0]) >= min_val and (not kept or float(e[1][1]) <= ratio * float(kept[-1][1][1])):
            kept.append(e)
    above = [e for e in kept if float(e[1][0]) > max_val]
    kept = [e for e in kept if float(e[1][0]) <= max_val] + above[-1:]
    return sorted(kept, key=lambda e: float(e[1][1]))


def save_comb(model: Any, logits: np.ndarray, out_dir: Path, epoch: int) -> dict[str, Any]:
    """HGQ2's RTL flow up to the logic: `da4ml.converter.trace_model` (HGQ2's tracer plugin) -> `comb_trace`; the
    CombLogic goes to a JSON file that da4ml in any venv reads back, with the Keras logits to check it against."""
    from da4ml.converter import trace_model
    from da4ml.trace import comb_trace

    out_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    inp, out = trace_model(model)
    comb = comb_trace(inp, out)
    comb_file, logits_file = out_dir / f'epoch={epoch}.json', out_dir / f'epoch={epoch}.npy'
    comb.save(comb_file)
    np.save(logits_file, np.asarray(logits, np.float64))
    return {'comb': str(comb_file), 'keras_test_logits': str(logits_file), 'da4ml_cost': float(comb.cost),
            'trace_s': round(time.perf_counter() - t, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=Path, required=True,
                        help='.npz with x_train, y_train, x_val, y_val, x_test, y_test')
    parser.add_argument('--epochs', type=int, default=200)
    parser.add_argument('--batch-size', type=int, default=1024)
    parser.add_argument('--lr', type=float, default=0.003)
    parser.add_argument('--beta-start', type=float, default=1e-7)
    parser.add_argument('--beta-end', type=float, default=1e-4)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--calibration-samples', type=int, default=20_000, help='first N training samples')
    parser.add_argument('--workdir', type=Path, default=Path('hgq2_pareto'), help='checkpoints go here')
    parser.add_argument('--out', type=Path, required=True, help='result JSON')
    parser.add_argument('--thin', type=float, default=1.0,
                        help='evaluate only checkpoints at most THIN x the EBOPs of the last one kept, most '
                             'accurate first (1: all)')
    parser.add_argument('--min-val-accuracy', type=float, default=0.0, help='skip checkpoints below this')
    parser.add_argument('--max-val-accuracy', type=float, default=1.0,
                        help='of the checkpoints above this, keep only the cheapest')
    parser.add_argument('--comb-dir', type=Path,
                        help="also trace each calibrated checkpoint with da4ml's converter (HGQ2's own RTL flow) and "
                             'save its CombLogic (epoch=N.json) and its Keras test logits (epoch=N.npy) here, for '
                             'bench/front_vs_hgq2.py to write, simulate and synthesize')
    args = parser.parse_args()

    import importlib.metadata as md

    import keras

    import hgq  # HGQ2's package

    if Path(hgq.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2] / 'hgq'):
        sys.exit(f'imported our own hgq from {hgq.__file__}, not HGQ2: run this with the HGQ2 venv interpreter')
    from hgq.utils import trace_minmax
    from hgq.utils.sugar import BetaScheduler, FreeEBOPs, ParetoFront, PieceWiseSchedule

    from hgq.layers import QDense

    with np.load(args.data) as d:
        data = {k: d[k] for k in d.files}
    x, y = data['x_train'], data['y_train']

    class First(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.t = time.perf_counter()

    class EpochTimer(keras.callbacks.Callback):
        """Wall time per epoch (epoch end to epoch end) and of the epoch-end callbacks (from `first`'s
        on_epoch_end to this one's), as bench/pareto_vs_hgq2.py measures ours. Must be the last callback."""

        def __init__(self, first: First) -> None:
            super().__init__()
            self.first = first

        def on_train_begin(self, logs: Any = None) -> None:
            self.epoch_s: list[float] = []
            self.callbacks_s: list[float] = []
            self.rows: list[dict[str, float]] = []
            self._last = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            now = time.perf_counter()
            self.epoch_s.append(now - self._last)
            self.callbacks_s.append(now - self.first.t)
            self._last = now
            logs = logs or {}
            self.rows.append({'epoch': epoch + 1, **{k: float(logs[k]) for k in
                                                     ('loss', 'accuracy', 'val_accuracy', 'ebops', 'beta')
                                                     if k in logs}})
            if (epoch + 1) % 10 == 0 or epoch == 0:
                r = self.rows[-1]
                print(f'[hgq2] epoch {epoch + 1}/{args.epochs}: val_accuracy {r.get("val_accuracy", 0):.4f}, '
                      f'EBOPs {r.get("ebops", 0):,.0f}, beta {r.get("beta", 0):.3g}, {self.epoch_s[-1]:.2f} s',
                      flush=True)

    keras.utils.set_random_seed(args.seed)
    layers: list[Any] = [keras.Input((WIDTHS[0],))]
    for n, units in enumerate(WIDTHS[1:]):
        last = n == len(WIDTHS) - 2  # HGQ2's default quantizer configs: nothing but beta0 passed
        layers.append(QDense(units, activation=None if last else 'relu', name=f'dense{n}', beta0=args.beta_start))
    model = keras.Sequential(layers, name='hgq2_jets')
    steps = -(-len(x) // args.batch_size)
    lr = keras.optimizers.schedules.CosineDecay(args.lr, steps * args.epochs, alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])
    schedule = PieceWiseSchedule([(0, args.beta_start, 'log'), (args.epochs, args.beta_end, 'constant')])
    ckpt_dir = args.workdir / 'checkpoints'
    front = ParetoFront(ckpt_dir, ['val_accuracy', 'ebops'], [1, -1], fname_format='epoch={epoch}.keras')
    first = First()
    timer = EpochTimer(first)
    load_before = os.getloadavg()
    print(f'[hgq2] training {args.epochs} epochs on {len(x):,} samples, beta {args.beta_start:g} -> '
          f'{args.beta_end:g} (log), backend {keras.backend.backend()}', flush=True)
    t = time.perf_counter()
    model.fit(x, y, validation_data=(data['x_val'], data['y_val']), epochs=args.epochs, batch_size=args.batch_size,
              shuffle=True, verbose=0, callbacks=[first, BetaScheduler(schedule), FreeEBOPs(), front, timer])
    train_s = time.perf_counter() - t
    load_after = os.getloadavg()

    x_cal = x[:args.calibration_samples]
    points = []
    t = time.perf_counter()
    entries = sorted(zip(front.paths, front.record, strict=True), key=lambda e: float(e[1][1]))
    found = len(entries)
    entries = thin(entries, args.thin, args.min_val_accuracy, args.max_val_accuracy)
    if len(entries) < found:
        print(f'[hgq2] {found} Pareto checkpoints, {len(entries)} kept (--thin {args.thin:g}, '
              f'--min-val-accuracy {args.min_val_accuracy:g})', flush=True)
    print(f'[hgq2] {len(entries)} Pareto checkpoints: trace_minmax on {len(x_cal):,} samples, test accuracy',
          flush=True)
    for n, (path, record) in enumerate(entries, 1):
        ckpt = keras.models.load_model(path)
        # one batch: trace_minmax takes the min/max over all batches, so the batch size changes only its speed
        ebops = trace_minmax(ckpt, x_cal, batch_size=len(x_cal))
        logits = ckpt.predict(data['x_test'], batch_size=4096, verbose=0)
        per_layer = [layer_report(layer) for layer in ckpt.layers if getattr(layer, 'enable_ebops', False)]
        point = {'epoch': int(Path(path).stem.split('=')[1]) + 1, 'file': str(path),
                 'val_accuracy': float(record[0]), 'ebops_training': float(record[1]),
                 'test_accuracy': float(np.mean(np.argmax(logits, axis=-1) == data['y_test'])),
                 'hgq2_ebops': float(ebops), 'common_ebops': sum(r['common_ebops'] for r in per_layer),
                 'layers': per_layer}
        if args.comb_dir is not None:
            point.update(save_comb(ckpt, logits, args.comb_dir, point['epoch']))
        points.append(point)
        if n % 10 == 0 or n == len(entries):
            print(f'[hgq2]   {n}/{len(entries)}: epoch {point["epoch"]}, test {point["test_accuracy"]:.4f}, '
                  f'EBOPs HGQ2 {point["hgq2_ebops"]:,.0f} / common {point["common_ebops"]:,.0f}', flush=True)
    evaluate_s = time.perf_counter() - t

    fit_s = [e - c for e, c in zip(timer.epoch_s, timer.callbacks_s, strict=True)]
    later = slice(1, None)
    result = {
        'impl': 'hgq2',
        'backend': keras.backend.backend(),
        'versions': {'hgq2': hgq.__version__, 'keras': keras.__version__, 'numpy': np.__version__,
                     'quantizers': md.version('quantizers'), 'jax': md.version('jax'),
                     'python': sys.version.split()[0]},
        'settings': {'epochs': args.epochs, 'batch_size': args.batch_size, 'lr': args.lr,
                     'lr_schedule': 'CosineDecay(lr, steps_per_epoch*epochs, alpha=0.01)',
                     'beta': f'PieceWiseSchedule([(0, {args.beta_start}, "log"), ({args.epochs}, {args.beta_end}, '
                             '"constant")])', 'seed': args.seed, 'calibration_samples': int(len(x_cal)),
                     'quantizers': {k: dict(v) for k, v in (('iq', model.layers[0].iq.config),
                                                            ('kq', model.layers[0].kq.config),
                                                            ('bq', model.layers[0].bq.config))}},
        'beta_first_last': [schedule(0), schedule(args.epochs - 1)],
        'train_s': round(train_s, 2),
        'evaluate_s': round(evaluate_s, 2),
        'epoch_s': timer.epoch_s,
        'callbacks_s': timer.callbacks_s,
        'first_epoch_s': timer.epoch_s[0] if timer.epoch_s else None,
        'steady_epoch_s': statistics.median(timer.epoch_s[later]) if len(timer.epoch_s) > 1 else None,
        'steady_fit_s': statistics.median(fit_s[later]) if len(fit_s) > 1 else None,
        'steady_callbacks_s': statistics.median(timer.callbacks_s[later]) if len(fit_s) > 1 else None,
        'best_epoch_s': min(timer.epoch_s[later], default=None),
        'best_fit_s': min(fit_s[later], default=None),
        'loadavg_before': load_before,
        'loadavg_after': load_after,
        'history': timer.rows,
        'front': points,
    }
    args.out.write_text(json.dumps(result, indent=2, default=str) + '\n')
    print(f'[hgq2] wrote {args.out}', flush=True)


if __name__ == '__main__':
    main()
