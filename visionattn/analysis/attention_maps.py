"""What the attention layers of a model do on an image: routed regions, neighborhood windows, CNN gates.

Everything is read from one forward pass of the real model (weights, preprocessing and padding
included), through PyTorch's forward hooks, and computed with the project's own operators:

- :func:`routed_attention` (BiFormer, ``BiLevelRoutingAttention``): the layer's q and k are its ``qkv``
  projection's output; :func:`visionattn.ops.bra_routing` on them gives the regions every query region
  is routed to, and :func:`visionattn.ops.bra_attention` with one-hot values gives each chosen query's
  attention weights over the tokens of those regions, per head (the operator's own masking and scale).
- :func:`neighborhood_attention` (NAT/DiNAT, ``NeighborhoodAttention2D``): the same for
  :func:`visionattn.ops.na2d`: one-hot values give each chosen query's attention weights per head,
  with the layer's kernel size, dilation, relative positional bias and padding of small maps; the
  window is where the weights are non-zero.
- :func:`attention_gates` (``CBAM``, ``ELA``, ``TripletAttention``): the multiplicative gate
  ``G`` with ``module(x) == x * G``, from the modules' own sub-layers: CBAM ``G = channel gate x
  spatial gate``, ELA ``G = row gate x column gate``, Triplet ``G = mean of its three branch gates``.

Queries are pixels ``(x, y)`` of the original image; the maps are on the layer's token grid, whose
tokens cover ``stride`` pixels of the image at the network's scale (:class:`~.loading.Inference`).

Why our own: neither timm nor OpenMMLab reads routed regions, neighborhood windows or gates.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, UnknownNameError
from ..layers import CBAM, ELA, BiLevelRoutingAttention, NeighborhoodAttention2D, TripletAttention
from ..ops import bra_attention, bra_routing, na2d
from .loading import Inference, LoadedModel

__all__ = ['QueryAttention', 'RoutedAttention', 'NeighborhoodAttention', 'Gate', 'find_layers', 'routed_attention',
           'neighborhood_attention', 'attention_gates', 'default_queries']

GATE_LAYERS = (CBAM, ELA, TripletAttention)
_ONE_HOT_CHUNK = 128  # keys per operator call when reading attention weights (the Triton kernels' head_dim limit)


# ---------------------------------------------------------------------------------------------
# Layers and queries
# ---------------------------------------------------------------------------------------------
def find_layers(model: nn.Module, classes: tuple[type, ...]) -> dict[str, nn.Module]:
    """``{name: module}`` of the layers of one of ``classes``, in model order (none inside another)."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, classes) and not any(name.startswith(f'{outer}.') for outer in found):
            found[name] = module
    return found


def _pick_layers(model: nn.Module, classes: tuple[type, ...], names: Optional[Sequence[str]],
                 default: Callable[[dict[str, nn.Module]], list[str]]) -> dict[str, nn.Module]:
    found = find_layers(model, classes)
    kinds = ' or '.join(c.__name__ for c in classes)
    if not found:
        raise UnknownNameError(f'{type(model).__name__} has no {kinds} layer')
    if names is None:
        return {name: found[name] for name in default(found)}
    unknown = [n for n in names if n not in found]
    if unknown:
        raise UnknownNameError(f'{unknown} are not {kinds} layers of this model; they are: {list(found)}')
    return {name: found[name] for name in names}


def _first_per_setting(setting: Callable[[nn.Module], tuple]) -> Callable[[dict[str, nn.Module]], list[str]]:
    """Default layer choice: the first layer of every stage and setting (e.g. each DiNAT dilation)."""
    def choose(found: dict[str, nn.Module]) -> list[str]:
        first: dict[tuple, str] = {}
        for name, module in found.items():
            stage = name.rsplit('.blocks.', 1)[0] if '.blocks.' in name else name
            first.setdefault((stage, *setting(module)), name)
        return list(first.values())
    return choose


def default_queries(height: int, width: int) -> list[tuple[int, int]]:
    """Three query pixels (x, y) spread over an image: upper left, centre, lower right."""
    return [(round(width * fx), round(height * fy)) for fx, fy in ((0.25, 0.3), (0.5, 0.55), (0.75, 0.8))]


def _stride(input_side: int, map_side: int) -> int:
    """Input pixels per token: the power of two nearest ``input_side / map_side``."""
    return 2 ** round(math.log2(input_side / map_side))


