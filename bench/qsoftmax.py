"""QSoftmax in hardware: Yosys LUTs/FFs and latency for 5 and 10 classes, and argmax agreement on jets.

Synthesis: a QQuantize (the logits' format) followed by QSoftmax alone, calibrated on Gaussian logits
(σ = 3), written by the RTL backend, Verilator-checked against the emulator, synthesized by Yosys.
Argmax: a 16-32-5 hgq MLP trained on projects/jets (its split), with QSoftmax appended after training;
the fraction of test samples whose QSoftmax argmax differs from the float softmax's (of the same exact
logits). Prints a table and writes bench/results/qsoftmax.json.

    .venv/bin/python bench/qsoftmax.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_info  # noqa: E402

SOFTMAX = {'exp_quantizers': ({'f_init': 3}, {'f_init': 6}), 'inverse_quantizers': ({'f_init': 4}, {'f_init': 6})}


def synth_softmax(classes: int, work: Path) -> dict:
    import keras

    from hgq import ir
    from hgq import layers as L
    from hgq.export.rtl import write_rtl
    from hgq.training import calibrate

    inp = keras.Input((classes,))
    y = L.QSoftmax(**SOFTMAX)(L.QQuantize({'f_init': 3})(inp))
    model = keras.Model(inp, y)
    x = (3 * np.random.default_rng(classes).normal(size=(20_000, classes))).astype('float32')
    calibrate(model, x)
    graph = ir.from_model(model)
    prj = write_rtl(graph, work / f'softmax{classes}', f'softmax{classes}', latency_cutoff=5).write().compile()
    xs = _on_port(prj, x)
    mismatches = int((prj.predict(xs) != ir.predict(graph, xs)).sum())
    report = prj.synthesize()
    return {'classes': classes, 'LUT': report['LUT'], 'FF': report['FF'], 'latency_cycles': report['latency']['cycles'],
            'verilator_mismatches': mismatches, 'outputs_checked': int(xs.size)}


def _on_port(prj, x: np.ndarray) -> np.ndarray:
    from hgq.quantizers.fixed_point import quantize_np

    port = prj.ports[0]
    return quantize_np(x.astype(np.float64), port.fmt.k, port.fmt.i, port.fmt.f, 'TRN', port.overflow)


def argmax_agreement(epochs: int) -> dict:
    import keras

    from hgq import layers as L
    from hgq.training import calibrate
    from hgq.workflow.project import find_project

    project = find_project('jets')
    data = project.load_data(project.config())
    inp = keras.Input((16,))
    logits = L.QDense(5)(L.QDense(32, activation='relu')(inp))
    model = keras.Model(inp, logits)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=1024, verbose=0)
    full = keras.Model(inp, L.QSoftmax(**SOFTMAX)(logits))
    calibrate(full, data.x_train[:20_000])
    z = model.predict(data.x_test, verbose=0, batch_size=4096)
    p = full.predict(data.x_test, verbose=0, batch_size=4096)
    differ = int(np.sum(np.argmax(p, axis=1) != np.argmax(z, axis=1)))
    ties = int(np.sum(np.sum(p == p.max(axis=1, keepdims=True), axis=1) > 1))
    return {'test_samples': len(z), 'argmax_differs': differ, 'argmax_differs_fraction': differ / len(z),
            'quantized_ties': ties, 'accuracy_float_softmax': float(np.mean(np.argmax(z, 1) == data.y_test)),
            'accuracy_qsoftmax': float(np.mean(np.argmax(p, 1) == data.y_test)), 'epochs': epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'qsoftmax.json'))
    args = parser.parse_args()
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [synth_softmax(c, Path(tmp)) for c in (5, 10)]
    agreement = argmax_agreement(args.epochs)
    print(f'{"classes":>8} {"LUT":>7} {"FF":>6} {"cycles":>7} {"verilator mismatches":>21}')
    for r in rows:
        print(f'{r["classes"]:>8} {r["LUT"]:>7} {r["FF"]:>6} {r["latency_cycles"]:>7} '
              f'{r["verilator_mismatches"]:>10} / {r["outputs_checked"]}')
    print(f'jets test: argmax differs on {agreement["argmax_differs"]} of {agreement["test_samples"]} '
          f'({100 * agreement["argmax_differs_fraction"]:.3f}%), {agreement["quantized_ties"]} quantized ties; '
          f'accuracy {agreement["accuracy_float_softmax"]:.4f} (float softmax) vs '
          f'{agreement["accuracy_qsoftmax"]:.4f} (QSoftmax)')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'synthesis': rows, 'argmax': agreement, 'softmax_config': SOFTMAX,
                               'machine': machine_info(), 'seconds': time.time() - start}, indent=1, default=str))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
