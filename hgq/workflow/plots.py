"""The figures of a run report: the Pareto front, bit-width histograms, a per-weight bit-width map and the
training history. Matplotlib's object API with the Agg canvas: no display, no global pyplot state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike) -> Path:
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def plot_front(rows: list[dict[str, Any]], float_result: dict[str, Any] | None, chosen: int,
               path: str | os.PathLike, title: str) -> Path:
    """Accuracy vs EBOPs of the Pareto checkpoints (and vs Yosys LUTs for those synthesized)."""
    synthesized = [r for r in rows if r.get('LUT') is not None]
    fig = _figure((11 if synthesized else 6.5, 4.5))
    axes = fig.subplots(1, 2 if synthesized else 1, squeeze=False)[0]
    panels = [('exact_ebops', 'EBOPs (calibrated, exact)', rows)]
    if synthesized:
        panels.append(('LUT', 'LUTs (Yosys synth_xilinx)', synthesized))
    for ax, (key, label, subset) in zip(axes, panels):
        subset = sorted(subset, key=lambda r: r[key])
        x = [r[key] for r in subset]
        ax.plot(x, [r['test_accuracy'] for r in subset], 'o-', color='tab:blue', label='test accuracy')
        ax.plot(x, [r['val_accuracy'] for r in subset], '.--', color='tab:gray', alpha=0.7,
                label='validation accuracy (training)')
        best = [r for r in subset if r['epoch'] == chosen]
        if best:
            ax.plot([best[0][key]], [best[0]['test_accuracy']], '*', ms=16, color='tab:red',
                    label=f'chosen (epoch {chosen})')
        if float_result is not None:
            ax.axhline(float_result['test_accuracy'], color='k', ls=':', label='float baseline (test)')
        ax.set_xscale('log')
        ax.set_xlabel(label)
        ax.set_ylabel('accuracy')
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=8, loc='lower right')
    axes[0].set_title(title, fontsize=10)
    return _save(fig, path)


def plot_bit_histograms(layers: list[dict[str, Any]], path: str | os.PathLike, title: str) -> Path:
    """Per weighted layer: histogram of the weights' bit-widths (pruned = 0) and of the input bit-widths."""
    fig = _figure((3.2 * max(len(layers), 1), 3.6))
    axes = fig.subplots(1, max(len(layers), 1), squeeze=False)[0]
    for ax, layer in zip(axes, layers):
        w, a = layer['weight_bits'].ravel(), layer['input_bits'].ravel()
        top = int(max(w.max(initial=0), a.max(initial=0))) + 1
        bins = np.arange(-0.5, top + 1)
        ax.hist(w, bins=bins, color='tab:blue', alpha=0.75, label='weights')
        ax.hist(a, bins=bins, histtype='step', lw=2, color='tab:orange', label='inputs')
        ax.set_yscale('log')
        ax.set_xlabel('bits')
        ax.set_title(f'{layer["name"]}\n{int((w == 0).sum())}/{w.size} weights pruned', fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel('count')
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_weight_map(layers: list[dict[str, Any]], path: str | os.PathLike, title: str) -> Path:
    """Per weighted layer, the bit-width of every weight as an image: rows inputs (fan-in), columns outputs."""
    fig = _figure((3.4 * max(len(layers), 1), 4.2))
    axes = fig.subplots(1, max(len(layers), 1), squeeze=False)[0]
    vmax = max((int(layer['weight_bits'].max(initial=0)) for layer in layers), default=1)
    image = None
    for ax, layer in zip(axes, layers):
        bits = layer['weight_bits']
        bits2d = bits.reshape(-1, bits.shape[-1])
        image = ax.imshow(bits2d, aspect='auto', interpolation='nearest', cmap='viridis', vmin=0, vmax=max(vmax, 1))
        ax.set_title(f'{layer["name"]} {tuple(bits.shape)}', fontsize=9)
        ax.set_xlabel('output')
        ax.set_ylabel('input' if bits.ndim == 2 else 'kernel position x input channel')
    if image is not None:
        fig.colorbar(image, ax=list(axes), label='weight bits (0: pruned)')
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_history(history: dict[str, list[float]], path: str | os.PathLike, title: str) -> Path:
    """Accuracy and EBOPs per epoch, with beta: how the sweep traced the front."""
    fig = _figure((8, 4))
    ax = fig.subplots()
    epochs = history.get('epoch', [])
    for key, style in (('accuracy', '-'), ('val_accuracy', '--')):
        if key in history:
            ax.plot(epochs, history[key], style, label=key)
    ax.set_xlabel('epoch')
    ax.set_ylabel('accuracy')
    ax.grid(alpha=0.3)
    ax.legend(loc='center left', fontsize=8)
    if 'ebops' in history:
        ax2 = ax.twinx()
        ax2.plot(epochs, history['ebops'], color='tab:red', label='EBOPs')
        if 'beta' in history:
            ax2.plot(epochs, np.asarray(history['beta']) / max(history['beta']) * max(history['ebops']), ':',
                     color='tab:purple', label='beta (scaled)')
        ax2.set_yscale('log')
        ax2.set_ylabel('EBOPs')
        ax2.legend(loc='center right', fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_beta_histograms(betas: list[dict[str, Any]], path: str | os.PathLike, title: str) -> Path:
    """Per ASQ quantizer, the histogram of its per-sample β over the test set (min/median/max in the title)."""
    fig = _figure((3.4 * max(len(betas), 1), 3.4))
    axes = fig.subplots(1, max(len(betas), 1), squeeze=False)[0]
    for ax, entry in zip(axes, betas):
        values = np.asarray(entry['values'], dtype=np.float64)
        distinct = np.unique(values)
        bins = distinct.size + 1 if distinct.size <= 64 else 64  # β is fixed point: few distinct values
        ax.hist(values, bins=bins, color='tab:green', alpha=0.8)
        ax.set_xlabel('β (per sample)')
        ax.set_title(f'{entry["quantizer"]}\nmin {entry["min"]:g}, median {entry["median"]:g}, max {entry["max"]:g}',
                     fontsize=8)
    axes[0].set_ylabel('samples')
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
