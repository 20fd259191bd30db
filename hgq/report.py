"""Resource reports of an exported design: per-layer EBOPs from the IR, da4ml's per-stage estimate, Yosys totals.

Used by `hgq synth` (hgq/cli.py), which fills a plain dict (see `write_report`) and calls

    layers = ebops_per_layer(graph)              # per Keras layer, from the IR's exact formats
    stages = da4ml_stages(project)               # per pipeline stage, da4ml's LUT estimate and registers
    paths = write_report(out_dir, report)        # report.md, report.json, resources.png

What each number is (also written into every report, `DEFINITIONS`):

- EBOPs per layer: Σ over every multiplication of bits(x)·bits(w), the weight's bits 0 where the weight is 0,
  plus Σ bits(b) over the non-zero biases (docs/ebops.md). bits(x) is the width of the layer's input
  quantizer as traced into the IR (`hgq.ir.analyze`), bits(w) the width of each weight's own format. For
  a calibrated model this equals `hgq.training.exact_ebops` layer by layer. It is a cost *proxy*, computed
  without any synthesis.
- da4ml stage cost: da4ml's own LUT estimate of each pipeline stage's adder graph (`CombLogic.cost`),
  and the register bits at the stage's output. Pipeline stages follow the delay budget, not layer
  boundaries.
- Yosys LUT/FF/CARRY4/longest path: one flattened `synth_xilinx` run of the whole design (7-series
  primitives, no place and route), so there is no per-layer split of these.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .ir.analysis import TensorInfo, analyze
from .ir.graph import Graph, Node

__all__ = ['DEFINITIONS', 'asq_adapters', 'asq_table', 'da4ml_node_costs', 'da4ml_stages', 'ebops_per_layer',
           'markdown', 'node_ebops', 'plot_resources', 'write_report']

DEFINITIONS = {
    'EBOPs': 'per layer, from the IR: sum over every multiplication of bits(input) x bits(weight) (a weight '
             'equal to 0 costs 0) plus the bits of every non-zero bias (affine: x scale and offset; '
             'table: bits(in) x bits(out) per element); a cost proxy, no synthesis involved (docs/ebops.md)',
    'da4ml_cost': "da4ml's LUT estimate of the adder graphs it writes (whole design, and per pipeline stage)",
    'reg_bits': 'flip-flop bits at the output of a pipeline stage (da4ml); the design total includes the inputs',
    'LUT': 'Yosys synth_xilinx, whole design flattened: LUT1..LUT6 cells (no place and route)',
    'FF': 'Yosys: flip-flop cells (FDRE/FDSE/FDCE/FDPE), the pipeline registers',
    'CARRY4': 'Yosys: 7-series carry-chain cells',
    'longest_path_cells': 'Yosys ltp -noff: the longest chain of cells between registers/ports, a depth, not a '
                          'timing',
    'latency': 'clock cycles from input to output (0: combinational) x the stated clock period; the clock is '
               'a target, no timing analysis is done',
    'mismatches': 'outputs where the Verilator simulation of the RTL differs from the exact emulator '
                  '(hgq.ir.predict), both given the same inputs truncated to the RTL input port',
}


# ------------------------------------------------------------------------------------------- EBOPs from the IR
def element_bits(fmt: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(fmt.width, shape).astype(np.float64)


def weight_bits(values: np.ndarray, fmt: Any) -> np.ndarray:
    """Per-weight widths, 0 where the weight is 0 (a pruned or zero weight needs no multiplier)."""
    return np.where(values != 0, element_bits(fmt, values.shape), 0.0)


def node_ebops(node: Node, infos: dict[str, TensorInfo | None]) -> float:
    """EBOPs of one IR node (0 for ops that multiply nothing: quantize, relu, pooling, add, ...)."""
    a = node.attrs
    if node.op in ('dense', 'conv'):
        x = infos[node.inputs[0]]
        w = a['weight']
        bits_x = element_bits(x.fmt, x.lo.shape)
        bits_w = weight_bits(w, a['weight_fmt'])
        if node.op == 'conv':  # every output position is its own set of multiplications
            from .ir.windows import conv_windows

            bits_x = conv_windows(bits_x, w.shape[:-2], a['strides'], a['padding'])
        total = float(np.tensordot(bits_x, bits_w, axes=w.ndim - 1).sum())
        if a.get('bias') is not None:
            total += float(weight_bits(a['bias'], a['bias_fmt']).sum())
        return total
    if node.op == 'affine':
        x = infos[node.inputs[0]]
        scale = np.broadcast_to(a['scale'], node.shape)
        scale_bits = weight_bits(scale, a['scale_fmt'].broadcast(node.shape))
        total = float((element_bits(x.fmt, node.shape) * scale_bits).sum())
        return total + float(weight_bits(np.asarray(a['offset']), a['offset_fmt']).sum())
    if node.op == 'table':
        x = infos[node.inputs[0]]
        return float((element_bits(x.fmt, node.shape) * element_bits(a['out_fmt'], node.shape)).sum())
    return 0.0


def ebops_per_layer(graph: Graph, infos: dict[str, TensorInfo | None] | None = None) -> list[dict[str, Any]]:
    """One row per Keras layer (IR nodes grouped by `node.source`, in graph order).

    Each row: layer, ops (the IR ops it became), ebops, and for weighted layers weights (total), nonzero,
    input_bits (mean width of the input elements), weight_bits (mean width of the non-zero weights),
    output_bits (mean width of the layer's last tensor).
    """
    infos = infos if infos is not None else analyze(graph)
    rows: dict[str, dict[str, Any]] = {}
    for node in graph.nodes:
        if node.op == 'input':
            continue
        name = node.source or node.name
        row = rows.setdefault(name, {'layer': name, 'ops': [], 'ebops': 0.0})
        row['ops'].append(node.op)
        row['ebops'] += node_ebops(node, infos)
        info = infos[node.name]
        if info is not None:
            row['output_bits'] = round(float(element_bits(info.fmt, info.lo.shape).mean()), 2)
        if node.op in ('dense', 'conv'):
            w = node.attrs['weight']
            x = infos[node.inputs[0]]
            nonzero = w != 0
            row['weights'] = row.get('weights', 0) + int(w.size)
            row['nonzero'] = row.get('nonzero', 0) + int(nonzero.sum())
            row['input_bits'] = round(float(element_bits(x.fmt, x.lo.shape).mean()), 2)
            wbits = weight_bits(w, node.attrs['weight_fmt'])[nonzero]
            row['weight_bits'] = round(float(wbits.mean()), 2) if wbits.size else 0.0
    for row in rows.values():
        row['ebops'] = round(row['ebops'], 3)
    return list(rows.values())


# ------------------------------------------------------------------------------------------- da4ml per stage
def da4ml_stages(project: Any) -> list[dict[str, Any]]:
    """da4ml's figures per pipeline stage of an `hgq.export.rtl.RTLProject` (one row when combinational):
    stage, cost (LUT estimate), inputs/outputs (wires), reg_bits (register bits at its output; 0 when
    combinational), delay (da4ml delay units at the stage's slowest output)."""
    from da4ml.types import minimal_kif

    pipe = project.model._pipe if project.pipelined else None
    solutions = pipe.solutions if pipe is not None else (project.comb,)
    rows = []
    for n, sol in enumerate(solutions):
        n_in, n_out = sol.shape
        reg = int(sum(sum(minimal_kif(q)) for q in sol.out_qint)) if pipe is not None else 0
        start = float(min(sol.inp_latency, default=0.0))
        rows.append({'stage': n, 'cost': round(float(sol.cost), 1), 'inputs': int(n_in), 'outputs': int(n_out),
                     'reg_bits': reg, 'delay': float(sol.latency[1]) - start})
    return rows


# ------------------------------------------------------------------------------------------- writing
def format_value(v: Any) -> str:
    if v is None:
        return '-'
    if isinstance(v, float):
        return f'{v:,.0f}' if abs(v) >= 100 else f'{v:.4g}'
    if isinstance(v, int):
        return f'{v:,}'
    return str(v)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(format_value(v) for v in row) + ' |' for row in rows]
    return '\n'.join(lines)


def summary_table(report: dict[str, Any]) -> str:
    s, lat, d4 = report['synthesis'], report['latency'], report.get('da4ml', {})
    check = report.get('check') or {}
    rows = [
        ['LUT', s.get('LUT'), 'Yosys synth_xilinx (whole design, flattened)'],
        ['FF', s.get('FF'), f'Yosys; da4ml counts {format_value(d4.get("reg_bits", 0))} register bits'],
        ['CARRY4', s.get('CARRY4'), 'Yosys'],
        ['longest path (cells)', s.get('longest_path_cells'), 'Yosys ltp -noff: logic depth, not a timing'],
        ['latency', f'{lat["cycles"]} cycles = {lat["latency_ns"]:g} ns',
         f'at the stated {lat["clock_period_ns"]:g} ns clock (not timed: no place and route)'],
        ['da4ml LUT estimate', d4.get('cost_luts'), "da4ml's own cost model of the same logic"],
        ['EBOPs', report['ebops']['ir_total'], 'sum over layers, from the IR (see per-layer table)'],
    ]
    if check and check.get('skipped'):
        rows.append(['mismatches', 'not checked', check['skipped']])
    elif check:
        rows.append(['mismatches', f'{check["mismatches"]} / {check["outputs"]:,}',
                     f'{check["simulator"]} vs exact emulator, {check["inputs"]:,} inputs'])
    return markdown_table(['metric', 'value', 'what it is'], rows)


def layers_table(layers: list[dict[str, Any]]) -> str:
    total = sum(r['ebops'] for r in layers) or 1.0
    rows = [[r['layer'], ', '.join(r['ops']), r['ebops'], f'{100 * r["ebops"] / total:.1f}%',
             None if 'weights' not in r else f'{r["nonzero"]:,}/{r["weights"]:,}', r.get('input_bits'),
             r.get('weight_bits'), r.get('output_bits')] for r in layers]
    return markdown_table(['layer', 'IR ops', 'EBOPs', 'share', 'non-zero weights', 'mean input bits',
                   'mean weight bits', 'mean output bits'], rows)


def stages_table(stages: list[dict[str, Any]]) -> str:
    rows = [[s['stage'], s['cost'], s['inputs'], s['outputs'], s['reg_bits'], s['delay']] for s in stages]
    header = ['stage', 'da4ml LUT estimate', 'inputs', 'outputs', 'register bits out', 'delay (units)']
    return markdown_table(header, rows)


def timings_table(timings: dict[str, float | None]) -> str:
    rows = [[k, '-' if v is None else f'{v:.1f}'] for k, v in timings.items()]
    return markdown_table(['step', 'seconds'], rows)


def markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown (what report.md holds)."""
    check = report.get('check')
    parts = [
        f'# hgq synth: {report["checkpoint"]}',
        '',
        f'Top module `{report["top"]}` in `{report["rtl_dir"]}`; clock {report["settings"]["clock_period_ns"]:g} ns, '
        f'latency cutoff {report["settings"]["latency_cutoff"]:g} (da4ml delay units per stage; <= 0: '
        'combinational).',
        '',
        'Input port(s): ' + '; '.join(f'`{p}`' for p in report['input_ports']),
        '',
        '## Summary',
        '',
        summary_table(report),
        '',
    ]
    if check and check.get('skipped'):
        parts += [f'Check: **not simulated**. {check["skipped"]}', '']
    elif check:
        parts += [f'Check: {check["simulator"]} vs the exact emulator (`hgq.ir.predict`) on {check["inputs"]:,} '
                  f'inputs ({check["random"]:,} random over twice each input quantizer\'s range, '
                  f'{check["calibration"]:,} calibration), both fed the inputs as the RTL port carries them '
                  f'(truncated to its grid; {check["port_wrapped_values"]:,} values beyond its range wrapped or '
                  f'saturated): '
                  f'**{check["mismatches"]} mismatches in {check["outputs"]:,} outputs**. The port itself: the '
                  f'emulator fed the float inputs differs in {check["port_effect_outputs"]:,} outputs. The '
                  f'simulated Verilog (`{check["sim_dir"]}`) is byte for byte that of `{report["rtl_dir"]}`.', '']
    parts += [
        '## Per layer (EBOPs, from the IR)',
        '',
        layers_table(report['layers']),
        '',
        'Yosys flattens the design, so LUTs are not split by layer; EBOPs are the per-layer proxy.'
        + (f' Model check: `hgq.training.exact_ebops` = {report["ebops"]["model_exact"]:,.0f}.'
           if report['ebops'].get('model_exact') is not None else ''),
        '',
        *(['## ASQ adapters (per-sample step)', '',
           asq_table(report['asq_adapters'], report['synthesis'].get('LUT')), '',
           "Shares of da4ml's LUT estimate (each da4ml operation charged to the first IR node that needs it); "
           'the Yosys column scales the share to the whole design. Latency: the delay at which beta is ready, '
           "against the outputs' (da4ml delay units, combinational trace).", '']
          if report.get('asq_adapters') else []),
        '## Per pipeline stage (da4ml)',
        '',
        stages_table(report['da4ml']['stages']),
        '',
        'Stages are cut by da4ml\'s delay budget (`--latency-cutoff`), not at layer boundaries.',
        '',
        '## Timings',
        '',
        timings_table(report['timings_s']),
        '',
        ('Yosys ran in the background, beside the Verilator build and the simulation (`--jobs` >= 2); '
         '`yosys_wait` is how long the run then waited for it. ' if report['settings'].get('yosys_beside_verilator')
         else '') + '`total` is wall-clock time up to writing these files; `cpu` the CPU seconds of this process and '
        'the tools it ran (on a shared machine, wall-clock times vary with the load, CPU seconds much less).',
        '',
        '## What the numbers are',
        '',
        *[f'- **{k}**: {v}' for k, v in DEFINITIONS.items()],
        '',
        'Tools: ' + '; '.join(f'{k} {v}' for k, v in report.get('tools', {}).items()),
        '',
    ]
    return '\n'.join(parts)


def plot_resources(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """resources.png: EBOPs per layer (left) and da4ml's LUT estimate per pipeline stage (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = [r for r in report['layers'] if r['ebops'] > 0] or report['layers']
    stages = report['da4ml']['stages']
    fig = Figure(figsize=(11, 4.2), layout='constrained')
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[max(len(layers), 2), max(len(stages), 2)])
    names = [r['layer'] for r in layers]
    values = [r['ebops'] for r in layers]
    bars = ax1.bar(range(len(names)), values, color='tab:blue')
    ax1.bar_label(bars, labels=[f'{v:,.0f}' for v in values], fontsize=8)
    ax1.set_xticks(range(len(names)), names, rotation=30, ha='right', fontsize=8)
    ax1.set_ylabel('EBOPs (IR)')
    ax1.set_title(f'EBOPs per layer (total {report["ebops"]["ir_total"]:,.0f})', fontsize=10)
    costs = [s['cost'] for s in stages]
    bars = ax2.bar(range(len(stages)), costs, color='tab:orange', label='da4ml LUT estimate')
    ax2.bar_label(bars, labels=[f'{v:,.0f}' for v in costs], fontsize=8)
    if any(s['reg_bits'] for s in stages):
        ax2.plot(range(len(stages)), [s['reg_bits'] for s in stages], 'k.-', label='register bits out')
    ax2.set_xticks(range(len(stages)), [str(s['stage']) for s in stages])
    ax2.set_xlabel('pipeline stage' if len(stages) > 1 or stages[0]['reg_bits'] else 'combinational')
    ax2.legend(fontsize=8)
    syn = report['synthesis']
    ax2.set_title(f'da4ml per stage; Yosys whole design: {syn.get("LUT", 0):,} LUT, {syn.get("FF", 0):,} FF',
                  fontsize=10)
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v


