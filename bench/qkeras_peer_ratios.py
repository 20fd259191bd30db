"""LUTs at matched accuracy, QKeras / HGQ, from the results of bench/qkeras_peer.py, beside the HGQ paper's claim.

Reads bench/qkeras_peer.py's JSON files (one per project and epoch budget), prints a table (markdown) of the
LUT ratio of each QKeras model to the cheapest HGQ checkpoint at its validation accuracy (from scratch and
fine-tuned from it), and plots the ratios on one axis with the paper's "up to 20x fewer resources" as a line.
Yosys LUTs where both designs were synthesized, else da4ml's estimate of both (marked). Nothing is run.

Usage: python bench/qkeras_peer_ratios.py LABEL=bench/results/qkeras_peer.json ... [--png P] [--json J]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO  # noqa: E402

PAPER_RATIO = 20.0


def ratios(label: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    rows = result['rows']
    for r in result['ratios']:
        q = next(x for x in rows if x['flow'] == 'QKeras (imported)' and x['bits'] == r['bits'])
        row = {'set': label, 'bits': r['bits'], 'flow': r['flow'], 'qkeras_test_accuracy': q['test_accuracy'],
               'matched': r['matched']}
        if 'epoch' in r:  # matched, or (newer results) the run's most accurate checkpoint below the QKeras model
            h = next(x for x in rows if x['flow'] == r['flow'] and x['bits'] == r['bits'])
            yosys = r.get('lut_ratio') is not None
            row |= {'hgq_test_accuracy': h['test_accuracy'], 'epoch': r['epoch'],
                    'qkeras_luts': q['LUT'] if yosys else q['da4ml_luts'],
                    'hgq_luts': h['LUT'] if yosys else h['da4ml_luts'], 'counter': 'Yosys' if yosys else 'da4ml est.',
                    'lut_ratio': r['lut_ratio'] if yosys else r['da4ml_lut_ratio'], 'ebops_ratio': r['ebops_ratio'],
                    'val_accuracy_gap': r.get('val_accuracy_gap')}
        out.append(row)
    return out


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r['set'] for r in table))
    fig, ax = plt.subplots(figsize=(max(6.4, 1.9 * len(sets) + 1.5), 4.2))
    width = 0.13
    colors = {'HGQ from scratch': 'C0', 'HGQ fine-tuned': 'C2'}
    ticks, labels = [], []
    for s, name in enumerate(sets):
        for b, bits in enumerate((4, 6, 8)):
            for f, flow in enumerate(colors):
                x = s + (b - 1) * 2.2 * width + (f - 0.5) * width
                r = next((r for r in table if r['set'] == name and r['bits'] == bits and r['flow'] == flow), None)
                if r is None:
                    continue
                if r.get('lut_ratio') is None:
                    ax.annotate('x', (x, 1.0), ha='center', fontsize=7, color=colors[flow])
                    continue
                hatch = '' if r['counter'] == 'Yosys' else '///'
                ax.bar(x, r['lut_ratio'], width, color=colors[flow], hatch=hatch, edgecolor='k', linewidth=0.4,
                       alpha=1.0 if r['matched'] else 0.35, label=flow if (s, b) == (0, 0) else None)
                text = f'{r["lut_ratio"]:.2g}' + ('' if r['matched'] else f'\n({100 * r["val_accuracy_gap"]:+.1f}%)')
                ax.annotate(text, (x, r['lut_ratio']), ha='center', va='bottom', fontsize=6)
            ticks.append(s + (b - 1) * 2.2 * width)
            labels.append(f'{bits}b' if b != 1 else f'6b\n{name}')
    ax.axhline(PAPER_RATIO, color='C3', linestyle='--', label='HGQ paper: up to 20x fewer resources')
    ax.axhline(1.0, color='0.4', linewidth=0.8)
    ax.set_yscale('log')
    ax.set_ylim(0.3, 150)
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_ylabel('LUTs QKeras / LUTs HGQ at matched accuracy')
    ax.set_title('QKeras (uniform b bits, imported) vs HGQ, same RTL flow\n(hatched: da4ml estimate; pale: HGQ '
                 'below the QKeras accuracy, gap in val. accuracy)', fontsize=8)
    ax.grid(alpha=0.3, axis='y')
    ax.legend(fontsize=7, loc='upper left')
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('inputs', nargs='+', help='LABEL=PATH of a bench/qkeras_peer.py JSON')
    p.add_argument('--png', type=Path, default=REPO / 'bench/results/qkeras_peer_ratios.png')
    p.add_argument('--json', type=Path, default=REPO / 'bench/results/qkeras_peer_ratios.json')
    args = p.parse_args(argv)
    table = []
    for item in args.inputs:
        label, _, path = item.partition('=')
        table += ratios(label, json.loads(Path(path).read_text()))
    print('| set | QKeras | QKeras test acc. | HGQ | HGQ test acc. | LUT QKeras | LUT HGQ | counted | LUT ratio '
          '| EBOPs ratio |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for r in table:
        if r.get('lut_ratio') is None and 'epoch' in r:
            print(f'| {r["set"]} | {r["bits"]}-bit | {r["qkeras_test_accuracy"]:.4f} | {r["flow"]} (epoch {r["epoch"]})'
                  f'{"" if r["matched"] else " NOT matched"} | {r["hgq_test_accuracy"]:.4f} | - | - | no RTL | - '
                  f'| {r["ebops_ratio"]:.2f}x |')
        elif 'lut_ratio' in r:
            below = '' if r['matched'] else f' NOT matched: {100 * r["val_accuracy_gap"]:+.1f}% val. acc.'
            print(f'| {r["set"]} | {r["bits"]}-bit | {r["qkeras_test_accuracy"]:.4f} | {r["flow"]} '
                  f'(epoch {r["epoch"]}){below} | {r["hgq_test_accuracy"]:.4f} | {r["qkeras_luts"]:,} '
                  f'| {r["hgq_luts"]:,} | {r["counter"]} | {r["lut_ratio"]:.2f}x | {r["ebops_ratio"]:.2f}x |')
        else:
            print(f'| {r["set"]} | {r["bits"]}-bit | {r["qkeras_test_accuracy"]:.4f} | {r["flow"]} | not reached '
                  '| | | | | |')
    args.json.write_text(json.dumps({'inputs': args.inputs, 'paper_ratio': PAPER_RATIO, 'rows': table}, indent=1))
    plot(table, args.png)
    print(f'wrote {args.json} and {args.png}')


if __name__ == '__main__':
    main()
