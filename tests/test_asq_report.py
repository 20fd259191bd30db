"""What the reports say about ASQ: β over a data set (`hgq report`) and the adapter's share (`hgq synth`).

One tiny ASQ model per module; β recorded from Keras must equal the emulator's β node, the histogram must be
written, and the da4ml attribution must name the adapter's layers and add up to the whole design.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from hgq import ir
from hgq import layers as L
from hgq import report as rep
from hgq.training import calibrate
from hgq.workflow import plots
from hgq.workflow.report import beta_distributions, beta_table


@pytest.fixture(scope='module')
def tiny() -> tuple[keras.Model, np.ndarray]:
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    h = L.QDense(8, activation='relu', name='d0')(inp)
    out = L.QDense(3, input_quantizer={'scheme': 'asq', 'bits': 2}, name='d1')(h)
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(3000, 4)).astype('float32')
    model.compile(keras.optimizers.Adam(3e-3), 'mse')
    model.fit(x[:1024], np.random.default_rng(1).normal(size=(1024, 3)), epochs=2, batch_size=256, verbose=0)
    calibrate(model, x[:64])
    return model, x


def test_beta_distribution_is_the_hardware_beta(tiny, tmp_path: Path) -> None:
    model, x = tiny
    rows = beta_distributions(model, x, batch_size=1000)
    assert [r['quantizer'] for r in rows] == ['d1_input_quantizer']
    graph = ir.from_model(model)
    beta_node = next(n for n in graph.nodes if n.op == 'scaled_encode').inputs[1]
    expected = ir.run(graph, x, return_all=True)[beta_node].values().reshape(-1)
    got = rows[0]['values']
    assert got.shape == expected.shape
    assert int(np.sum(got != expected)) == 0
    assert rows[0]['min'] == expected.min() and rows[0]['max'] == expected.max()
    assert rows[0]['median'] == float(np.median(expected))
    assert rows[0]['distinct'] == np.unique(expected).size
    assert 'd1_input_quantizer' in beta_table(rows)
    png = plots.plot_beta_histograms(rows, tmp_path / 'beta.png', 'tiny')
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert beta_distributions(keras.Sequential([keras.Input((4,)), L.QDense(2)]), x[:10]) == []


def test_adapter_share_names_its_layers_and_adds_up(tiny, tmp_path: Path) -> None:
    from hgq.export.rtl import write_rtl

    model, _ = tiny
    graph = ir.from_model(model)
    costs = rep.da4ml_node_costs(graph)
    rows = rep.asq_adapters(graph, costs)
    assert len(rows) == 1
    row = rows[0]
    assert row['quantizer'] == 'd1_input_quantizer' and row['consumer'] == 'd1'
    assert row['adapter_layers'] == ['d1_input_quantizer_fc1', 'd1_input_quantizer_fc2', 'd1_input_quantizer_beta']
    assert row['adapter_cost'] > 0 and row['arithmetic_cost'] > 0
    total = sum(c['cost'] for c in costs.values())
    assert row['share'] == pytest.approx((row['adapter_cost'] + row['arithmetic_cost']) / total, abs=1e-4)
    assert 0 < row['beta_delay'] < row['output_delay']
    prj = write_rtl(graph, tmp_path / 'rtl', 'tiny', latency_cutoff=-1)  # the same trace, optimized as a whole
    assert total == pytest.approx(float(prj.comb.cost), rel=0.02)
    table = rep.asq_table(rows, luts=1000)
    assert 'd1_input_quantizer_fc2' in table and f'| {round(row["share"] * 1000)} |' in table


def test_synth_report_shows_the_adapter(tiny, tmp_path: Path) -> None:
    from exactness import require_tools

    from hgq.workflow.synth import SynthSettings, synthesize_model

    require_tools()
    model, _ = tiny
    report, paths = synthesize_model(model, SynthSettings(str(tmp_path / 'synth'), counts_only=True))
    rows = report['asq_adapters']
    assert [r['adapter_layers'] for r in rows] == [['d1_input_quantizer_fc1', 'd1_input_quantizer_fc2',
                                                    'd1_input_quantizer_beta']]
    text = paths['md'].read_text(encoding='utf-8')
    assert '## ASQ adapters' in text and f'| {round(rows[0]["share"] * report["synthesis"]["LUT"])} |' in text


def test_output_scaling_rewrite_gives_the_same_numbers(tiny) -> None:
    from hgq.ir.rewrite import factor_sample_scale

    model, x = tiny
    graph = ir.from_model(model)
    rewritten = factor_sample_scale(graph)
    ops = [n.op for n in rewritten.nodes]
    assert ops[-3:] == ['dense', 'mul', 'affine'] and ops.count('mul') == 1  # beta now scales d1's outputs
    assert rewritten.node('d1_unscaled').inputs == [next(n.name for n in graph.nodes if n.op == 'scaled_encode')]
    for scale in (1.0, 4.0):  # in range and beyond
        assert int(np.sum(ir.predict(rewritten, scale * x) != ir.predict(graph, scale * x))) == 0
        assert int(np.sum(ir.predict(rewritten, scale * x) != model.predict(scale * x, verbose=0))) == 0
    assert factor_sample_scale(rewritten) is rewritten  # nothing left to rewrite
