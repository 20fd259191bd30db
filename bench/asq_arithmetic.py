"""ASQ's exact arithmetic, option by option: what each costs in LUTs, FFs and latency, and its accuracy.

Options (docs/quantizers.md "## ASQ", "### Cheapest exact arithmetic"):
- `a` thresholds: today's lowering. Per sample, the 2^b - 1 thresholds c_j·β (constant products of β), one
  comparison per element and threshold (`scaled_encode`), then x̂ = code·β (`mul`, one product per input),
  then the layer's adder graph on the wide x̂.
- `b` output scaling: `hgq.ir.rewrite.factor_sample_scale`: W·(code·β) + b = β·(W·code) + b, so the adder
  graph sees the narrow codes and β multiplies each OUTPUT (one product per output). Exact: every product and
  sum of the IR is exact, so the next quantizer sees the same number.
- `c` reciprocal table of a quantized β (x·(1/β) against unscaled thresholds): not built. It is exact only
  when round(x·r(β)) reproduces the codes for every x and β; with r(β) a finite fixed-point reciprocal of a β
  that is not a power of two, x·r(β) ≠ x/β, and an x within |x/β − x·r(β)| of a decision point gets the
  other code. No finite table is exact for every β of a fixed-point β format (1/β has infinitely many bits for
  every β ≠ 2^k), so `c` cannot be exact in general; it would need β restricted to powers of two (then `a`
  and `c` are the same shifts).

Models (`--task`): the jets project's 16-64-32-32-5 MLP, ASQ (`--abits`, unsigned, after ReLU) on the inputs
of the three hidden-to-hidden/output dense layers; or the small CNN of bench/quantizers.py on 14x14
Fashion-MNIST (conv4-pool-conv8-pool-dense16-10), ASQ on the inputs of the second conv and both dense
layers. The first layer's input is HGQ; weights LSQ (`--wbits`) or POST (same bits); trained `--epochs`
epochs; calibrated on 20,000 training samples. For each design and option:
test accuracy (the emulator), Keras == emulator and RTL == emulator mismatches on the test set in range and
×4 beyond (`==`), da4ml's LUT estimate, and (unless --no-synth) Yosys LUTs/FFs of the pipelined design
(latency_cutoff 5, 5 ns clock) with its latency in cycles. RTL: da4ml's C++ interpreter of the same logic
(--verilator: a Verilator build too, minutes per design).

    KERAS_BACKEND=tensorflow nice -n 10 python bench/asq_arithmetic.py --epochs 10
    KERAS_BACKEND=tensorflow nice -n 10 python bench/asq_arithmetic.py --task fmnist14 --epochs 10 \
        --json bench/results/asq_arithmetic_fmnist14.json

Prints a table and writes bench/results/asq_arithmetic.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, format_table, machine_info, write_json
from tasks import TASKS

RESULTS = REPO / 'bench' / 'results'


def jets_mlp(wscheme: str, wbits: int, abits: int) -> Any:
    import keras

    from hgq.layers import QDense

    model = keras.Sequential([keras.Input((16,))], name=f'jets_asq_{wscheme}')
    for n, units in enumerate((64, 32, 32, 5)):
        kwargs: dict[str, Any] = {'kernel_quantizer': {'scheme': wscheme, 'bits': wbits}}
        if n:
            kwargs['input_quantizer'] = {'scheme': 'asq', 'bits': abits}
        model.add(QDense(units, activation=None if units == 5 else 'relu', name=f'dense{n}', **kwargs))
    return model


def fmnist14_cnn(wscheme: str, wbits: int, abits: int) -> Any:
    import keras

    from hgq import layers as L

    def q(n: int) -> dict[str, Any]:
        asq = {'input_quantizer': {'scheme': 'asq', 'bits': abits}} if n else {}
        return {'kernel_quantizer': {'scheme': wscheme, 'bits': wbits}, **asq}

    return keras.Sequential([keras.Input((14, 14, 1)), L.QConv2D(4, 3, activation='relu', name='conv0', **q(0)),
                             L.QMaxPooling2D(2), L.QConv2D(8, 3, activation='relu', name='conv1', **q(1)),
                             L.QMaxPooling2D(2), L.QFlatten(), L.QDense(16, activation='relu', name='dense2', **q(2)),
                             L.QDense(10, name='dense3', **q(3))], name=f'fmnist14_asq_{wscheme}')


MODELS = {'jets': jets_mlp, 'fmnist14': fmnist14_cnn}


def measure(graph: Any, keras_y: np.ndarray | None, x: np.ndarray, y: np.ndarray, work: Path, name: str,
            synth: bool, verilator: bool) -> dict[str, Any]:
    from hgq import ir
    from hgq import report as rep
    from hgq.export.rtl import RTLProject, write_rtl
    from hgq.workflow.synth import _on_port_grid

    row: dict[str, Any] = {}
    y_emul = ir.predict(graph, x)
    row['test_accuracy'] = float(np.mean(y_emul[: len(y)].argmax(1) == y))
    if keras_y is not None:
        row['keras_vs_emulator'] = int(np.sum(keras_y != y_emul))
    prj = write_rtl(graph, work / name, name, latency_cutoff=5, clock_period=5.0)
    (x_port,), _ = _on_port_grid(prj.ports, [x])  # both fed the inputs as the RTL port carries them
    y_port = ir.predict(graph, x_port)
    y_rtl = np.asarray(prj.predict_comb(x_port, strict=False), dtype=np.float64)
    row['rtl_interpreter_vs_emulator'] = int(np.sum(y_rtl != y_port))
    row['outputs_compared'] = int(y_emul.size)
    row['latency_cycles'] = int(prj.latency.cycles)
    row['da4ml_cost'] = float(prj.comb.cost)
    adapters = rep.asq_adapters(graph)
    row['asq_share_da4ml'] = round(sum(a['share'] for a in adapters), 4)
    if verilator:
        sim = RTLProject(prj.traced, work / f'{name}_sim', name, 5, 5.0)
        sim.compile(nproc=2)
        row['verilator_vs_emulator'] = int(np.sum(np.asarray(sim.predict(x_port, strict=False)) != y_port))
    if synth:
        s = prj.synthesize(work / name / 'synth')
        row.update(LUT=s['LUT'], FF=s['FF'], CARRY4=s.get('CARRY4'))
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', default='jets', choices=list(MODELS))
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--wbits', type=int, default=4)
    parser.add_argument('--abits', type=int, default=3)
    parser.add_argument('--weights', nargs='+', default=['lsq', 'post'])
    parser.add_argument('--test-samples', type=int, default=20_000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-synth', action='store_true')
    parser.add_argument('--verilator', action='store_true')
    parser.add_argument('--json', type=Path, default=RESULTS / 'asq_arithmetic.json')
    args = parser.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import keras

    from hgq import ir
    from hgq.ir.rewrite import factor_sample_scale
    from hgq.training import calibrate
    from hgq.workflow.report import CALIBRATION_SAMPLES

    data = TASKS[args.task].data
    xt, yt = data.x_test[: args.test_samples], data.y_test[: args.test_samples]
    x = np.concatenate([xt, 4 * xt]).astype('float32')  # in range and x4 beyond
    designs = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='asq-arith-') as tmp:
        for wscheme in args.weights:
            keras.utils.set_random_seed(args.seed)
            model = MODELS[args.task](wscheme, args.wbits, args.abits)
            model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=['accuracy'],
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            t0 = time.perf_counter()
            model.fit(data.x_train, data.y_train, batch_size=1024, epochs=args.epochs, verbose=0)
            train_s = time.perf_counter() - t0
            calibrate(model, data.x_train[:CALIBRATION_SAMPLES])
            keras_y = model.predict(x, batch_size=4096, verbose=0).astype(np.float64)
            graph_a = ir.from_model(model)
            graph_b = factor_sample_scale(graph_a)
            for option, graph in (('a', graph_a), ('b', graph_b)):
                row = measure(graph, keras_y, x, yt, Path(tmp), f'{wscheme}_{option}', not args.no_synth,
                              args.verilator)
                row.update(weights=wscheme, option=option, train_s=round(train_s, 1),
                           rewritten=sum(n.name.endswith('_unscaled') for n in graph.nodes))
                designs.append(row)
                print({k: row.get(k) for k in ('weights', 'option', 'test_accuracy', 'LUT', 'FF', 'latency_cycles',
                                               'da4ml_cost', 'keras_vs_emulator', 'rtl_interpreter_vs_emulator')},
                      flush=True)
            keras.backend.clear_session()
    header = ['weights', 'option', 'test acc', 'Yosys LUT', 'FF', 'latency (cycles @5 ns)', 'da4ml est.',
              'ASQ share (da4ml)', 'Keras!=emu', 'RTL!=emu', 'outputs']
    rows = [[d['weights'], d['option'], f"{d['test_accuracy']:.4f}", d.get('LUT'), d.get('FF'), d['latency_cycles'],
             f"{d['da4ml_cost']:,.0f}", f"{100 * d['asq_share_da4ml']:.1f}%", d['keras_vs_emulator'],
             d['rtl_interpreter_vs_emulator'], d['outputs_compared']] for d in designs]
    print(format_table(header, rows))
    write_json(args.json, {'benchmark': 'asq_arithmetic', 'command': ' '.join(
        ['bench/asq_arithmetic.py', *(sys.argv[1:] if argv is None else argv)]), 'machine': machine_info(),
        'settings': vars(args) | {'json': str(args.json)}, 'total_s': round(time.perf_counter() - start, 1),
        'designs': designs})
    print(f'\nwrote {args.json}')


if __name__ == '__main__':
    main()
