"""Light attention modules for CNNs: CBAM, ELA and Triplet attention.

Each module takes its channel count as ``channels`` (first positional argument, as timm's
``create_attn`` passes it) or as ``in_channels`` (as OpenMMLab's ``build_plugin_layer`` passes it),
returns a tensor of the input's shape, and accepts ``device``/``dtype`` like timm's layers.

- :class:`CBAM` (Woo et al., ECCV 2018, arXiv 1807.06521) reuses timm's ``CbamModule``, which is
  faithful to the paper and to the official code (Jongchan/attention-module) once its shared MLP has
  biases (the official ``nn.Linear`` layers; timm defaults to none) and the MLP width is
  ``channels // reduction`` (timm rounds). The only remaining difference is the order of the spatial
  gate's two pooled maps ([mean, max] in timm, [max, mean] officially), a permutation of the 7x7
  conv's input channels that :mod:`visionattn.models.cnn_attention` applies when it converts weights.
- :class:`ELA` (Xu & Wan 2024, arXiv 2403.01123) is written here because timm's
  ``EfficientLocalAttn`` is a different module (see :class:`ELA`); timm's is offered too, as
  :class:`TimmELA` (``'ela_timm'``).
- :class:`TripletAttention` (Misra et al., WACV 2021, arXiv 2010.03045) is not in timm.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

import torch
from timm.layers import ConvNormAct
from timm.layers.cbam import CbamModule
from timm.layers.coord_attn import EfficientLocalAttn
from torch import nn

__all__ = ['CBAM', 'ELA', 'ELA_SIZES', 'TimmELA', 'TripletAttention', 'CNN_ATTENTION_LAYERS',
           'create_cnn_attention', 'get_cnn_attention']


def _resolve_channels(layer: str, channels: int | None, in_channels: int | None) -> int:
    """The channel count from timm's ``channels`` or OpenMMLab's ``in_channels``."""
    if channels is None and in_channels is None:
        raise TypeError(f'{layer} needs the number of input channels: pass channels=C (timm style) or '
                        'in_channels=C (OpenMMLab plugin style)')
    if channels is not None and in_channels is not None and channels != in_channels:
        raise ValueError(f'{layer} got channels={channels} and in_channels={in_channels}; pass only one of them')
    resolved = channels if channels is not None else in_channels
    if isinstance(resolved, bool) or not isinstance(resolved, int) or resolved < 1:
        raise ValueError(f'{layer}: the number of channels must be a positive int, got {resolved!r}')
    return resolved


class CBAM(CbamModule):
    """Convolutional Block Attention Module: channel gate, then spatial gate.

    timm's ``CbamModule`` with the paper's settings: MLP ``C -> C // reduction -> C`` with biases,
    shared by the average- and max-pooled descriptors; spatial gate: a ``kernel_size`` conv on the
    channel-pooled [mean, max] maps, BatchNorm (momentum 0.01 as officially), sigmoid.

    Args:
        channels: input channels (or ``in_channels``).
        reduction: channel reduction of the MLP (16 in the paper).
        spatial_kernel_size: kernel of the spatial gate's conv (7 in the paper).
    """

    def __init__(self, channels: int | None = None, reduction: int = 16, spatial_kernel_size: int = 7, *,
                 in_channels: int | None = None, device: Any = None, dtype: Any = None) -> None:
        channels = _resolve_channels('CBAM', channels, in_channels)
        if not isinstance(reduction, int) or reduction < 1 or channels // reduction < 1:
            raise ValueError(f'CBAM: reduction={reduction!r} leaves no hidden units for channels={channels} '
                             f'(hidden = channels // reduction); use a positive reduction <= {channels}')
        super().__init__(channels, rd_channels=channels // reduction, spatial_kernel_size=spatial_kernel_size,
                         mlp_bias=True, device=device, dtype=dtype)
        self.spatial.conv.bn.momentum = 0.01


# The three hyper-parameters of the paper's four versions (arXiv 2403.01123): kernel size of the shared
# 1-D conv, its groups (C, i.e. depthwise, for T and B; C / 8 for S and L, stored here as channels per
# group) and the GroupNorm's number of groups.
ELA_SIZES: dict[str, dict[str, int]] = {
    'T': dict(kernel_size=5, channels_per_group=1, norm_groups=32),
    'B': dict(kernel_size=7, channels_per_group=1, norm_groups=16),
    'S': dict(kernel_size=5, channels_per_group=8, norm_groups=16),
    'L': dict(kernel_size=7, channels_per_group=8, norm_groups=16),
}


class ELA(nn.Module):
    """Efficient Local Attention as published, in the paper's sizes ELA-T/B/S/L.

    Strip pooling averages the map along W (an H-profile) and along H (a W-profile); one shared
    1-D conv and one shared GroupNorm process both profiles, a sigmoid turns them into gates and
    ``out = x * gate_h * gate_w``. No channel reduction.

    timm's ``EfficientLocalAttn`` (offered as :class:`TimmELA`) departs from this: separate
    ``k x 1`` and ``1 x k`` convs for the two directions instead of one shared 1-D conv, always
    depthwise (ELA-S/L group 8 channels per group), two GroupNorms with a single group instead of one
    shared GroupNorm with 16 or 32 groups, an extra SiLU between the norm and the sigmoid, and
    optional conv bias and residual skip; it has no size presets.

    Args:
        channels: input channels (or ``in_channels``); must be divisible by the size's GroupNorm
            groups (32 for T, 16 otherwise) and, for S and L, by 8.
        size: 'T', 'B', 'S' or 'L'.
    """

    def __init__(self, channels: int | None = None, size: str = 'B', *, in_channels: int | None = None,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        channels = _resolve_channels('ELA', channels, in_channels)
        size_key = str(size).upper().removeprefix('ELA-')
        if size_key not in ELA_SIZES:
            raise ValueError(f"ELA: unknown size {size!r}; choose one of {sorted(ELA_SIZES)} (ELA-T/B/S/L)")
        hp = ELA_SIZES[size_key]
        for divisor, what in ((hp['norm_groups'], 'GroupNorm groups'), (hp['channels_per_group'], 'channels per conv group')):
            if channels % divisor:
                fits = [s for s, h in ELA_SIZES.items()
                        if channels % h['norm_groups'] == 0 and channels % h['channels_per_group'] == 0]
                raise ValueError(f'ELA-{size_key}: channels={channels} is not divisible by its {divisor} {what}; '
                                 f'sizes that fit {channels} channels: {fits or "none"}')
        self.size = size_key
        self.conv = nn.Conv1d(channels, channels, hp['kernel_size'], padding=hp['kernel_size'] // 2,
                              groups=channels // hp['channels_per_group'], bias=False, device=device, dtype=dtype)
        self.norm = nn.GroupNorm(hp['norm_groups'], channels, device=device, dtype=dtype)

    def _gate(self, profile: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.norm(self.conv(profile)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_h = self._gate(x.mean(dim=3)).unsqueeze(3)  # (B, C, H, 1)
        gate_w = self._gate(x.mean(dim=2)).unsqueeze(2)  # (B, C, 1, W)
        return x * gate_h * gate_w


class TimmELA(EfficientLocalAttn):
    """timm's ``EfficientLocalAttn`` (see :class:`ELA` for how it differs from the paper).

    Only adds the ``in_channels`` spelling, so OpenMMLab plug-in configs can build it.
    """

    def __init__(self, channels: int | None = None, kernel_size: int = 7, *, in_channels: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(_resolve_channels('TimmELA', channels, in_channels), kernel_size=kernel_size, **kwargs)


def _zpool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Triplet attention's Z-pool: [max, mean] over ``dim``, stacked as two channels."""
    return torch.stack([x.amax(dim), x.mean(dim)], dim=1)


