"""HaloNet H0-H7: the pure local self-attention models of the HaloNet paper, as timm entry points.

Paper: `Scaling Local Self-Attention for Parameter Efficient Visual Backbones` (Vaswani et al.,
CVPR 2021) - https://arxiv.org/abs/2103.12731. No official code or weights were released.

timm already has the halo attention layer, the ByobNet builder and ``halonet_h1`` (with hybrids such
as ``halonet26t``), but not the rest of the family. The models here are built exactly like timm's
``halonet_h1``: ByobNet, a 7x7 stem with max pooling, four stages of ``[3, 3, l3, 3]`` bottleneck
blocks whose spatial layer is timm's ``HaloAttn`` (8 heads), ReLU and BatchNorm. The paper's table
gives per model the block size ``b``, halo size ``h``, value ratio ``rv``, width ratio ``rb``, the
third-stage depth ``l3`` and the width ``df`` of a final 1x1 conv before pooling (none for H0-H2).

Reading of the widths (the paper describes them in words; this reading reproduces every parameter
count of its table, 5.5M for H0 to 67.4M for H7): in stage ``i`` the block's 1x1 in-projection and
the attention's queries and keys have ``64 * 2**i`` channels, the values (and so the attention output)
``rv`` times that, and the block output ``rb`` times that. H1 is therefore timm's own
``halonet_h1`` (tested to be the same network) and is not registered again here.

timm's ``SelfAttnBlock`` sizes the attention output like its input, so it cannot express ``rv > 1``
(H5-H7). :class:`ValueExpandedSelfAttnBlock` is a thin subclass that widens the values and the layers
after the attention; at ``rv = 1`` it is timm's block unchanged.

Input sizes: halo attention needs every map it sees to be a multiple of the block size, so the
input must be a multiple of block size x 32 (256 for H0-H2 and H6, 320 for H3 and H7, 384 for H4,
448 for H5). The paper's sizes fit this except H7's 600, which timm's layer cannot block: H7's default
input size here is 640. ``visionattn.TimmBackbone`` pads any input to the required multiple.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import make_divisible
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.byobnet import ByoBlockCfg, ByoModelCfg, ByobNet, SelfAttnBlock

__all__ = ['ValueExpandedSelfAttnBlock', 'HALONET_PAPER_CONFIGS', 'halonet_model_cfg']


class ValueExpandedSelfAttnBlock(SelfAttnBlock):
    """timm's self-attention bottleneck block with ``value_ratio`` times wider attention values.

    The queries and keys keep the bottleneck width; the values, the post-attention norm and the
    input of the last 1x1 conv are ``value_ratio`` times wider (HaloNet's ``rv``).
    """

    def __init__(self, value_ratio: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if value_ratio == 1.0:
            return
        layers, stride = kwargs['layers'], kwargs.get('stride', 1)
        mid_chs = self.conv1_1x1.conv.out_channels
        value_chs = make_divisible(mid_chs * value_ratio)
        device, dtype = kwargs.get('device'), kwargs.get('dtype')
        self.self_attn = layers.self_attn(mid_chs, dim_out=value_chs, qk_ratio=1 / value_ratio,
                                          stride=1 if kwargs.get('extra_conv') else stride,
                                          device=device, dtype=dtype)
        self.post_attn = layers.norm_act(value_chs, device=device, dtype=dtype)
        self.conv3_1x1 = layers.conv_norm_act(value_chs, kwargs['out_chs'], 1, apply_act=False,
                                              device=device, dtype=dtype)


# name: (block size b, halo size h, value ratio rv, width ratio rb, third-stage depth l3,
#        final conv width df (0: none), paper's image size)
HALONET_PAPER_CONFIGS: dict[str, tuple[int, int, float, float, int, int, int]] = {
    'halonet_h0': (8, 3, 1.0, 0.5, 7, 0, 256),
    'halonet_h1': (8, 3, 1.0, 1.0, 10, 0, 256),
    'halonet_h2': (8, 3, 1.0, 1.25, 11, 0, 256),
    'halonet_h3': (10, 3, 1.0, 1.5, 12, 1024, 320),
    'halonet_h4': (12, 2, 1.0, 3.0, 12, 1280, 384),
    'halonet_h5': (14, 2, 2.5, 2.0, 23, 1536, 448),
    'halonet_h6': (8, 4, 3.0, 2.75, 24, 1536, 512),
    'halonet_h7': (10, 3, 4.0, 3.5, 26, 2048, 600),
}


def halonet_model_cfg(name: str) -> ByoModelCfg:
    """ByobNet config of a paper model (``'halonet_h0'`` ... ``'halonet_h7'``)."""
    block_size, halo_size, rv, rb, l3, df, _ = HALONET_PAPER_CONFIGS[name]
    block = partial(ValueExpandedSelfAttnBlock, value_ratio=rv)
    stages = []
    for i, (depth, stride) in enumerate(zip((3, 3, l3, 3), (1, 2, 2, 2))):
        width = 64 * 2 ** i
        stages.append(ByoBlockCfg(type=block, d=depth, c=make_divisible(width * rb), s=stride, gs=0,
                                  br=width / make_divisible(width * rb)))
    return ByoModelCfg(
        blocks=tuple(stages),
        stem_chs=64,
        stem_type='7x7',
        stem_pool='maxpool',
        num_features=df,
        self_attn_layer='halo',
        self_attn_kwargs=dict(block_size=block_size, halo_size=halo_size),
    )


def _create_halonet(variant: str, pretrained: bool = False, **kwargs: Any) -> ByobNet:
    return build_model_with_cfg(
        ByobNet, variant, pretrained,
        model_cfg=halonet_model_cfg(variant),
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )


def _cfg(variant: str) -> dict[str, Any]:
    block_size, *_, paper_size = HALONET_PAPER_CONFIGS[variant]
    multiple = block_size * 32  # every halo layer's map must be a multiple of its block size
    side = multiple * math.ceil(paper_size / multiple)  # the paper's size, or the next one that blocks
    notes = ['Architecture from the paper\'s table; no official weights were released.']
    if side != paper_size:
        notes.append(f'The paper trains at {paper_size}px; timm\'s halo attention (block {block_size}) needs '
                     f'multiples of {multiple}, so {side}px.')
    return {
        'url': '', 'num_classes': 1000, 'input_size': (3, side, side), 'pool_size': (side // 32, side // 32),
        'min_input_size': (3, multiple, multiple), 'crop_pct': 0.95, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv1.conv', 'classifier': 'head.fc',
        'license': 'apache-2.0', 'paper_ids': 'arXiv:2103.12731',
        'paper_name': 'Scaling Local Self-Attention for Parameter Efficient Visual Backbones',
        'origin_url': 'https://arxiv.org/abs/2103.12731', 'notes': tuple(notes),
    }


# halonet_h1 is timm's own entry point (the same network), so it is not registered again.
default_cfgs = generate_default_cfgs({
    f'{name}.untrained': _cfg(name) for name in HALONET_PAPER_CONFIGS if name != 'halonet_h1'})


@register_model
def halonet_h0(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """HaloNet-H0 (paper: 5.5M parameters, 256px): b=8, h=3, rv=1, rb=0.5, l3=7."""
    return _create_halonet('halonet_h0', pretrained=pretrained, **kwargs)


@register_model
def halonet_h2(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """HaloNet-H2 (paper: 9.4M, 256px): b=8, h=3, rv=1, rb=1.25, l3=11. H1 is timm's ``halonet_h1``."""
    return _create_halonet('halonet_h2', pretrained=pretrained, **kwargs)


@register_model
def halonet_h3(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """HaloNet-H3 (paper: 11.8M, 320px): b=10, h=3, rv=1, rb=1.5, l3=12, df=1024."""
    return _create_halonet('halonet_h3', pretrained=pretrained, **kwargs)


@register_model
def halonet_h4(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """HaloNet-H4 (paper: 19.1M, 384px): b=12, h=2, rv=1, rb=3, l3=12, df=1280."""
    return _create_halonet('halonet_h4', pretrained=pretrained, **kwargs)


@register_model
def halonet_h5(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """HaloNet-H5 (paper: 30.7M, 448px): b=14, h=2, rv=2.5, rb=2, l3=23, df=1536."""
    return _create_halonet('halonet_h5', pretrained=pretrained, **kwargs)


@register_model
def halonet_h6(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """HaloNet-H6 (paper: 43.4M, 512px): b=8, h=4, rv=3, rb=2.75, l3=24, df=1536."""
    return _create_halonet('halonet_h6', pretrained=pretrained, **kwargs)


@register_model
def halonet_h7(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """HaloNet-H7 (paper: 67.4M, 600px; 640px here): b=10, h=3, rv=4, rb=3.5, l3=26, df=2048."""
    return _create_halonet('halonet_h7', pretrained=pretrained, **kwargs)
