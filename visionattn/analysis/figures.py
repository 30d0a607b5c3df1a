"""Figures of :mod:`.attention_maps` and of predictions that a person can read without the code.

Every figure has a title that says what is shown, panels titled by layer and query, the maps laid over
the image the network saw (at its scale, the zero-padding of the attention layers hatched), a colour
bar per panel with the values' real range, and a legend of the marks. Figures are matplotlib
``Figure`` objects (no pyplot state); save them with ``figure.savefig(path)``.

- :func:`query_attention_figure`: BiFormer routing or NAT/DiNAT neighborhoods; one row per layer,
  one column per query (weights averaged over heads), or with ``per_head`` one row per layer and
  query and one column per head.
- :func:`gates_figure`: CBAM/ELA/Triplet gates; one row per image, the input then one column per layer.
- :func:`predictions_figure`: segmentation or detection results; one row per image, the input and the
  prediction drawn by mmseg's / mmdet's own visualizer, with a legend of the classes found.
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FormatStrFormatter
from PIL import Image

from .attention_maps import Gate, NeighborhoodAttention, QueryAttention, RoutedAttention
from .loading import Inference

__all__ = ['query_attention_figure', 'gates_figure', 'predictions_figure', 'save_figure', 'HEAT_MAP', 'GATE_MAP']

HEAT_MAP = 'viridis'  # attention weights
GATE_MAP = 'inferno'  # gate values
QUERY_COLOUR = '#ff2a2a'
ROUTED_COLOUR = '#00e5ff'
WINDOW_COLOUR = '#00e5ff'
PANEL_INCHES = 2.6
HEAT_ALPHA = (0.35, 0.85)  # opacity of the lowest and the highest value


# ---------------------------------------------------------------------------------------------
# Shared drawing
# ---------------------------------------------------------------------------------------------
def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _image(ax: Axes, image: np.ndarray, extent_hw: Sequence[float]) -> None:
    """The image at its pixel scale on a canvas of ``extent_hw`` pixels; what lies outside it is padding."""
    height, width = image.shape[:2]
    ax.imshow(image, extent=(0, width, height, 0), interpolation='nearest')
    if extent_hw[1] > width:
        ax.add_patch(Rectangle((width, 0), extent_hw[1] - width, extent_hw[0], facecolor='0.15', edgecolor='0.6',
                               hatch='//', linewidth=0))
    if extent_hw[0] > height:
        ax.add_patch(Rectangle((0, height), width, extent_hw[0] - height, facecolor='0.15', edgecolor='0.6',
                               hatch='//', linewidth=0))
    ax.set_xlim(0, extent_hw[1])
    ax.set_ylim(extent_hw[0], 0)
    _bare(ax)


def _decimals(low: float, high: float) -> int:
    """Decimals that tell ``low`` and ``high`` apart (2 to 8)."""
    return min(8, max(2, 1 - math.floor(math.log10(max(high - low, 1e-12)))))


def _heat(ax: Axes, values: np.ndarray, cell_hw: Sequence[float], cmap: str, label: str, zero_is_nothing: bool,
          alpha: tuple[float, float] = HEAT_ALPHA) -> None:
    """``values`` (one per token) over the image, with a colour bar of their real range.

    The colour's opacity grows with the value from ``alpha[0]`` to ``alpha[1]`` over the range, so the
    image stays visible where values are low; with ``zero_is_nothing`` zeros (keys not attended) are
    not coloured at all and the range starts at 0.
    """
    extent = (0, values.shape[1] * cell_hw[1], values.shape[0] * cell_hw[0], 0)
    low = 0.0 if zero_is_nothing else float(values.min())
    high = max(float(values.max()), low + 1e-6)
    norm = Normalize(low, high)
    colours = colormaps[cmap](norm(values))
    colours[..., 3] = alpha[0] + (alpha[1] - alpha[0]) * norm(values)
    if zero_is_nothing:
        colours[values == 0, 3] = 0
    ax.imshow(colours, extent=extent, interpolation='nearest', zorder=1.5)  # above the hatched padding
    colorbar = ax.figure.colorbar(ScalarMappable(norm, cmap), ax=ax, fraction=0.046, pad=0.02)
    colorbar.set_label(label, fontsize=7)
    colorbar.ax.tick_params(labelsize=6)
    colorbar.ax.yaxis.set_major_formatter(FormatStrFormatter(f'%.{_decimals(low, high)}f'))  # no offset


def _query_mark(ax: Axes, xy: Sequence[float], number: Optional[int] = None) -> None:
    ax.plot(*xy, marker='*', markersize=13, markerfacecolor=QUERY_COLOUR, markeredgecolor='white',
            markeredgewidth=1.0, linestyle='none')
    if number is not None:
        ax.annotate(str(number), xy, xytext=(6, -6), textcoords='offset points', color='white', fontsize=8,
                    fontweight='bold', bbox=dict(boxstyle='round,pad=0.15', facecolor=QUERY_COLOUR, linewidth=0))


def _finish(figure: Figure, title: str, explanation: str, handles: list[Any]) -> Figure:
    """Title, the explanation wrapped to the figure's width, and the legend of the marks below."""
    figure.suptitle(f'{title}\n{textwrap.fill(explanation, int(figure.get_figwidth() * 14))}', fontsize=9)
    if handles:
        figure.legend(handles=handles, loc='outside lower center', ncol=min(len(handles), 4), fontsize=8,
                      frameon=False)
    return figure