def write_report(out_dir: str | os.PathLike, report: dict[str, Any]) -> dict[str, Path]:
    """Write report.md, report.json and resources.png into `out_dir`; returns their paths.

    `report` keys: checkpoint, top, rtl_dir, settings {clock_period_ns, latency_cutoff}, input_ports (strings),
    check {simulator, inputs, random, calibration, outputs, mismatches, port_wrapped_values,
    port_effect_outputs} or None,
    synthesis (hgq.export.yosys.synthesize's dict), latency (LatencyReport.as_dict()), da4ml {cost_luts,
    reg_bits, stages}, layers (ebops_per_layer), ebops {ir_total, model_exact}, timings_s, tools.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = jsonable({**report, 'definitions': DEFINITIONS})
    paths = {'json': out / 'report.json', 'md': out / 'report.md', 'png': out / 'resources.png'}
    paths['json'].write_text(json.dumps(data, indent=2) + '\n')
    paths['md'].write_text(markdown(data))
    plot_resources(data, paths['png'])
    return paths


# ------------------------------------------------------------------------------------------- ASQ adapters
def charged_da4ml_variables(graph: Graph) -> Iterator[tuple[Any, list[Any], list[Any]]]:
    """Per IR node in graph order: (node, the da4ml variables it adds, its output variables). The tracer runs
    node by node (as `hgq.export.rtl_trace.trace`) and each variable is charged to the first node whose
    outputs depend on it, so the costs of the charged variables are the logic the node adds."""
    from da4ml.trace import FixedVariableArrayInput, HWConfig

    from .export import rtl_trace as rt

    ports = rt.port_formats(graph, None)
    inp = FixedVariableArrayInput((sum(int(np.prod(p.shape)) for p in ports),), hwconf=HWConfig(1, -1, -1))
    env: dict[str, Any] = {}
    offset = 0
    for port in ports:
        n = int(np.prod(port.shape))
        env[port.name] = inp[offset: offset + n].reshape(port.shape).quantize(port.fmt.k, port.fmt.i, port.fmt.f)
        offset += n
    seen: set[Any] = set()
    for node in graph.nodes:
        if node.op != 'input':
            env[node.name] = rt._normalize_constants(rt.OPS[node.op](node, [env[n] for n in node.inputs]))
        outputs = [v for v in rt._raw(env[node.name]).ravel() if hasattr(v, 'opr')]
        added = []
        stack = list(outputs)
        while stack:
            v = stack.pop()
            if not hasattr(v, 'opr') or v.id in seen:
                continue
            seen.add(v.id)
            stack.extend(v._from)
            if v.opr != 'const' and v.cost:
                added.append(v)
        yield node, added, outputs


def da4ml_node_costs(graph: Graph) -> dict[str, dict[str, float]]:
    """da4ml's LUT estimate and delay per IR node (`charged_da4ml_variables`): a node's cost is the logic it adds;
    `delay` is the largest da4ml delay at the node's outputs (combinational trace)."""
    return {node.name: {'cost': sum(float(v.cost) for v in added),
                        'delay': max((float(v.latency) for v in outputs), default=0.0)}
            for node, added, outputs in charged_da4ml_variables(graph)}