# ---------------------------------------------------------------------------------------------
# Reading q and k of a layer during the forward
# ---------------------------------------------------------------------------------------------
@dataclass
class _Recorded:
    map_size: tuple[int, int] = (0, 0)  # the layer's input map (height, width), before its padding
    qkv: Optional[Tensor] = None  # its qkv projection's output on the padded map, (1, Hp, Wp, channels)


@contextlib.contextmanager
def _recorded_qkv(layers: dict[str, nn.Module]) -> Iterator[dict[str, _Recorded]]:
    """The input map size and qkv output of every layer during the first forward inside the block."""
    recorded = {name: _Recorded() for name in layers}
    hooks = []
    for name, layer in layers.items():
        def record_input(module: nn.Module, args: tuple, rec: _Recorded = recorded[name]) -> None:
            if rec.qkv is None:
                rec.map_size = tuple(args[0].shape[1:3])

        def record_qkv(module: nn.Module, args: tuple, out: Tensor, rec: _Recorded = recorded[name]) -> None:
            if rec.qkv is None:
                rec.qkv = out[:1].detach()
        hooks += [layer.register_forward_pre_hook(record_input), layer.qkv.register_forward_hook(record_qkv)]
    try:
        yield recorded
    finally:
        for hook in hooks:
            hook.remove()


def _attention_weights(attend: Callable[[Tensor], Tensor], padded: tuple[int, int], heads: int,
                       tokens: list[tuple[int, int]], like: Tensor) -> Tensor:
    """(queries, heads, Hp, Wp) attention weights of the query ``tokens``: ``attend(v)`` is the operator
    on one-hot values (one channel per key, ``_ONE_HOT_CHUNK`` keys per call), so its output row of a
    query is that query's attention distribution over the keys."""
    height, width = padded
    keys = height * width
    rows = torch.tensor([r for r, _ in tokens]), torch.tensor([c for _, c in tokens])
    weights = torch.zeros(len(tokens), heads, keys, dtype=torch.float32)
    for start in range(0, keys, _ONE_HOT_CHUNK):
        count = min(_ONE_HOT_CHUNK, keys - start)
        one_hot = torch.zeros(keys, _ONE_HOT_CHUNK, dtype=like.dtype, device=like.device)
        one_hot[torch.arange(start, start + count), torch.arange(count)] = 1
        v = one_hot.view(1, height, width, 1, _ONE_HOT_CHUNK).expand(1, height, width, heads, _ONE_HOT_CHUNK)
        out = attend(v.contiguous())[0, rows[0], rows[1]]  # (queries, heads, chunk)
        weights[:, :, start:start + count] = out[..., :count].float().cpu()
    return weights.view(len(tokens), heads, height, width)


# ---------------------------------------------------------------------------------------------
# Query attention of routing and neighborhood layers
# ---------------------------------------------------------------------------------------------
@dataclass
class QueryAttention:
    """What chosen queries attend to at one attention layer."""
    layer: str
    stride: tuple[int, int]  # network-input pixels per token (y, x)
    map_size: tuple[int, int]  # the layer's token map (height, width)
    padded_size: tuple[int, int]  # the map the layer attends over, after its zero-padding
    heads: int
    query_pixels: list[tuple[float, float]]  # (x, y) in the inference image
    queries: list[tuple[int, int]]  # (row, col) tokens of the queries
    weights: Tensor  # (queries, heads, padded height, padded width): each query's attention weights

    def keys(self, query: int) -> Tensor:
        """(row, col) of the tokens query ``query`` attends to with a non-zero weight in some head."""
        return torch.nonzero(self.weights[query].amax(0) > 0)


@dataclass
class RoutedAttention(QueryAttention):
    """Bi-level routing: each query's region attends to the tokens of its ``topk`` routed regions."""
    grid: tuple[int, int] = (1, 1)  # regions per column and per row
    topk: int = 1
    query_regions: tuple[int, ...] = ()  # row-major region index of each query
    routed: tuple[tuple[int, ...], ...] = ()  # routed regions of each query's region, best first

    @property
    def region_size(self) -> tuple[int, int]:
        return self.padded_size[0] // self.grid[0], self.padded_size[1] // self.grid[1]


@dataclass
class NeighborhoodAttention(QueryAttention):
    """Neighborhood attention: each query attends to the ``kernel_size``-square window around it."""
    kernel_size: int = 0
    dilation: int = 1