# ---------------------------------------------------------------------------------------------
# Routing and neighborhood attention of queries
# ---------------------------------------------------------------------------------------------
def _routing_marks(ax: Axes, m: RoutedAttention, query: int) -> None:
    """Region grid, the query's region (dashed) and its routed regions numbered by rank."""
    cell = (m.region_size[0] * m.stride[0], m.region_size[1] * m.stride[1])
    for i in range(1, m.grid[0]):
        ax.axhline(i * cell[0], color='white', linewidth=0.5, alpha=0.5)
    for j in range(1, m.grid[1]):
        ax.axvline(j * cell[1], color='white', linewidth=0.5, alpha=0.5)
    for rank, region in enumerate(m.routed[query], 1):
        top, left = divmod(region, m.grid[1])
        ax.add_patch(Rectangle((left * cell[1], top * cell[0]), cell[1], cell[0], fill=False,
                               edgecolor=ROUTED_COLOUR, linewidth=1.6, zorder=2))
        if len(m.routed[query]) <= 16:
            ax.text(left * cell[1] + 1, top * cell[0] + 1, str(rank), color='black', fontsize=6, va='top',
                    ha='left', bbox=dict(boxstyle='square,pad=0.1', facecolor=ROUTED_COLOUR, linewidth=0))
    top, left = divmod(m.query_regions[query], m.grid[1])
    ax.add_patch(Rectangle((left * cell[1], top * cell[0]), cell[1], cell[0], fill=False, edgecolor=QUERY_COLOUR,
                           linewidth=2.0, linestyle='--', zorder=2))


def _window_marks(ax: Axes, m: NeighborhoodAttention, query: int) -> None:
    """An outline around every key of the query's window."""
    keys = m.keys(query).tolist()
    cells = [Rectangle((c * m.stride[1], r * m.stride[0]), m.stride[1], m.stride[0]) for r, c in keys]
    ax.add_collection(PatchCollection(cells, facecolor='none', edgecolor=WINDOW_COLOUR, linewidth=0.6, zorder=2))


def _describe(m: QueryAttention) -> str:
    if isinstance(m, RoutedAttention):
        return (f'{m.layer}\nstride {m.stride[1]}, {m.grid[0]}x{m.grid[1]} regions of {m.region_size[0]}x'
                f'{m.region_size[1]} tokens, top-{m.topk}')
    return f'{m.layer}\nstride {m.stride[1]}, {m.kernel_size}x{m.kernel_size} window, dilation {m.dilation}'


def query_attention_figure(inference: Inference, maps: Sequence[QueryAttention], title: str,
                           per_head: bool = False) -> Figure:
    """What the chosen queries attend to at each layer of ``maps``, over the image the network saw.

    The heat is each query's attention weight on every key (averaged over heads unless ``per_head``).
    BiFormer: the query's region (dashed), its routed regions (numbered by rank) and the region grid;
    NAT/DiNAT: the window's keys outlined. Padding the layer adds to small maps is hatched.
    """
    if not maps:
        raise ValueError('no attention maps to draw')
    routed = isinstance(maps[0], RoutedAttention)
    queries = len(maps[0].queries)
    rows = [(m, q) for m in maps for q in range(queries)] if per_head else [(m, None) for m in maps]
    cols = max(m.heads for m in maps) if per_head else queries
    figure = Figure(figsize=(PANEL_INCHES * cols + 0.6, PANEL_INCHES * len(rows) + 1.3), layout='constrained')
    axes = figure.subplots(len(rows), cols, squeeze=False)
    for r, (m, query) in enumerate(rows):
        extent = (m.padded_size[0] * m.stride[0], m.padded_size[1] * m.stride[1])
        for c in range(cols):
            ax = axes[r, c]
            q = c if query is None else query
            if per_head and c >= m.heads:
                ax.set_visible(False)
                continue
            weights = (m.weights[q, c] if per_head else m.weights[q].mean(0)).numpy()
            _image(ax, inference.image, extent)
            _heat(ax, weights, m.stride, HEAT_MAP, 'attention weight' + ('' if per_head else ' (mean of heads)'),
                  zero_is_nothing=True)
            if routed:
                _routing_marks(ax, m, q)
            else:
                _window_marks(ax, m, q)
            _query_mark(ax, m.query_pixels[q], q + 1)
            x, y = m.query_pixels[q]
            what = f'head {c + 1} of {m.heads}' if per_head else f'query {q + 1} at ({x:.0f}, {y:.0f})'
            ax.set_title(f'{_describe(m)}\n{what}' if c == 0 or not per_head else what, fontsize=7)
    mark = Line2D([], [], marker='*', markersize=11, markerfacecolor=QUERY_COLOUR, markeredgecolor='white',
                  linestyle='none', label='query pixel (numbered)')
    padding = Patch(facecolor='0.15', edgecolor='0.6', hatch='//', label="the layer's zero padding")
    if routed:
        handles = [mark, Patch(fill=False, edgecolor=QUERY_COLOUR, linestyle='--', linewidth=2, label="query's region"),
                   Patch(fill=False, edgecolor=ROUTED_COLOUR, linewidth=1.6, label='routed region (number = rank)'),
                   padding]
        what = ("Bi-level routing attention: each query's region attends to the tokens of its top-k routed "
                "regions; colour: the query token's attention weight on each of those tokens.")
    else:
        handles = [mark, Patch(fill=False, edgecolor=WINDOW_COLOUR, label='keys of the window'), padding]
        what = ('Neighborhood attention: each query attends to the keys of its window; colour: the query\'s '
                'attention weight on each key.')
    scale = f'Image at the network\'s scale, {inference.image.shape[1]}x{inference.image.shape[0]} px.'
    if not any(m.padded_size != m.map_size for m in maps):
        handles.remove(padding)
    return _finish(figure, title, f'{what} {scale}', handles)