class TripletAttention(nn.Module):
    """Triplet attention: three Z-pool -> conv -> BN -> sigmoid gates, averaged.

    The branches see the tensor from three sides: ``cw`` pools over H and gates the (C, W) plane,
    ``hc`` pools over W and gates the (H, C) plane, ``hw`` pools over C and gates the (H, W) plane
    (the official code rotates the tensor for the first two). The gates are broadcast back instead
    of rotating the input, which computes the same output without three transposed copies of it.
    Conv weights are laid out as in the official code, so its checkpoints load unchanged.

    Args:
        channels: input channels (or ``in_channels``); the module does not depend on it.
        kernel_size: odd size of each branch's square conv (7 in the paper; 3 also released).
        no_spatial: drop the ``hw`` branch (the paper's ablation without spatial attention).
    """

    def __init__(self, channels: int | None = None, kernel_size: int = 7, no_spatial: bool = False, *,
                 in_channels: int | None = None, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        _resolve_channels('TripletAttention', channels, in_channels)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'TripletAttention: kernel_size must be a positive odd int (7 in the paper), got {kernel_size!r}')
        self.kernel_size = kernel_size
        self.no_spatial = no_spatial

        def gate() -> ConvNormAct:
            return ConvNormAct(2, 1, kernel_size, apply_act=False, norm_kwargs=dict(momentum=0.01),
                               device=device, dtype=dtype)

        self.cw = gate()
        self.hc = gate()
        self.hw = None if no_spatial else gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = [torch.sigmoid(self.cw(_zpool(x, 2))).transpose(1, 2),  # (B, 1, C, W) -> (B, C, 1, W)
                 torch.sigmoid(self.hc(_zpool(x, 3).transpose(2, 3))).permute(0, 3, 2, 1)]  # (B, 1, H, C) -> (B, C, H, 1)
        if self.hw is not None:
            gates.append(torch.sigmoid(self.hw(_zpool(x, 1))))  # (B, 1, H, W)
        gates = [g / len(gates) for g in gates]  # the branches' mean, divided on the small gate maps
        scale = gates[0] + gates[1]  # broadcasts to (B, C, H, W)
        if len(gates) == 3:
            scale = scale + gates[2]  # not in place: FX graphs drop the result-less add_ (and the hw branch with it)
        return x * scale


CNN_ATTENTION_LAYERS: dict[str, Callable[..., nn.Module]] = {
    'cbam': CBAM,
    'ela': ELA,
    'ela_timm': TimmELA,
    'triplet': TripletAttention,
}


def get_cnn_attention(name: str) -> Callable[..., nn.Module]:
    """The module class registered as ``name``: ``'cbam'``, ``'ela'``, ``'ela_timm'`` or ``'triplet'``."""
    if name not in CNN_ATTENTION_LAYERS:
        close = difflib.get_close_matches(str(name), CNN_ATTENTION_LAYERS, n=3)
        hint = f' Did you mean {close}?' if close else ''
        raise ValueError(f'unknown CNN attention module {name!r}; known: {sorted(CNN_ATTENTION_LAYERS)}.{hint}')
    return CNN_ATTENTION_LAYERS[name]


def create_cnn_attention(name: str, channels: int, **kwargs: Any) -> nn.Module:
    """The attention module ``name`` (see :func:`get_cnn_attention`) for ``channels`` input channels."""
    return get_cnn_attention(name)(channels, **kwargs)