def _query_tokens(inference: Inference, query_xy: Sequence[Sequence[float]], stride: tuple[int, int],
                  map_size: tuple[int, int], original_hw: tuple[int, int]) -> tuple[list, list]:
    pixels, tokens = [], []
    for x, y in query_xy:
        if not (0 <= x < original_hw[1] and 0 <= y < original_hw[0]):
            raise ConfigError(f'query pixel (x={x:g}, y={y:g}) is outside the {original_hw[1]}x{original_hw[0]} image: '
                              f'give 0 <= x < {original_hw[1]} and 0 <= y < {original_hw[0]}')
        px, py = x * inference.scale[1], y * inference.scale[0]
        pixels.append((px, py))
        tokens.append((min(int(py // stride[0]), map_size[0] - 1), min(int(px // stride[1]), map_size[1] - 1)))
    return pixels, tokens


@torch.no_grad()
def routed_attention(loaded: LoadedModel, image: np.ndarray, query_xy: Sequence[Sequence[float]],
                     layers: Optional[Sequence[str]] = None) -> tuple[Inference, list[RoutedAttention]]:
    """Routed regions and attention weights of the query pixels ``(x, y)`` at BiFormer's routing layers.

    ``layers`` default to the first routing layer of every stage.
    """
    chosen = _pick_layers(loaded.network, (BiLevelRoutingAttention,), layers, _first_per_setting(lambda m: ()))
    with _recorded_qkv(chosen) as recorded:
        inference = loaded.infer(image)
    maps = []
    for name, layer in chosen.items():
        rec = recorded[name]
        q, k = (t.unflatten(-1, (layer.num_heads, -1)) for t in rec.qkv[..., :2 * layer.qk_dim].split(layer.qk_dim, -1))
        padded = tuple(q.shape[1:3])
        key_mask = None
        if layer.pad_mode == 'masked' and padded != rec.map_size:  # the layer's own masking of its padding
            key_mask = torch.zeros(1, *padded, dtype=torch.bool, device=q.device)
            key_mask[:, :rec.map_size[0], :rec.map_size[1]] = True
        index = bra_routing(q, k, layer.n_win, layer.topk, layer.scale, key_mask)
        stride = (_stride(inference.input_size[0], rec.map_size[0]), _stride(inference.input_size[1], rec.map_size[1]))
        pixels, tokens = _query_tokens(inference, query_xy, stride, rec.map_size, image.shape[:2])
        weights = _attention_weights(
            lambda v: bra_attention(q, k, v, index, layer.n_win, layer.scale, key_mask),
            padded, layer.num_heads, tokens, q)
        region_h, region_w = padded[0] // layer.n_win, padded[1] // layer.n_win
        regions = tuple((r // region_h) * layer.n_win + c // region_w for r, c in tokens)
        maps.append(RoutedAttention(
            layer=name, stride=stride, map_size=rec.map_size, padded_size=padded, heads=layer.num_heads,
            query_pixels=pixels, queries=tokens, weights=weights, grid=(layer.n_win, layer.n_win), topk=layer.topk,
            query_regions=regions, routed=tuple(tuple(index[0, r].tolist()) for r in regions)))
    return inference, maps


@torch.no_grad()
def neighborhood_attention(loaded: LoadedModel, image: np.ndarray, query_xy: Sequence[Sequence[float]],
                           layers: Optional[Sequence[str]] = None) -> tuple[Inference, list[NeighborhoodAttention]]:
    """Attention weights of the query pixels ``(x, y)`` at NAT/DiNAT neighborhood-attention layers.

    ``layers`` default to the first layer of every stage and dilation.
    """
    chosen = _pick_layers(loaded.network, (NeighborhoodAttention2D,), layers,
                          _first_per_setting(lambda m: (m.kernel_size, m.dilation)))
    with _recorded_qkv(chosen) as recorded:
        inference = loaded.infer(image)
    maps = []
    for name, layer in chosen.items():
        rec = recorded[name]
        padded = tuple(rec.qkv.shape[1:3])
        q, k, _ = rec.qkv.view(1, *padded, 3, layer.num_heads, layer.head_dim).unbind(3)
        # na2d takes one head_dim for q, k and v: zero channels added to q and k leave q.k unchanged
        width = max(layer.head_dim, _ONE_HOT_CHUNK)
        q, k = (torch.nn.functional.pad(t, (0, width - layer.head_dim)) for t in (q, k))
        stride = (_stride(inference.input_size[0], rec.map_size[0]), _stride(inference.input_size[1], rec.map_size[1]))
        pixels, tokens = _query_tokens(inference, query_xy, stride, rec.map_size, image.shape[:2])

        def attend(v: Tensor) -> Tensor:
            v = torch.nn.functional.pad(v, (0, width - v.shape[-1]))
            return na2d(q, k, v, layer.kernel_size, layer.dilation, rpb=layer.rpb, scale=layer.scale)

        weights = _attention_weights(attend, padded, layer.num_heads, tokens, q)
        maps.append(NeighborhoodAttention(
            layer=name, stride=stride, map_size=rec.map_size, padded_size=padded, heads=layer.num_heads,
            query_pixels=pixels, queries=tokens, weights=weights, kernel_size=layer.kernel_size,
            dilation=layer.dilation))
    return inference, maps


# ---------------------------------------------------------------------------------------------
# CBAM / ELA / Triplet gates
# ---------------------------------------------------------------------------------------------
@dataclass
class Gate:
    """The gate ``G`` of one CBAM/ELA/Triplet module: ``module(x) == x * G``."""
    layer: str
    kind: str  # the module's class name
    stride: tuple[int, int]  # network-input pixels per gate cell (y, x)
    values: Tensor  # (channels, height, width) of the first image

    @property
    def channel_mean(self) -> Tensor:
        """(height, width): the gate averaged over channels, how strongly each position is kept."""
        return self.values.mean(0)


def _gate_parts(module: nn.Module) -> list[nn.Module]:
    """The sub-layers whose outputs (pre- or post-sigmoid) make ``module``'s gate, in call order."""
    if isinstance(module, CBAM):
        return [module.channel.gate, module.spatial.gate]
    if isinstance(module, ELA):
        return [module.norm]
    return [m for m in (module.cw, module.hc, module.hw) if m is not None]


def _combine_gates(module: nn.Module, outputs: list[Tensor]) -> Tensor:
    """The full gate ``G`` (B, C, H, W) from the recorded sub-layer outputs."""
    if isinstance(module, CBAM):  # sigmoid outputs: channel (B, C, 1, 1), spatial (B, 1, H, W)
        return outputs[0] * outputs[1]
    if isinstance(module, ELA):  # GroupNorm outputs of the H profile (B, C, H), then of the W profile (B, C, W)
        return torch.sigmoid(outputs[0]).unsqueeze(3) * torch.sigmoid(outputs[1]).unsqueeze(2)
    # Triplet, conv-BN outputs: cw (B, 1, C, W), hc (B, 1, H, C), hw (B, 1, H, W)
    gates = [torch.sigmoid(outputs[0]).transpose(1, 2), torch.sigmoid(outputs[1]).permute(0, 3, 2, 1)]
    if len(outputs) == 3:
        gates.append(torch.sigmoid(outputs[2]))
    return sum(gates) / len(gates)


def attention_gates(loaded: LoadedModel, image: np.ndarray,
                    layers: Optional[Sequence[str]] = None) -> tuple[Inference, list[Gate]]:
    """The gates of the CBAM/ELA/Triplet ``layers`` on ``image``; default: the deepest one of every map size
    (one per stage), the gate a stage's output last passed through."""
    chosen = _pick_layers(loaded.network, GATE_LAYERS, layers, list)  # all, narrowed after the forward
    recorded: dict[str, list[Tensor]] = {n: [] for n in chosen}
    hooks = [part.register_forward_hook(lambda m, a, out, n=n: recorded[n].append(out[:1].detach()))
             for n, module in chosen.items() for part in _gate_parts(module)]
    try:
        inference = loaded.infer(image)
    finally:
        for hook in hooks:
            hook.remove()
    gates = []
    for name, module in chosen.items():
        parts = len(_gate_parts(module)) * (2 if isinstance(module, ELA) else 1)  # ELA's norm runs twice
        values = _combine_gates(module, recorded[name][:parts])[0]
        stride = (_stride(inference.input_size[0], values.shape[1]), _stride(inference.input_size[1], values.shape[2]))
        gates.append(Gate(layer=name, kind=type(module).__name__, stride=stride, values=values))
    if layers is None:
        deepest = {tuple(g.values.shape[1:]): g for g in gates}
        gates = list(deepest.values())
    return inference, gates