# ---------------------------------------------------------------------------------------------
# CBAM / ELA / Triplet gates
# ---------------------------------------------------------------------------------------------
def gates_figure(runs: Sequence[tuple[Inference, Sequence[Gate]]], title: str) -> Figure:
    """One row per image: the input, then each layer's gate averaged over channels, over the image.

    Each gate panel's colour bar spans that gate's own range: a gate close to uniform shows as a
    narrow range, not as a flat colour.
    """
    if not runs or not runs[0][1]:
        raise ValueError('no gates to draw')
    cols = 1 + max(len(gates) for _, gates in runs)
    figure = Figure(figsize=(PANEL_INCHES * cols + 0.6, PANEL_INCHES * len(runs) + 1.0), layout='constrained')
    axes = figure.subplots(len(runs), cols, squeeze=False)
    for r, (inference, gates) in enumerate(runs):
        size = inference.input_size
        _image(axes[r, 0], inference.image, size)
        axes[r, 0].set_title(f'input ({inference.image.shape[1]}x{inference.image.shape[0]} px)', fontsize=7)
        for c, gate in enumerate(gates, 1):
            ax = axes[r, c]
            _image(ax, inference.image, size)
            _heat(ax, gate.channel_mean.numpy(), gate.stride, GATE_MAP, 'gate G, mean over channels',
                  zero_is_nothing=False, alpha=(0.15, 0.8))
            height, width = gate.values.shape[1:]
            low, high = float(gate.channel_mean.min()), float(gate.channel_mean.max())
            digits = _decimals(low, high)
            ax.set_title(f'{gate.layer} ({gate.kind})\nstride {gate.stride[1]}, {width}x{height} cells, '
                         f'G {low:.{digits}f} to {high:.{digits}f}', fontsize=7)
        for c in range(len(gates) + 1, cols):
            axes[r, c].set_visible(False)
    kinds = ', '.join(sorted({g.kind for _, gates in runs for g in gates}))
    return _finish(figure, title, f'{kinds} gates: out = x * G; colour: G averaged over channels (low: the position '
                                  'is suppressed, high: kept).', [])


# ---------------------------------------------------------------------------------------------
# Predictions of OpenMMLab models
# ---------------------------------------------------------------------------------------------
def predictions_figure(rows: Sequence[tuple[str, np.ndarray, np.ndarray]], legend: Sequence[tuple[str, Any]],
                       title: str, explanation: str) -> Figure:
    """One row per image (name, input, prediction drawing); ``legend`` lists (class name, RGB colour)."""
    figure = Figure(figsize=(2 * PANEL_INCHES * 1.3 + 0.4, PANEL_INCHES * 1.3 * len(rows) + 1.2),
                    layout='constrained')
    axes = figure.subplots(len(rows), 2, squeeze=False)
    for r, (name, image, drawn) in enumerate(rows):
        for ax, picture, what in ((axes[r, 0], image, 'input'), (axes[r, 1], drawn, 'prediction')):
            ax.imshow(picture, interpolation='nearest')
            _bare(ax)
            ax.set_title(f'{name}: {what}', fontsize=8)
    handles = [Patch(facecolor=np.asarray(colour) / 255, edgecolor='black', linewidth=0.5, label=name)
               for name, colour in legend]
    return _finish(figure, title, explanation, handles)


def save_figure(figure: Figure, path: str | Path, dpi: int = 100, small: bool = False) -> None:
    """Write ``figure`` as a PNG; ``small``: 256 colours (a third of the bytes, for documentation)."""
    if not small:
        figure.savefig(path, dpi=dpi)
        return
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi)
    picture = Image.open(buffer).convert('RGB')
    picture.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
