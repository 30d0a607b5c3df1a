"""A model's stage layout and attention layers, read from the model itself (for the model cards).

:func:`architecture` builds a model on the meta device (no memory, no weights) and lists its
``feature_info`` stages and, per stage, the attention layers it holds with their configuration.
:data:`ATTENTION_LAYERS` says which layer classes count as attention and how each is described;
a new kind of attention layer gets an entry there (its configuration and its one-line label).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ['AttentionLayer', 'ATTENTION_LAYERS', 'describe_attention', 'attention_label', 'architecture']


@dataclass(frozen=True)
class AttentionLayer:
    """How one attention layer class is described: its configuration, and a label made from it."""
    describe: Callable[[Any], dict[str, Any]]
    label: Callable[[dict[str, Any]], str]


def _window(value: Any) -> int:
    return value[0] if isinstance(value, (tuple, list)) else int(value)


ATTENTION_LAYERS: dict[str, AttentionLayer] = {  # qualified class name -> description
    'visionattn.layers.neighborhood_attention.NeighborhoodAttention2D': AttentionLayer(
        lambda m: dict(kernel_size=m.kernel_size, dilation=m.dilation, heads=m.num_heads),
        lambda p: f"neighbourhood attention {p['kernel_size']}x{p['kernel_size']}, dilation {p['dilation']}, "
                  f"{p['heads']} heads"),
    'visionattn.layers.routing_attention.BiLevelRoutingAttention': AttentionLayer(
        lambda m: dict(n_win=m.n_win, topk=m.topk, heads=m.num_heads),
        lambda p: f"bi-level routing attention, n_win {p['n_win']}, top-{p['topk']}, {p['heads']} heads"),
    'visionattn.models.biformer.GlobalAttention': AttentionLayer(
        lambda m: dict(heads=m.num_heads, lepe=m.lepe is not None),
        lambda p: f"global attention, {p['heads']} heads" + (' + LePE' if p['lepe'] else '')),
    'timm.layers.halo_attn.HaloAttn': AttentionLayer(
        lambda m: dict(block_size=m.block_size, halo_size=m.halo_size, heads=m.num_heads),
        lambda p: f"halo attention, block {p['block_size']}, halo {p['halo_size']}, {p['heads']} heads"),
    'timm.models.davit.WindowAttention': AttentionLayer(
        lambda m: dict(window=_window(m.window_size), heads=m.num_heads),
        lambda p: f"window attention {p['window']}x{p['window']}, {p['heads']} heads"),
    'timm.models.davit.ChannelAttention': AttentionLayer(
        lambda m: dict(heads=m.num_heads),
        lambda p: f"channel group attention, {p['heads']} groups"),
    'timm.models.focalnet.FocalModulation': AttentionLayer(
        lambda m: dict(kernels=list(m.kernel_sizes), levels=m.focal_level),
        lambda p: f"focal modulation, {p['levels']} levels, kernels {p['kernels']}"),
    'visionattn.layers.cnn_attention.CBAM': AttentionLayer(
        lambda m: dict(spatial_kernel=_window(m.spatial.conv.conv.kernel_size)),
        lambda p: f"CBAM (spatial kernel {p['spatial_kernel']})"),
    'visionattn.layers.cnn_attention.ELA': AttentionLayer(
        lambda m: dict(size=m.size, kernel_size=_window(m.conv.kernel_size)),
        lambda p: f"ELA-{p['size']} (kernel {p['kernel_size']})"),
    'visionattn.layers.cnn_attention.TripletAttention': AttentionLayer(
        lambda m: dict(kernel_size=m.kernel_size),
        lambda p: f"Triplet attention (kernel {p['kernel_size']})"),
}
_BY_CLASS_NAME = {qualname.rsplit('.', 1)[1]: layer for qualname, layer in ATTENTION_LAYERS.items()}


def describe_attention(module: nn.Module) -> Optional[tuple[str, dict[str, Any]]]:
    """(layer class name, its configuration) if ``module`` is one of :data:`ATTENTION_LAYERS`, else None."""
    cls = type(module)
    layer = ATTENTION_LAYERS.get(f'{cls.__module__}.{cls.__qualname__}')
    return None if layer is None else (cls.__name__, layer.describe(module))


def attention_label(entry: dict[str, Any]) -> str:
    """'<count> x <label>' of an ``attention`` entry of :func:`architecture`."""
    return f"{entry['count']} x {_BY_CLASS_NAME[entry['layer']].label(entry['params'])}"


def architecture(name: str) -> dict[str, Any]:
    """Stage layout, attention layers and required input multiple of timm model ``name``.

    Every attention layer is assigned to the first ``feature_info`` stage at or after it in module
    order (MobileNetV2's unlisted blocks join the next listed stage of the same stride); an attention
    layer inside another one is not counted twice.
    """
    import timm

    from ..mm.backbones import required_input_multiple
    with torch.device('meta'):
        model = timm.create_model(name, pretrained=False)
    infos = list(model.feature_info)
    order = {module_name: i for i, (module_name, _) in enumerate(model.named_modules())}
    stage_end = []
    for info in infos:
        prefix = info['module'] + '.'
        stage_end.append(max(i for n, i in order.items() if n == info['module'] or n.startswith(prefix)))
    counts: dict[tuple[int, str, str], int] = {}
    skip_prefix: Optional[str] = None
    for module_name, module in model.named_modules():
        if skip_prefix is not None and module_name.startswith(skip_prefix):
            continue
        described = describe_attention(module)
        if described is None:
            continue
        skip_prefix = module_name + '.'
        position = order[module_name]
        stage = next((i for i, end in enumerate(stage_end) if position <= end), len(infos) - 1)
        key = (infos[stage]['reduction'], described[0], json.dumps(described[1], sort_keys=True))
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        raise RuntimeError(f'{name}: no known attention layer found; add its class to ATTENTION_LAYERS in '
                           'visionattn/analysis/architecture.py')
    attention = [dict(stride=stride, layer=layer, params=json.loads(params), count=count)
                 for (stride, layer, params), count in sorted(counts.items())]
    return dict(stages=[dict(stride=i['reduction'], channels=i['num_chs']) for i in infos],
                input_multiple=required_input_multiple(name), attention=attention)