def _ancestors(graph: Graph, name: str) -> set[str]:
    by_name = {n.name: n for n in graph.nodes}
    found: set[str] = set()
    stack = [name]
    while stack:
        n = stack.pop()
        if n in found or n not in by_name:
            continue
        found.add(n)
        stack.extend(by_name[n].inputs)
    return found


def asq_adapters(graph: Graph, costs: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Per ASQ quantizer (each `scaled_encode` node): its adapter's IR nodes (the β path: ancestors of β that the
    quantized tensor x does not reach), their da4ml LUT estimate and layers, the cost of the per-sample arithmetic
    (`scaled_encode` and the `mul` by β), and when β is ready against the whole design's delay (da4ml units)."""
    costs = da4ml_node_costs(graph) if costs is None else costs
    total = sum(c['cost'] for c in costs.values()) or 1.0
    out_delay = max((costs[o]['delay'] for o in graph.outputs if o in costs), default=0.0) or 1.0
    by_name = {n.name: n for n in graph.nodes}
    rows = []
    for node in graph.nodes:
        if node.op != 'scaled_encode':
            continue
        x, beta = node.inputs[:2]
        adapter = sorted(_ancestors(graph, beta) - _ancestors(graph, x), key=list(by_name).index)
        muls = [n.name for n in graph.nodes if n.op == 'mul' and beta in n.inputs]  # on inputs or outputs
        adapter_cost = sum(costs[n]['cost'] for n in adapter)
        arithmetic = costs[node.name]['cost'] + sum(costs[n]['cost'] for n in muls)
        layers = list(dict.fromkeys(by_name[n].source or n for n in adapter))
        rows.append({'quantizer': by_name[beta].source.removesuffix('_beta') if by_name[beta].source else beta,
                     'consumer': node.source, 'adapter_layers': layers,
                     'adapter_cost': round(adapter_cost, 1), 'arithmetic_cost': round(arithmetic, 1),
                     'share': round((adapter_cost + arithmetic) / total, 4),
                     'beta_delay': costs[beta]['delay'], 'output_delay': out_delay,
                     'beta_delay_share': round(costs[beta]['delay'] / out_delay, 4)})
    return rows


def asq_table(rows: list[dict[str, Any]], luts: int | None = None) -> str:
    """The ASQ adapters' share of the design (da4ml's estimate; with `luts`, scaled to Yosys' total)."""
    body = [[r['quantizer'], r['consumer'], ', '.join(r['adapter_layers']), r['adapter_cost'], r['arithmetic_cost'],
             f'{100 * r["share"]:.1f}%', None if luts is None else round(r['share'] * luts),
             f'{r["beta_delay"]:g} / {r["output_delay"]:g} ({100 * r["beta_delay_share"]:.0f}%)'] for r in rows]
    return markdown_table(['ASQ quantizer', 'consumer', 'adapter layers', 'adapter (da4ml LUT est.)',
                           'scaled_encode + mul', 'share of design', 'share of Yosys LUTs',
                           'beta ready at delay / output delay'], body)
