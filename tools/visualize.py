"""Pictures of what the models do: predictions, BiFormer routing, NAT/DiNAT windows, CNN attention gates.

    python tools/visualize.py predictions CONFIG CHECKPOINT IMAGE --out pred.png [--score-thr 0.3]
    python tools/visualize.py routing biformer_small --image IMAGE --query X Y --out routing.png \
        [--checkpoint FILE] [--layer stages.1.blocks.0.attn] [--model-kwargs '{"n_win": 8}']
    python tools/visualize.py neighbourhood dinat_tiny --query X Y --out window.png [--image IMAGE | --size H W]
    python tools/visualize.py gates resnet50_cbam --image IMAGE --out gates.png [--checkpoint FILE] [--layers ...]

- ``predictions``: segmentation or detection results of an OpenMMLab config + checkpoint drawn by
  mmseg's ``SegLocalVisualizer`` or mmdet's ``DetLocalVisualizer`` (the task follows the config's
  ``default_scope``).
- ``routing``: the regions BiFormer's bi-level routing picks for the query pixel (X, Y) at one
  routing-attention layer, on the image, with the real model, weights and padding. The routing is
  recorded from the model's own forward pass (``visionattn.ops.routing.bra_routing``).
- ``neighbourhood``: the tokens a NAT/DiNAT layer lets the query pixel attend to, with the layer's
  kernel size and dilation at the map size the model gives that layer for the input (including the
  zero-padding of small maps). The window is computed by the project's ``na2d`` operator itself:
  with q = k = 0 and no bias attention is uniform over the window, so one-hot values for the rows and
  columns return the window's rows and columns (neighbourhood windows are separable by axis).
- ``gates``: the multiplicative attention of CBAM, ELA and Triplet modules, ``out = x * G``,
  averaged over channels: CBAM ``G = channel gate x spatial gate``, ELA ``G = row gate x column gate``,
  Triplet ``G = mean of its three branch gates``. Read from the modules' own sub-layers by hooks.

Why our own: neither timm nor OpenMMLab draws routing regions, neighbourhood windows or gate maps.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from mmengine.config import DictAction
from torch import Tensor, nn

QUERY_COLOUR = (255, 32, 32)
WINDOW_COLOUR = (32, 160, 255)
ROUTED_COLOUR = (255, 200, 0)
GRID_COLOUR = (255, 255, 255)
BLEND = 0.5  # weight of a highlight colour over the image

ROUTING_LAYER = 'visionattn.layers.routing_attention.BiLevelRoutingAttention'
NEIGHBOURHOOD_LAYER = 'visionattn.layers.neighborhood_attention.NeighborhoodAttention2D'
GATE_LAYERS = ('visionattn.layers.cnn_attention.CBAM', 'visionattn.layers.cnn_attention.ELA',
               'visionattn.layers.cnn_attention.TripletAttention')


# ---------------------------------------------------------------------------------------------
# Models, images and layers
# ---------------------------------------------------------------------------------------------
def load_model(name: str, checkpoint: Optional[str] = None, strict: bool = True, **model_kwargs: Any) -> nn.Module:
    """A timm model of the project in eval mode, with the weights of ``checkpoint`` if given (read safely,
    through the model's checkpoint filter, checked strictly unless ``strict=False``)."""
    import timm

    from visionattn.weights import create_model_with_weights
    if checkpoint:
        model = create_model_with_weights(name, checkpoint, strict=strict, non_strict_option='--non-strict',
                                          **model_kwargs)
    else:
        model = timm.create_model(name, **model_kwargs)
    return model.eval()


def load_image(path: str, size: Optional[Sequence[int]] = None) -> np.ndarray:
    """RGB uint8 (H, W, 3), resized to ``size`` = (height, width) if given."""
    image = Image.open(path).convert('RGB')
    if size:
        image = image.resize((size[1], size[0]), Image.BICUBIC)
    return np.asarray(image)


def to_tensor(model: nn.Module, image: np.ndarray) -> Tensor:
    """(1, 3, H, W) float input, normalised with the model's pretrained mean and std."""
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg.get('mean', (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get('std', (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
    x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255  # a copy: PIL arrays are read-only
    return (x - mean) / std


def _qualname(module: nn.Module) -> str:
    return f'{type(module).__module__}.{type(module).__qualname__}'


def find_layers(model: nn.Module, qualnames: Sequence[str]) -> dict[str, nn.Module]:
    """``{name: module}`` of the layers whose class is one of ``qualnames``, in model order."""
    return {name: m for name, m in model.named_modules() if _qualname(m) in qualnames}


def pick_layer(model: nn.Module, qualname: str, name: Optional[str]) -> tuple[str, nn.Module]:
    """The layer called ``name`` (default: the first) among the model's ``qualname`` layers."""
    layers = find_layers(model, (qualname,))
    kind = qualname.rsplit('.', 1)[1]
    if not layers:
        raise ValueError(f'{type(model).__name__} has no {kind} layer')
    if name is None:
        return next(iter(layers.items()))
    if name not in layers:
        raise KeyError(f'{name!r} is not a {kind} layer of this model; its {kind} layers are: {list(layers)}')
    return name, layers[name]


def _stride(image_side: int, map_side: int) -> int:
    """Input pixels per token: the power of two nearest ``image_side / map_side``."""
    return 2 ** round(math.log2(image_side / map_side))


def _token_of(query_xy: Sequence[int], stride: int, map_hw: Sequence[int], image_hw: Sequence[int]) -> tuple[int, int]:
    x, y = query_xy
    if not (0 <= x < image_hw[1] and 0 <= y < image_hw[0]):
        raise ValueError(f'query pixel (x={x}, y={y}) is outside the {image_hw[1]}x{image_hw[0]} image')
    return min(y // stride, map_hw[0] - 1), min(x // stride, map_hw[1] - 1)


@contextlib.contextmanager
def _input_shapes(layer: nn.Module, sub_layer: nn.Module) -> Iterator[dict[str, tuple[int, ...]]]:
    """Shapes of ``layer``'s input and ``sub_layer``'s output during the next forward."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record_input(module: nn.Module, args: tuple) -> None:
        shapes.setdefault('input', tuple(args[0].shape))

    def record_sub(module: nn.Module, args: tuple, out: Tensor) -> None:
        shapes.setdefault('sub', tuple(out.shape))

    hooks = [layer.register_forward_pre_hook(record_input), sub_layer.register_forward_hook(record_sub)]
    try:
        yield shapes
    finally:
        for hook in hooks:
            hook.remove()


# ---------------------------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------------------------
def _canvas(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The image on a (height, width) canvas (padding shown black), float for blending."""
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    h, w = min(height, image.shape[0]), min(width, image.shape[1])
    canvas[:h, :w] = image[:h, :w]
    return canvas


def _fill_cell(canvas: np.ndarray, row: int, col: int, cell_hw: Sequence[int], colour: Sequence[int]) -> None:
    top, left = row * cell_hw[0], col * cell_hw[1]
    patch = canvas[top:top + cell_hw[0], left:left + cell_hw[1]]
    patch[:] = (1 - BLEND) * patch + BLEND * np.asarray(colour, dtype=np.float32)


def _to_image(canvas: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))


def _grid_lines(picture: Image.Image, cell_hw: Sequence[int], rows: int, cols: int) -> None:
    draw = ImageDraw.Draw(picture)
    for r in range(1, rows):
        draw.line([(0, r * cell_hw[0]), (cols * cell_hw[1] - 1, r * cell_hw[0])], fill=GRID_COLOUR)
    for c in range(1, cols):
        draw.line([(c * cell_hw[1], 0), (c * cell_hw[1], rows * cell_hw[0] - 1)], fill=GRID_COLOUR)


# ---------------------------------------------------------------------------------------------
# NAT / DiNAT: the neighbourhood window of a query
# ---------------------------------------------------------------------------------------------
@dataclass
class Window:
    """The tokens one query attends to in a neighbourhood-attention layer."""
    layer: str
    stride: int  # input pixels per token
    map_size: tuple[int, int]  # the attended map (after the layer's zero-padding of small maps)
    kernel_size: int
    dilation: int
    query: tuple[int, int]  # (row, col) token
    keys: list[tuple[int, int]]  # (row, col) tokens, row-major


def neighbourhood_window(model: nn.Module, image_hw: Sequence[int], query_xy: Sequence[int],
                         layer: Optional[str] = None) -> Window:
    """The window of the token under pixel ``query_xy`` = (x, y) at a NAT/DiNAT ``layer``.

    The map size comes from a forward of ``model`` at ``image_hw``; the window from
    :func:`visionattn.ops.na2d` on that map with the layer's kernel size and dilation.
    """
    from visionattn.ops import na2d
    name, attn = pick_layer(model, NEIGHBOURHOOD_LAYER, layer)
    with _input_shapes(attn, attn.qkv) as shapes, torch.no_grad():
        model(torch.zeros(1, 3, *image_hw))
    _, height, width, _ = shapes['input']
    _, padded_h, padded_w, _ = shapes['sub']
    stride = _stride(image_hw[0], height)
    query = _token_of(query_xy, stride, (height, width), image_hw)
    # q = k = 0, no bias: uniform attention over the window, so the output is the mean of v over it.
    zeros = torch.zeros(1, padded_h, padded_w, 1, padded_h + padded_w, dtype=torch.float64)
    values = torch.cat([torch.eye(padded_h, dtype=torch.float64)[:, None].expand(-1, padded_w, -1),
                        torch.eye(padded_w, dtype=torch.float64)[None].expand(padded_h, -1, -1)], dim=-1)
    out = na2d(zeros, zeros, values[None, :, :, None], attn.kernel_size, attn.dilation, backend='torch')
    mean = out[0, query[0], query[1], 0]
    rows = torch.nonzero(mean[:padded_h] > 0).flatten().tolist()
    cols = torch.nonzero(mean[padded_h:] > 0).flatten().tolist()
    return Window(layer=name, stride=stride, map_size=(padded_h, padded_w), kernel_size=attn.kernel_size,
                  dilation=attn.dilation, query=query, keys=list(itertools.product(rows, cols)))


def draw_window(window: Window, image: Optional[np.ndarray] = None, min_cell: int = 12) -> Image.Image:
    """The window's tokens (blue; the query itself red) over the image, on the token grid.

    The picture is enlarged (nearest) so that a token is at least ``min_cell`` pixels wide; it covers
    the attended map, padding included (black).
    """
    zoom = max(1, math.ceil(min_cell / window.stride))
    cell = (window.stride * zoom, window.stride * zoom)
    height, width = window.map_size[0] * cell[0], window.map_size[1] * cell[1]
    if image is None:
        image = np.full((height, width, 3), 128, np.uint8)
    elif zoom > 1:
        image = np.asarray(Image.fromarray(image).resize((image.shape[1] * zoom, image.shape[0] * zoom),
                                                         Image.NEAREST))
    canvas = _canvas(image, height, width)
    for key in window.keys:
        _fill_cell(canvas, *key, cell, QUERY_COLOUR if key == window.query else WINDOW_COLOUR)
    picture = _to_image(canvas)
    _grid_lines(picture, cell, *window.map_size)
    return picture


# ---------------------------------------------------------------------------------------------
# BiFormer: the routed regions of a query
# ---------------------------------------------------------------------------------------------
@dataclass
class Routing:
    """The regions one query region is routed to in a bi-level routing attention layer."""
    layer: str
    stride: int
    map_size: tuple[int, int]  # the routed map (after the layer's padding to a multiple of the grid)
    grid: tuple[int, int]  # regions per column, per row
    query: tuple[int, int]  # (row, col) token
    query_region: int  # row-major region index
    regions: list[int]  # routed regions, best first

    @property
    def region_size(self) -> tuple[int, int]:
        return self.map_size[0] // self.grid[0], self.map_size[1] // self.grid[1]


@contextlib.contextmanager
def _recorded_routing(layer: nn.Module) -> Iterator[list[tuple[tuple[int, ...], Any, Tensor]]]:
    """Record ``bra_routing``'s (q shape, region grid, indices) while ``layer`` runs."""
    from visionattn.ops import routing
    calls: list[tuple[tuple[int, ...], Any, Tensor]] = []
    active = []
    route = routing.bra_routing

    def recording(q, k, region_grid, *args, **kwargs):
        index = route(q, k, region_grid, *args, **kwargs)
        if active:
            calls.append((tuple(q.shape), region_grid, index))
        return index

    hooks = [layer.register_forward_pre_hook(lambda m, a: active.append(True)),
             layer.register_forward_hook(lambda m, a, o: active.clear())]
    routing.bra_routing = recording
    try:
        yield calls
    finally:
        routing.bra_routing = route
        for hook in hooks:
            hook.remove()


def routed_regions(model: nn.Module, image: np.ndarray, query_xy: Sequence[int],
                   layer: Optional[str] = None) -> Routing:
    """The regions BiFormer routes the query pixel ``query_xy`` = (x, y) to at ``layer``.

    Runs the model on the image and records the routing that layer computes.
    """
    name, attn = pick_layer(model, ROUTING_LAYER, layer)
    with _recorded_routing(attn) as calls, _input_shapes(attn, attn.qkv) as shapes, torch.no_grad():
        model(to_tensor(model, image))
    (q_shape, region_grid, index), = calls
    _, height, width, _ = shapes['input']
    padded_h, padded_w = q_shape[1:3]
    grid = (region_grid, region_grid) if isinstance(region_grid, int) else tuple(region_grid)
    stride = _stride(image.shape[0], height)
    query = _token_of(query_xy, stride, (height, width), image.shape[:2])
    region_h, region_w = padded_h // grid[0], padded_w // grid[1]
    query_region = (query[0] // region_h) * grid[1] + query[1] // region_w
    return Routing(layer=name, stride=stride, map_size=(padded_h, padded_w), grid=grid, query=query,
                   query_region=query_region, regions=index[0, query_region].tolist())


def draw_routing(routing: Routing, image: np.ndarray, min_region: int = 48) -> Image.Image:
    """Routed regions (yellow, numbered by rank), the query's region outlined and the query token (red).

    The picture is enlarged (nearest) so that a region is at least ``min_region`` pixels wide; it
    covers the routed map, padding included (black).
    """
    zoom = max(1, math.ceil(min_region / (routing.region_size[1] * routing.stride)))
    token = routing.stride * zoom
    cell = (routing.region_size[0] * token, routing.region_size[1] * token)
    if zoom > 1:
        image = np.asarray(Image.fromarray(image).resize((image.shape[1] * zoom, image.shape[0] * zoom),
                                                         Image.NEAREST))
    canvas = _canvas(image, routing.grid[0] * cell[0], routing.grid[1] * cell[1])
    for r in routing.regions:
        _fill_cell(canvas, r // routing.grid[1], r % routing.grid[1], cell, ROUTED_COLOUR)
    _fill_cell(canvas, *routing.query, (token, token), QUERY_COLOUR)
    picture = _to_image(canvas)
    _grid_lines(picture, cell, *routing.grid)
    draw = ImageDraw.Draw(picture)
    top, left = divmod(routing.query_region, routing.grid[1])
    draw.rectangle([left * cell[1], top * cell[0], (left + 1) * cell[1] - 1, (top + 1) * cell[0] - 1],
                   outline=QUERY_COLOUR, width=2)
    for rank, r in enumerate(routing.regions, 1):
        draw.text(((r % routing.grid[1]) * cell[1] + 3, (r // routing.grid[1]) * cell[0] + 2), str(rank),
                  fill=(0, 0, 0))
    return picture


# ---------------------------------------------------------------------------------------------
# CBAM / ELA / Triplet: multiplicative gates
# ---------------------------------------------------------------------------------------------
def _gate_parts(module: nn.Module) -> list[nn.Module]:
    """The sub-layers whose outputs (pre- or post-sigmoid) make ``module``'s gate, in call order."""
    kind = type(module).__name__
    if kind == 'CBAM':
        return [module.channel.gate, module.spatial.gate]
    if kind == 'ELA':
        return [module.norm]
    if kind == 'TripletAttention':
        return [m for m in (module.cw, module.hc, module.hw) if m is not None]
    raise TypeError(f'no gate reader for {kind}')


def _combine_gates(module: nn.Module, outputs: list[Tensor]) -> Tensor:
    """The full gate ``G`` (B, C, H, W) with ``module(x) == x * G``, from the recorded sub-layer outputs."""
    kind = type(module).__name__
    if kind == 'CBAM':  # sigmoid outputs: channel (B, C, 1, 1), spatial (B, 1, H, W)
        return outputs[0] * outputs[1]
    if kind == 'ELA':  # GroupNorm outputs of the H profile (B, C, H), then of the W profile (B, C, W)
        return torch.sigmoid(outputs[0]).unsqueeze(3) * torch.sigmoid(outputs[1]).unsqueeze(2)
    # Triplet, conv-BN outputs: cw (B, 1, C, W), hc (B, 1, H, C), hw (B, 1, H, W)
    gates = [torch.sigmoid(outputs[0]).transpose(1, 2), torch.sigmoid(outputs[1]).permute(0, 3, 2, 1)]
    if len(outputs) == 3:
        gates.append(torch.sigmoid(outputs[2]))
    return sum(gates) / len(gates)


def attention_gates(model: nn.Module, x: Tensor, layers: Optional[Sequence[str]] = None) -> dict[str, Tensor]:
    """``{layer: G}`` (B, C, H, W) of the CBAM/ELA/Triplet ``layers`` (default: every one) for input ``x``."""
    found = find_layers(model, GATE_LAYERS)
    if not found:
        raise ValueError(f'{type(model).__name__} has no CBAM, ELA or Triplet attention module')
    names = list(found) if layers is None else list(layers)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise KeyError(f'{unknown} are not attention modules of this model; they are: {list(found)}')
    recorded: dict[str, list[Tensor]] = {n: [] for n in names}
    hooks = [part.register_forward_hook(lambda m, a, out, n=n: recorded[n].append(out.detach()))
             for n in names for part in _gate_parts(found[n])]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {n: _combine_gates(found[n], recorded[n]) for n in names}


def deepest_per_map_size(gates: dict[str, Tensor]) -> dict[str, Tensor]:
    """The last gate of every map size (one per stage): a readable default selection."""
    deepest: dict[tuple[int, int], str] = {}
    for name, gate in gates.items():
        deepest[tuple(gate.shape[-2:])] = name
    return {name: gates[name] for name in deepest.values()}


def _heat(values: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) colours of matplotlib's 'inferno' map."""
    from matplotlib import colormaps
    return colormaps['inferno'](values)[..., :3] * 255


def draw_gates(image: np.ndarray, gates: dict[str, Tensor]) -> Image.Image:
    """The image, then one panel per layer: its channel-mean gate (nearest-upsampled) over the image.

    Each panel's colours span that layer's own min..max, written under the panel.
    """
    height, width = image.shape[:2]
    label_h = 14
    panels = [Image.fromarray(image)]
    captions = ['input']
    for name, gate in gates.items():
        mean = gate[0].mean(0)
        low, high = float(mean.min()), float(mean.max())
        scaled = ((mean - low) / (high - low) if high > low else torch.zeros_like(mean)).numpy()
        rows = np.minimum(np.arange(height) * mean.shape[0] // height, mean.shape[0] - 1)
        cols = np.minimum(np.arange(width) * mean.shape[1] // width, mean.shape[1] - 1)
        heat = _heat(scaled[rows][:, cols])
        panels.append(_to_image((1 - BLEND) * image.astype(np.float32) + BLEND * heat))
        captions.append(f'{name} [{low:.2f}, {high:.2f}]')
    sheet = Image.new('RGB', (width * len(panels), height + label_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (panel, caption) in enumerate(zip(panels, captions)):
        sheet.paste(panel, (i * width, 0))
        draw.text((i * width + 2, height + 1), caption, fill=(0, 0, 0))
    return sheet


# ---------------------------------------------------------------------------------------------
# Predictions of OpenMMLab models
# ---------------------------------------------------------------------------------------------
_VISUALIZERS = itertools.count()


def draw_predictions(config: str, checkpoint: str, image_path: str, out_file: str, score_thr: float = 0.3,
                     opacity: float = 0.5, device: str = 'cpu', with_labels: bool = True,
                     cfg_options: Optional[dict[str, Any]] = None, strict: bool = True) -> Any:
    """Run ``config`` + ``checkpoint`` on the image and draw the prediction; returns the data sample.

    Segmentation (``default_scope='mmseg'``): classes coloured with the dataset palette at ``opacity``.
    Detection (``'mmdet'``): boxes (and masks) scoring at least ``score_thr``.
    """
    import mmcv

    from visionattn.checkpoint import describe_checkpoint, load_state_dict_checked, read_checkpoint, state_dict_from
    from visionattn.mm.config import load_config
    cfg = load_config(config, cfg_options)
    scope = cfg.get('default_scope')
    image = mmcv.imread(image_path, channel_order='rgb')
    if scope == 'mmseg':
        from mmseg.apis import inference_model as infer, init_model as init
        from mmseg.visualization import SegLocalVisualizer as Visualizer
        draw_options = dict(with_labels=with_labels)
    elif scope == 'mmdet':
        from mmdet.apis import inference_detector as infer, init_detector as init
        from mmdet.visualization import DetLocalVisualizer as Visualizer
        draw_options = dict(pred_score_thr=score_thr)
    else:
        raise ValueError(f"{config}: default_scope is {scope!r}; predictions are drawn for segmentation ('mmseg') "
                         "and detection ('mmdet') configs")
    saved = read_checkpoint(checkpoint)
    model = init(cfg, None, device=device)
    load_state_dict_checked(model, state_dict_from(saved, checkpoint), strict=strict, source=checkpoint,
                            model_name=f'the model of {Path(config).stem}',
                            looks_like=describe_checkpoint(saved, checkpoint), non_strict_option='--non-strict')
    dataset_meta = saved.get('meta', {}).get('dataset_meta') if isinstance(saved, dict) else None
    if dataset_meta:
        model.dataset_meta = dataset_meta
    elif not getattr(model, 'dataset_meta', None):
        raise ValueError(f"{checkpoint} has no meta['dataset_meta'] (class names and palette) to draw with: use a "
                         'checkpoint saved by the mmengine Runner (tools/train.py), or add '
                         "meta=dict(dataset_meta=dict(classes=..., palette=...)) to it")
    result = infer(model, image_path)
    visualizer = Visualizer(name=f'visionattn-visualize-{next(_VISUALIZERS)}', alpha=opacity)
    visualizer.dataset_meta = model.dataset_meta
    visualizer.add_datasample('prediction', image, result, draw_gt=False, out_file=out_file, **draw_options)
    return result


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help='timm model name (after `import visionattn`)')
    parser.add_argument('--checkpoint', help='weights file (loaded through the model\'s checkpoint filter)')
    parser.add_argument('--model-kwargs', type=json.loads, default={},
                        help='JSON dict of extra timm.create_model arguments, e.g. \'{"n_win": 8}\'')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--non-strict', action='store_true',
                        help='load a checkpoint that does not fit: only what matches')


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('predictions', help='segmentation/detection results over the image')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('image')
    p.add_argument('--out', required=True)
    p.add_argument('--score-thr', type=float, default=0.3, help='detection: lowest score drawn')
    p.add_argument('--opacity', type=float, default=0.5)
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                   help='override config entries (keys are checked), e.g. model.test_cfg.rcnn.score_thr=0.1')
    p.add_argument('--non-strict', action='store_true', help='load a checkpoint that does not fit: what matches')
    p = sub.add_parser('routing', help='BiFormer: regions routed to a query pixel')
    _model_args(p)
    p.add_argument('--image', required=True)
    p.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), help='resize the image first')
    p.add_argument('--query', type=int, nargs=2, metavar=('X', 'Y'), required=True)
    p.add_argument('--layer', help='routing-attention layer name (default: the first)')
    p = sub.add_parser('neighbourhood', help='NAT/DiNAT: the window of a query pixel')
    _model_args(p)
    p.add_argument('--image', help='drawn under the window (default: grey at --size)')
    p.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), help='input size (default: the image\'s or 224)')
    p.add_argument('--query', type=int, nargs=2, metavar=('X', 'Y'), required=True)
    p.add_argument('--layer', help='neighbourhood-attention layer name (default: the first)')
    p = sub.add_parser('gates', help='CBAM/ELA/Triplet: attention gates over the image')
    _model_args(p)
    p.add_argument('--image', required=True)
    p.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), help='resize the image first')
    p.add_argument('--layers', nargs='+', help='module names (default: the deepest one per stride)')
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.command == 'predictions':
        draw_predictions(args.config, args.checkpoint, args.image, args.out, args.score_thr, args.opacity,
                         args.device, cfg_options=args.cfg_options, strict=not args.non_strict)
        print(f'Wrote {args.out}')
        return
    model = load_model(args.model, args.checkpoint, strict=not args.non_strict, **args.model_kwargs)
    if args.command == 'routing':
        image = load_image(args.image, args.size)
        routing = routed_regions(model, image, args.query, args.layer)
        draw_routing(routing, image).save(args.out)
        print(f'{routing.layer}: query region {routing.query_region} of a {routing.grid[0]}x{routing.grid[1]} grid '
              f'is routed to {routing.regions}; wrote {args.out}')
    elif args.command == 'neighbourhood':
        image = load_image(args.image, args.size) if args.image else None
        size = image.shape[:2] if image is not None else tuple(args.size or (224, 224))
        window = neighbourhood_window(model, size, args.query, args.layer)
        draw_window(window, image).save(args.out)
        print(f'{window.layer}: kernel {window.kernel_size}, dilation {window.dilation}, query token {window.query}, '
              f'{len(window.keys)} keys on a {window.map_size[0]}x{window.map_size[1]} map; wrote {args.out}')
    else:
        image = load_image(args.image, args.size)
        gates = attention_gates(model, to_tensor(model, image), args.layers)
        gates = gates if args.layers else deepest_per_map_size(gates)
        draw_gates(image, gates).save(args.out)
        print(f'gates of {list(gates)}; wrote {args.out}')


if __name__ == '__main__':
    main()
