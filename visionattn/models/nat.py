"""NAT and DiNAT: hierarchical transformers on (dilated) neighbourhood attention, as timm models.

Papers: `Neighborhood Attention Transformer` (Hassani et al., CVPR 2023, arXiv:2204.07143) and
`Dilated Neighborhood Attention Transformer` (Hassani & Shi, arXiv:2209.15001). Official code and
weights: https://github.com/SHI-Labs/Neighborhood-Attention-Transformer (MIT licence).

Why here: neither timm nor any current library has NAT/DiNAT. The official models need NATTEN
0.14-0.17 (relative positional bias, CPU kernels), which no longer builds on a current stack; this
file runs them on :class:`visionattn.layers.NeighborhoodAttention2D` (PyTorch path on any device,
Triton kernels on CUDA) and converts the official checkpoints exactly.

Architecture (DiNAT is NAT with per-layer ``dilations``): a convolutional tokenizer (two 3x3 stride-2
convs, LayerNorm), stages of pre-norm blocks (neighbourhood attention with RPB, MLP, optional layer
scale) on channels-last maps, 3x3 stride-2 conv downsamplers that double the width, a final
LayerNorm, average pooling and a linear head. Any input size works: the tokenizer and downsamplers
round up, and maps smaller than ``kernel_size x dilation`` are zero-padded inside the attention, as
NATTEN did for the checkpoints.

Layout differences from the official checkpoints, undone by :func:`checkpoint_filter_fn`:

- a stage starts with its downsampler (``stages.{i+1}.downsample`` was ``levels.{i}.downsample``), so
  a stage's output is the feature map of its stride, as timm's feature extraction expects;
- layer scale uses timm's ``LayerScale`` (``ls1.gamma`` / ``ls2.gamma`` were ``gamma1`` / ``gamma2``);
- the classifier is timm's ``ClassifierHead`` (``head.fc`` was ``head``);
- the official detection/segmentation backbones (mmdet/mmseg) drop the final norm and head and add a
  LayerNorm per output (``norm0``..``norm3``): here ``feature_norms=True`` adds them as
  ``feature_norms.{i}`` (the name BiFormer uses for the same thing), applied by
  ``forward_intermediates`` (so by ``features_only``), and whole mmdet/mmseg checkpoints
  (``backbone.*`` keys) load into such a model. ``stage_norms=`` and the ``stage_norms.{i}`` keys of
  files converted before the rename still work (with a DeprecationWarning for the keyword).

The isotropic variants of the DiNAT paper (:class:`NATIsotropic`, ``nat_isotropic_*`` /
``dinat_isotropic_*``, upstream ``classification/isotropic.py``) have no downsampling: a 16x16 patch
embedding (timm's ``PatchEmbed``, zero-padding inputs to a multiple of 16 as upstream), twelve
blocks at 1/16 resolution, alternating dilation 1 and 2 for DiNAT, then norm, average pooling and
head. Their official keys (``layers.{i}``) become ``blocks.{i}``.
"""
import contextlib
import logging
import re
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (ClassifierHead, DropPath, LayerScale, Mlp, PatchEmbed, calculate_drop_path_rates,
                         get_device_dtype, is_meta_device, trunc_normal_)
from timm.models import build_model_with_cfg, checkpoint, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices  # no public name; timm's own models import it from here
from torch import Tensor, nn

from ..convert import register_family
from ..layers import NeighborhoodAttention2D
from ..weights import fetching

__all__ = ['NAT', 'NATBlock', 'NATIsotropic', 'NATStage', 'checkpoint_filter_fn', 'from_upstream_kwargs',
           'isotropic_from_upstream_kwargs']

_logger = logging.getLogger(__name__)

Dilations = Optional[Sequence[Optional[Sequence[int]]]]


class ConvTokenizer(nn.Module):
    """Two 3x3 stride-2 convolutions (no activation between them) and a LayerNorm; NCHW in, NHWC out."""

    def __init__(self, in_chans: int, embed_dim: int, norm_layer: Callable[..., nn.Module],
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 2, kernel_size=3, stride=2, padding=1, **dd),
            nn.Conv2d(embed_dim // 2, embed_dim, kernel_size=3, stride=2, padding=1, **dd),
        )
        self.norm = norm_layer(embed_dim, **dd)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ConvDownsample(nn.Module):
    """3x3 stride-2 convolution (no bias) and a LayerNorm, on channels-last maps."""

    def __init__(self, dim: int, out_dim: int, norm_layer: Callable[..., nn.Module],
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, kernel_size=3, stride=2, padding=1, bias=False,
                                   device=device, dtype=dtype)
        self.norm = norm_layer(out_dim, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NATBlock(nn.Module):
    """Pre-norm transformer block with (dilated) neighbourhood attention, on ``(B, H, W, C)``."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 7, dilation: int = 1, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, proj_drop: float = 0.,
                 drop_path: float = 0., layer_scale: Optional[float] = None,
                 act_layer: Callable[..., nn.Module] = nn.GELU,
                 norm_layer: Callable[..., nn.Module] = nn.LayerNorm, device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm1 = norm_layer(dim, **dd)
        self.attn = NeighborhoodAttention2D(dim, num_heads, kernel_size, dilation, qkv_bias=qkv_bias,
                                            qk_scale=qk_scale, proj_drop=proj_drop, **dd)
        self.ls1 = LayerScale(dim, layer_scale, **dd) if layer_scale is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop, **dd)
        self.ls2 = LayerScale(dim, layer_scale, **dd) if layer_scale is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class NATStage(nn.Module):
    """An optional downsampler (``dim_in`` -> ``dim``, stride 2) followed by ``depth`` blocks."""

    def __init__(self, dim_in: int, dim: int, depth: int, num_heads: int, kernel_size: int,
                 dilations: Optional[Sequence[int]], downsample: bool, drop_path: Sequence[float],
                 norm_layer: Callable[..., nn.Module] = nn.LayerNorm, device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None, **block_kwargs: Any) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.grad_checkpointing = False
        self.downsample = ConvDownsample(dim_in, dim, norm_layer, **dd) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            NATBlock(dim, num_heads, kernel_size, 1 if dilations is None else dilations[i], drop_path=drop_path[i],
                     norm_layer=norm_layer, **block_kwargs, **dd)
            for i in range(depth)])

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class _NeighborhoodClassifier(nn.Module):
    """What :class:`NAT` and :class:`NATIsotropic` share: the timm classifier API around ``self.head``
    (a ``ClassifierHead`` on ``forward_features``' channels-last map) and no weight decay on the
    relative positional biases."""

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The relative positional biases (upstream excludes them from weight decay, like Swin's tables)."""
        return {name for name, _ in self.named_parameters() if name.endswith('.rpb')}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new classifier (0: none) on the model's device and dtype; ``global_pool`` None keeps the pooling."""
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool, in_features=self.num_features, **get_device_dtype(self))
        self.head_hidden_size = self.head.num_features
        if global_pool is not None:
            self.global_pool = global_pool

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class NAT(_NeighborhoodClassifier):
    """NAT / DiNAT (DiNAT: give ``dilations``, one list per stage with one dilation per block).

    Args:
        in_chans: input channels.
        num_classes: classifier outputs (0: no classifier).
        global_pool: pooling of the head (``'avg'``, ``''`` for none, ...).
        embed_dim: width of the first stage; every stage doubles it.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        kernel_size: neighbourhood size (odd).
        dilations: per stage, per block dilation (None: NAT, dilation 1 everywhere).
        mlp_ratio: MLP hidden width / block width.
        qkv_bias, qk_scale: attention projection bias and optional fixed query scale.
        layer_scale: initial layer-scale value (None: no layer scale).
        drop_rate: dropout before the classifier.
        pos_drop_rate: dropout after the tokenizer.
        proj_drop_rate: dropout after the attention projection and in the MLP.
        drop_path_rate: stochastic depth, increasing linearly over the blocks up to this rate.
        feature_norms: add a LayerNorm to every stage output, applied by ``forward_intermediates`` and
            ``features_only`` (the upstream detection/segmentation backbones' ``norm{i}``).
        stage_norms: deprecated name of ``feature_norms``.
        norm_layer, act_layer: normalisation (channels-last) and MLP activation.
        device, dtype: where and in which dtype the parameters are created (timm's factory keywords).
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg', embed_dim: int = 64,
                 depths: Sequence[int] = (3, 4, 18, 5), num_heads: Sequence[int] = (2, 4, 8, 16),
                 kernel_size: int = 7, dilations: Dilations = None, mlp_ratio: float = 3.,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, layer_scale: Optional[float] = None,
                 drop_rate: float = 0., pos_drop_rate: float = 0., proj_drop_rate: float = 0.,
                 drop_path_rate: float = 0., feature_norms: bool = False,
                 norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
                 act_layer: Callable[..., nn.Module] = nn.GELU, stage_norms: Optional[bool] = None,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        feature_norms = _deprecated_stage_norms(feature_norms, stage_norms)
        num_stages = len(depths)
        _check_arch(depths, num_heads, dilations)
        dims = [int(embed_dim * 2 ** i) for i in range(num_stages)]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.output_fmt = 'NHWC'
        self.num_features = self.head_hidden_size = dims[-1]

        self.patch_embed = ConvTokenizer(in_chans, embed_dim, norm_layer, **dd)
        self.pos_drop = nn.Dropout(pos_drop_rate)
        rates = calculate_drop_path_rates(drop_path_rate, sum(depths))  # per block, increasing linearly
        self.stages = nn.Sequential()
        self.feature_info = []
        for i in range(num_stages):
            first = sum(depths[:i])
            self.stages.append(NATStage(
                dims[max(i - 1, 0)], dims[i], depths[i], num_heads[i], kernel_size,
                None if dilations is None else dilations[i], downsample=i > 0,
                drop_path=rates[first:first + depths[i]], norm_layer=norm_layer, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, qk_scale=qk_scale, proj_drop=proj_drop_rate, layer_scale=layer_scale,
                act_layer=act_layer, **dd))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f'stages.{i}'))
        self.feature_norms = nn.ModuleList(norm_layer(d, **dd) for d in dims) if feature_norms else None
        self.norm = norm_layer(self.num_features, **dd)
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate,
                                   input_fmt=self.output_fmt, **dd)
        if not is_meta_device(device):  # meta tensors hold no values; their init only costs time
            self.apply(_init_weights)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r'^patch_embed',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^feature_norms\.(\d+)', (99999,)),
                (r'^norm', (99999,)),
            ])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def forward_intermediates(self, x: Tensor, indices: Optional[Union[int, list[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False) -> Union[list[Tensor], tuple[Tensor, list[Tensor]]]:
        """Stage outputs (stride 4, 8, 16, 32), each through its ``feature_norms`` layer when the model has them.

        Args:
            indices: stages to return (an int n: the last n; None: all).
            norm: without ``feature_norms``, apply the final norm to the last stage's output.
            stop_early: stop after the last requested stage.
            output_fmt: ``'NCHW'`` or ``'NHWC'``.
            intermediates_only: return only the intermediates, not the last map reached (normed if final).
        """
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last = len(self.stages) - 1
        x = self.pos_drop(self.patch_embed(x))
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i not in take_indices:
                continue
            if self.feature_norms is not None:
                feature = self.feature_norms[i](x)
            elif norm and i == last:
                feature = self.norm(x)
            else:
                feature = x
            intermediates.append(feature.permute(0, 3, 1, 2).contiguous() if output_fmt == 'NCHW' else feature)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):  # the final norm is sized for the last stage only
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the head, final norm, unused stage norms)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        self._keep_feature_norms(take_indices)
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def _keep_feature_norms(self, indices: Sequence[int]) -> None:
        """Replace the feature norms of outputs not in ``indices`` (never used) by identities."""
        if self.feature_norms is not None:
            for i in range(len(self.feature_norms)):
                if i not in indices:
                    self.feature_norms[i] = nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        """Final-stage map after the final norm, ``(B, H/32, W/32, C)``."""
        return self.norm(self.stages(self.pos_drop(self.patch_embed(x))))



class NATIsotropic(_NeighborhoodClassifier):
    """Isotropic NAT / DiNAT (DiNAT paper, upstream ``classification/isotropic.py``): no downsampling.

    A ``patch_size`` patch embedding (timm's ``PatchEmbed``, zero-padding the input to a multiple of
    ``patch_size`` at the right/bottom as upstream) with LayerNorm, ``depth`` neighbourhood attention
    blocks on the ``(B, H/16, W/16, C)`` map, final LayerNorm, average pooling and a linear head.

    Args:
        in_chans, num_classes, global_pool: as :class:`NAT`.
        embed_dim, depth, num_heads: width, number of blocks and heads (all blocks alike).
        patch_size: side of the patches (16 upstream).
        kernel_size: neighbourhood size (odd).
        dilations: one dilation per block (None: 1 everywhere, NAT-iso; DiNAT-iso alternates 1 and 2).
        mlp_ratio, qkv_bias, qk_scale, layer_scale: as :class:`NAT` (upstream has no layer scale here).
        patch_norm: LayerNorm after the patch embedding (upstream's default, True).
        drop_rate, pos_drop_rate, proj_drop_rate, drop_path_rate: as :class:`NAT`.
        norm_layer, act_layer, device, dtype: as :class:`NAT`.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg', embed_dim: int = 384,
                 depth: int = 12, num_heads: int = 12, patch_size: int = 16, kernel_size: int = 7,
                 dilations: Optional[Sequence[int]] = None, mlp_ratio: float = 4., qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, layer_scale: Optional[float] = None, patch_norm: bool = True,
                 drop_rate: float = 0., pos_drop_rate: float = 0., proj_drop_rate: float = 0.,
                 drop_path_rate: float = 0., norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
                 act_layer: Callable[..., nn.Module] = nn.GELU, device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if dilations is not None and len(dilations) != depth:
            raise ValueError(f'NATIsotropic: dilations ({list(dilations)}) needs one dilation per block (depth {depth})')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.output_fmt = 'NHWC'
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(img_size=None, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                                      norm_layer=norm_layer if patch_norm else None, output_fmt='NHWC',
                                      strict_img_size=False, dynamic_img_pad=True, **dd)
        self.pos_drop = nn.Dropout(pos_drop_rate)
        rates = calculate_drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.Sequential(*[
            NATBlock(embed_dim, num_heads, kernel_size, 1 if dilations is None else dilations[i], mlp_ratio=mlp_ratio,
                     qkv_bias=qkv_bias, qk_scale=qk_scale, proj_drop=proj_drop_rate, drop_path=rates[i],
                     layer_scale=layer_scale, act_layer=act_layer, norm_layer=norm_layer, **dd)
            for i in range(depth)])
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f'blocks.{i}') for i in range(depth)]
        self.norm = norm_layer(embed_dim, **dd)
        self.head = ClassifierHead(embed_dim, num_classes, pool_type=global_pool, drop_rate=drop_rate,
                                   input_fmt=self.output_fmt, **dd)
        if not is_meta_device(device):  # meta tensors hold no values; their init only costs time
            self.apply(_init_weights)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r'^patch_embed', blocks=[(r'^blocks\.(\d+)', None), (r'^norm', (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward_intermediates(self, x: Tensor, indices: Optional[Union[int, list[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False) -> Union[list[Tensor], tuple[Tensor, list[Tensor]]]:
        """Block outputs (all at stride ``patch_size``), like timm's ViT.

        Args:
            indices: blocks to return (an int n: the last n; None: all).
            norm: apply the final norm to every returned map.
            stop_early: stop after the last requested block.
            output_fmt: ``'NCHW'`` or ``'NHWC'``.
            intermediates_only: return only the intermediates, not the final normed map.
        """
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        x = self.pos_drop(self.patch_embed(x))
        blocks = self.blocks if torch.jit.is_scripting() or not stop_early else self.blocks[:max_index + 1]
        intermediates = []
        for i, block in enumerate(blocks):
            x = checkpoint(block, x) if self.grad_checkpointing and not torch.jit.is_scripting() else block(x)
            if i in take_indices:
                feature = self.norm(x) if norm else x
                intermediates.append(feature.permute(0, 3, 1, 2).contiguous() if output_fmt == 'NCHW' else feature)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the blocks after the last of ``indices`` (and the head and final norm if asked)."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: Tensor) -> Tensor:
        """Map after the final norm, ``(B, H/16, W/16, C)``."""
        x = self.pos_drop(self.patch_embed(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)



def _deprecated_stage_norms(feature_norms: bool, stage_norms: Optional[bool]) -> bool:
    if stage_norms is None:
        return feature_norms
    warnings.warn('NAT: stage_norms= is deprecated, use feature_norms= (the same per-stage output norms, named as '
                  'in BiFormer and TimmBackbone)', DeprecationWarning, stacklevel=3)
    return feature_norms or stage_norms


def _check_arch(depths: Sequence[int], num_heads: Sequence[int], dilations: Dilations) -> None:
    if len(num_heads) != len(depths):
        raise ValueError(f'NAT: num_heads ({list(num_heads)}) needs one entry per stage of depths ({list(depths)})')
    if dilations is None:
        return
    if len(dilations) != len(depths):
        raise ValueError(f'NAT: dilations needs one list per stage ({len(depths)} stages), got {len(dilations)}')
    for i, (stage_dilations, depth) in enumerate(zip(dilations, depths)):
        if stage_dilations is not None and len(stage_dilations) != depth:
            raise ValueError(f'NAT: dilations[{i}] = {list(stage_dilations)} needs one dilation per block of '
                             f'stage {i} (depth {depth})')


def _init_weights(module: nn.Module) -> None:
    """Upstream init: truncated-normal (std 0.02) linear weights, zero biases; norms start as identity."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------------------
# Official checkpoints
# ----------------------------------------------------------------------------------------------------

_DENSE_PREDICTION_PREFIX = 'backbone.'
_BLOCK_KEY = re.compile(r'^levels\.(\d+)\.blocks\.(\d+)\.(.+)$')
_DOWNSAMPLE_KEY = re.compile(r'^levels\.(\d+)\.downsample\.(.+)$')
_OUTPUT_NORM_KEY = re.compile(r'^(?:norm|stage_norms\.)(\d+)\.(.+)$')  # official norm{i}; ours before the rename
_ISOTROPIC_BLOCK_KEY = re.compile(r'^layers\.(\d+)\.(.+)$')
_LAYER_SCALE = {'gamma1': 'ls1.gamma', 'gamma2': 'ls2.gamma'}


def _official_key(key: str) -> str:
    """Our name for one key of the official layout (classification, dense-prediction backbone or isotropic)."""
    if match := _BLOCK_KEY.match(key):
        stage, block, rest = match.groups()
        return f'stages.{stage}.blocks.{block}.{_LAYER_SCALE.get(rest, rest)}'
    if match := _DOWNSAMPLE_KEY.match(key):
        return f'stages.{int(match.group(1)) + 1}.downsample.{match.group(2)}'
    if match := _OUTPUT_NORM_KEY.match(key):
        return f'feature_norms.{match.group(1)}.{match.group(2)}'
    if match := _ISOTROPIC_BLOCK_KEY.match(key):
        return f'blocks.{match.group(1)}.{match.group(2)}'
    if key in ('head.weight', 'head.bias'):
        return 'head.fc.' + key.split('.')[1]
    return key


def _backbone_of_dense_prediction_checkpoint(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``backbone.*`` part of a whole mmdet/mmseg model; necks and heads are not part of this model."""
    backbone = {k[len(_DENSE_PREDICTION_PREFIX):]: v for k, v in state_dict.items()
                if k.startswith(_DENSE_PREDICTION_PREFIX)}
    others = sorted({k.split('.')[0] for k in state_dict if not k.startswith(_DENSE_PREDICTION_PREFIX)})
    _logger.info('NAT: loading the backbone of a detection/segmentation checkpoint (%d tensors); its %s '
                 'weights are not part of this model', len(backbone), ', '.join(others) or 'other')
    return backbone


def _resize_rpb(rpb: Tensor, shape: torch.Size, key: str) -> Tensor:
    """Bicubic resize of a relative positional bias to another kernel size (as upstream made the 11x11
    ImageNet-22k weights from the 7x7 ones, and as Swin resizes its bias tables)."""
    if rpb.dim() != 3 or rpb.shape[0] != shape[0]:
        raise ValueError(f'NAT checkpoint: {key} has shape {tuple(rpb.shape)}, the model needs {tuple(shape)}; '
                         'only the kernel size may differ (the number of heads must match)')
    _logger.info('NAT: resizing %s from %s to %s (bicubic) for a different kernel_size', key,
                 tuple(rpb.shape), tuple(shape))
    return F.interpolate(rpb[None].float(), size=tuple(shape[1:]), mode='bicubic', align_corners=False)[0].to(rpb.dtype)


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: Union[NAT, NATIsotropic]) -> dict[str, Tensor]:
    """Official NAT/DiNAT weights (classification, a whole mmdet/mmseg model, or isotropic) in this model's layout.

    Also: relative positional biases are resized when the model's ``kernel_size`` differs; the
    ``feature_norms`` a model has but the checkpoint lacks (ImageNet weights for a detection backbone)
    keep their identity initialisation, as upstream's fresh ``norm{i}`` layers did. A state dict
    already in this layout (a converted file; ``stage_norms.{i}`` keys from before the rename to
    ``feature_norms``) is returned with only those adaptations.
    """
    state_dict = dict(state_dict)
    if any(k.startswith(_DENSE_PREDICTION_PREFIX) for k in state_dict):
        state_dict = _backbone_of_dense_prediction_checkpoint(state_dict)
    converted = {_official_key(k): v for k, v in state_dict.items()}

    target = model.state_dict()
    has_output_norms = any(k.startswith('feature_norms.') for k in converted)
    if has_output_norms and getattr(model, 'feature_norms', None) is None:
        raise ValueError('This checkpoint is an official detection/segmentation backbone with a norm on every '
                         'output (norm0..norm3): create the model with feature_norms=True to use them '
                         "(e.g. timm.create_model(..., features_only=True, feature_norms=True), or "
                         "model_kwargs=dict(feature_norms=True) in visionattn.TimmBackbone)")
    for key, value in converted.items():
        if key.endswith('.rpb') and key in target and value.shape != target[key].shape:
            converted[key] = _resize_rpb(value, target[key].shape, key)
    fresh = [k for k in target if k.startswith('feature_norms.') and k not in converted]
    if fresh:
        _logger.info('NAT: the checkpoint has no output norms; feature_norms keep their initialisation')
        converted.update({k: target[k] for k in fresh})
    return converted


# Keyword arguments of the upstream constructors (classification/nat.py ``NAT``; detection/ and
# segmentation/nat.py add the mm backbone's options) -> ours.
_SAME_NAME = ('embed_dim', 'mlp_ratio', 'depths', 'num_heads', 'drop_path_rate', 'in_chans', 'kernel_size',
              'dilations', 'num_classes', 'qkv_bias', 'qk_scale', 'layer_scale')
_TRAINING_ONLY = ('frozen_stages', 'pretrained', 'in_patch_size')  # dense-prediction options without weights
_UPSTREAM_KWARGS = _SAME_NAME + _TRAINING_ONLY + ('drop_rate', 'attn_drop_rate', 'norm_layer', 'out_indices')


def from_upstream_kwargs(**upstream_kwargs: Any) -> NAT:
    """Our model from the keyword arguments of the upstream ``NAT(...)`` (DiNAT: with ``dilations``).

    The upstream defaults apply to what is not given (e.g. ``drop_path_rate=0.2``, 1000 classes).
    Given ``out_indices`` (the dense-prediction backbone), the model is that backbone: norms on those
    stage outputs (``forward_intermediates``), no final norm, no classifier. Its training-only options
    (``frozen_stages``, ``pretrained``, ``in_patch_size``) do not change the weights and are ignored.
    """
    unknown = sorted(set(upstream_kwargs) - set(_UPSTREAM_KWARGS))
    if unknown:
        raise TypeError(f'NAT upstream kwargs: unknown {unknown}; the upstream constructor takes '
                        f'{sorted(_UPSTREAM_KWARGS)}')
    for required in ('embed_dim', 'mlp_ratio', 'depths', 'num_heads'):
        if required not in upstream_kwargs:
            raise TypeError(f'NAT upstream kwargs: {required!r} is required (the upstream constructor has no default)')
    if upstream_kwargs.get('attn_drop_rate', 0.):
        raise ValueError('NAT upstream kwargs: attn_drop_rate > 0 is not supported (the fused operator never forms '
                         'the attention matrix); the official models use 0')
    if upstream_kwargs.get('norm_layer', nn.LayerNorm) is not nn.LayerNorm:
        raise ValueError('NAT upstream kwargs: only norm_layer=nn.LayerNorm (the upstream default) is supported')
    kwargs = dict(drop_path_rate=0.2, **{k: upstream_kwargs[k] for k in _SAME_NAME if k in upstream_kwargs})
    drop = upstream_kwargs.get('drop_rate', 0.)
    kwargs.update(pos_drop_rate=drop, proj_drop_rate=drop)
    if 'out_indices' not in upstream_kwargs:
        return NAT(**kwargs)
    # The upstream detection/segmentation backbone: every stage, a norm on each output, no final norm or head.
    model = NAT(feature_norms=True, **kwargs)
    model.prune_intermediate_layers(len(model.stages), prune_norm=True, prune_head=True)
    model._keep_feature_norms([i % len(model.stages) for i in upstream_kwargs['out_indices']])
    return model


# upstream classification/isotropic.py ``NATIsotropic.__init__``'s defaults
_ISOTROPIC_UPSTREAM_DEFAULTS: dict[str, Any] = dict(
    img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=384, depth=12, num_heads=12, mlp_ratio=4.,
    qkv_bias=True, qk_scale=None, kernel_size=7, dilation=2, layer='NATransformerLayer', drop_rate=0.,
    attn_drop_rate=0., drop_path_rate=0.1, norm_layer=nn.LayerNorm, patch_norm=True)


def isotropic_from_upstream_kwargs(**upstream_kwargs: Any) -> NATIsotropic:
    """Our :class:`NATIsotropic` from the keyword arguments of upstream's ``NATIsotropic(...)``.

    Upstream's defaults apply to what is not given (``dilation=2``: DiNAT-iso; ``dilation=1``: NAT-iso).
    ``layer`` may name upstream's class, as a string: only ``'NATransformerLayer'`` (neighbourhood
    attention); ``'VisionTransformerLayer'`` (ViT-rpb, global attention) is not a NAT model. ``img_size``
    does not change the weights (any input size runs here) and is left out.
    """
    unknown = sorted(set(upstream_kwargs) - set(_ISOTROPIC_UPSTREAM_DEFAULTS))
    if unknown:
        raise TypeError(f'NATIsotropic upstream kwargs: unknown {unknown}; the upstream constructor takes '
                        f'{sorted(_ISOTROPIC_UPSTREAM_DEFAULTS)}')
    kw = dict(_ISOTROPIC_UPSTREAM_DEFAULTS, **upstream_kwargs)
    layer = getattr(kw['layer'], '__name__', kw['layer'])
    if layer != 'NATransformerLayer':
        raise ValueError(f"NATIsotropic upstream kwargs: layer={layer!r} is not supported; only 'NATransformerLayer' "
                         "(ViT-rpb's 'VisionTransformerLayer' has global attention, not neighbourhood attention)")
    if kw['attn_drop_rate']:
        raise ValueError('NATIsotropic upstream kwargs: attn_drop_rate > 0 is not supported (the fused operator never '
                         'forms the attention matrix); the official models use 0')
    if kw['norm_layer'] is not nn.LayerNorm:
        raise ValueError('NATIsotropic upstream kwargs: only norm_layer=nn.LayerNorm (the upstream default) is supported')
    dilations = [1 if i % 2 == 0 else kw['dilation'] for i in range(kw['depth'])]  # upstream's rule
    return NATIsotropic(
        in_chans=kw['in_chans'], num_classes=kw['num_classes'], embed_dim=kw['embed_dim'], depth=kw['depth'],
        num_heads=kw['num_heads'], patch_size=kw['patch_size'], kernel_size=kw['kernel_size'], dilations=dilations,
        mlp_ratio=kw['mlp_ratio'], qkv_bias=kw['qkv_bias'], qk_scale=kw['qk_scale'], patch_norm=kw['patch_norm'],
        pos_drop_rate=kw['drop_rate'], proj_drop_rate=kw['drop_rate'], drop_path_rate=kw['drop_path_rate'])


register_family('nat', from_upstream_kwargs, checkpoint_filter_fn)
register_family('dinat', from_upstream_kwargs, checkpoint_filter_fn)
register_family('nat_isotropic', isotropic_from_upstream_kwargs, checkpoint_filter_fn)
register_family('dinat_isotropic', isotropic_from_upstream_kwargs, checkpoint_filter_fn)


# ----------------------------------------------------------------------------------------------------
# Pretrained configs and entry points
# ----------------------------------------------------------------------------------------------------

_NAT_URL = 'https://shi-labs.com/projects/nat/checkpoints/CLS/'
_DINAT_URL = 'https://shi-labs.com/projects/dinat/checkpoints/'
_ISOTROPIC_URL = _DINAT_URL + 'isotropic/'
_PAPERS = {
    'nat': dict(paper_ids='arXiv:2204.07143', paper_name='Neighborhood Attention Transformer'),
    'dinat': dict(paper_ids='arXiv:2209.15001', paper_name='Dilated Neighborhood Attention Transformer'),
}


def _cfg(family: str, url: str, **kwargs: Any) -> dict[str, Any]:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7), 'crop_pct': 0.875,
        'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj.0', 'classifier': 'head.fc', 'license': 'mit',
        'origin_url': 'https://github.com/SHI-Labs/Neighborhood-Attention-Transformer', **_PAPERS[family], **kwargs}


# ImageNet-22k heads: 21841 classes (the fall11 release, as Swin's ImageNet-22k weights); upstream does not
# state the size and the files could not be inspected here.
_IN22K = dict(num_classes=21841)
_384 = dict(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0)
_ISOTROPIC = dict(pool_size=(14, 14), first_conv='patch_embed.proj')  # stride 16, no downsampling

default_cfgs = generate_default_cfgs({
    'nat_mini.in1k': _cfg('nat', _NAT_URL + 'nat_mini.pth'),
    'nat_tiny.in1k': _cfg('nat', _NAT_URL + 'nat_tiny.pth'),
    'nat_small.in1k': _cfg('nat', _NAT_URL + 'nat_small.pth'),
    'nat_base.in1k': _cfg('nat', _NAT_URL + 'nat_base.pth'),
    'dinat_mini.in1k': _cfg('dinat', _DINAT_URL + 'imagenet1k/dinat_mini_in1k_224.pth'),
    'dinat_tiny.in1k': _cfg('dinat', _DINAT_URL + 'imagenet1k/dinat_tiny_in1k_224.pth'),
    'dinat_small.in1k': _cfg('dinat', _DINAT_URL + 'imagenet1k/dinat_small_in1k_224.pth'),
    'dinat_base.in1k': _cfg('dinat', _DINAT_URL + 'imagenet1k/dinat_base_in1k_224.pth'),
    'dinat_large.in22k_ft_in1k': _cfg('dinat', _DINAT_URL + 'imagenet1k/dinat_large_in22k_in1k_224.pth'),
    'dinat_large.in22k': _cfg('dinat', _DINAT_URL + 'imagenet22k/dinat_large_in22k_224.pth', **_IN22K),
    'dinat_large_384.in22k_ft_in1k': _cfg('dinat', _DINAT_URL + 'imagenet1k/dinat_large_in22k_in1k_384.pth', **_384),
    'dinat_large_11x11.in22k_ft_in1k_384': _cfg(
        'dinat', _DINAT_URL + 'imagenet1k/dinat_large_in22k_in1k_384_11x11.pth', **_384),
    'dinat_large_11x11.in22k': _cfg(
        'dinat', _DINAT_URL + 'imagenet22k/dinat_large_in22k_224_11x11interp.pth', **_IN22K),
    'nat_isotropic_small.in1k': _cfg('dinat', _ISOTROPIC_URL + 'nat_isotropic_small_in1k_224.pth', **_ISOTROPIC),
    'dinat_isotropic_small.in1k': _cfg('dinat', _ISOTROPIC_URL + 'dinat_isotropic_small_in1k_224.pth', **_ISOTROPIC),
    'nat_isotropic_base.in1k': _cfg('dinat', _ISOTROPIC_URL + 'nat_isotropic_base_in1k_224.pth', **_ISOTROPIC),
    'dinat_isotropic_base.in1k': _cfg('dinat', _ISOTROPIC_URL + 'dinat_isotropic_base_in1k_224.pth', **_ISOTROPIC),
})


def _build(model_cls: type[nn.Module], variant: str, pretrained: bool, out_indices: Any,
           kwargs: dict[str, Any]) -> nn.Module:
    # download failures become one WeightsUnavailableError (visionattn.weights); local-dir/hub folders load as given
    with fetching(variant, kwargs.get('pretrained_cfg_overlay'), kwargs.get('pretrained_cfg')) if pretrained \
            else contextlib.nullcontext():
        return build_model_with_cfg(
            model_cls, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=dict(feature_cls='getter', out_indices=out_indices), **kwargs)


def _create_nat(variant: str, pretrained: bool = False, **kwargs: Any) -> NAT:
    out_indices = kwargs.pop('out_indices', tuple(range(len(kwargs.get('depths', (3, 4, 18, 5))))))
    return _build(NAT, variant, pretrained, out_indices, kwargs)


def _create_nat_isotropic(variant: str, pretrained: bool = False, **kwargs: Any) -> NATIsotropic:
    out_indices = kwargs.pop('out_indices', 3)  # the last three blocks, as timm's ViT
    return _build(NATIsotropic, variant, pretrained, out_indices, kwargs)


def _dinat_dilations(depths: Sequence[int], image_size: int = 224, kernel_size: int = 7) -> tuple[tuple[int, ...], ...]:
    """DiNAT's dilations: plain (1) and dilated layers alternate, and a dilated layer's dilation is its
    stage's map side at the training resolution // kernel size (56 // 7 = 8, then 4, 2, 1 at 224px)."""
    sides = [image_size // 4 // 2 ** i for i in range(len(depths))]
    return tuple(tuple(1 if j % 2 == 0 else max(1, side // kernel_size) for j in range(depth))
                 for side, depth in zip(sides, depths))


_MINI = dict(embed_dim=64, depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3.)
_TINY = dict(embed_dim=64, depths=(3, 4, 18, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3.)
_SMALL = dict(embed_dim=96, depths=(3, 4, 18, 5), num_heads=(3, 6, 12, 24), mlp_ratio=2.)
_BASE = dict(embed_dim=128, depths=(3, 4, 18, 5), num_heads=(4, 8, 16, 32), mlp_ratio=2., layer_scale=1e-5)
_LARGE = dict(embed_dim=192, depths=(3, 4, 18, 5), num_heads=(6, 12, 24, 48), mlp_ratio=2.,
              dilations=_dinat_dilations((3, 4, 18, 5)))


def _variant(name: str, pretrained: bool, arch: dict[str, Any], kwargs: dict[str, Any]) -> NAT:
    return _create_nat(name, pretrained, **dict(arch, **kwargs))


@register_model
def nat_mini(pretrained: bool = False, **kwargs: Any) -> NAT:
    """NAT-Mini: 20.0M params, 81.8% ImageNet-1k top-1 (reported)."""
    return _variant('nat_mini', pretrained, _MINI, kwargs)


@register_model
def nat_tiny(pretrained: bool = False, **kwargs: Any) -> NAT:
    """NAT-Tiny: 27.9M params, 83.2% ImageNet-1k top-1 (reported)."""
    return _variant('nat_tiny', pretrained, _TINY, kwargs)


@register_model
def nat_small(pretrained: bool = False, **kwargs: Any) -> NAT:
    """NAT-Small: 50.7M params, layer scale 1e-5, 83.7% ImageNet-1k top-1 (reported)."""
    return _variant('nat_small', pretrained, dict(_SMALL, layer_scale=1e-5), kwargs)


@register_model
def nat_base(pretrained: bool = False, **kwargs: Any) -> NAT:
    """NAT-Base: 89.8M params, layer scale 1e-5, 84.3% ImageNet-1k top-1 (reported)."""
    return _variant('nat_base', pretrained, _BASE, kwargs)


@register_model
def dinat_mini(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Mini: NAT-Mini with dilated layers, 81.8% ImageNet-1k top-1 (reported)."""
    return _variant('dinat_mini', pretrained, dict(_MINI, dilations=_dinat_dilations(_MINI['depths'])), kwargs)


@register_model
def dinat_tiny(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Tiny: NAT-Tiny with dilated layers, 82.7% ImageNet-1k top-1 (reported)."""
    return _variant('dinat_tiny', pretrained, dict(_TINY, dilations=_dinat_dilations(_TINY['depths'])), kwargs)


@register_model
def dinat_small(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Small: NAT-Small with dilated layers and without layer scale, 83.8% top-1 (reported)."""
    return _variant('dinat_small', pretrained, dict(_SMALL, dilations=_dinat_dilations(_SMALL['depths'])), kwargs)


@register_model
def dinat_base(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Base: NAT-Base with dilated layers, 84.4% ImageNet-1k top-1 (reported)."""
    return _variant('dinat_base', pretrained, dict(_BASE, dilations=_dinat_dilations(_BASE['depths'])), kwargs)


@register_model
def dinat_large(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Large (ImageNet-22k pre-trained): 200.9M params, 86.6% top-1 at 224px (reported)."""
    return _variant('dinat_large', pretrained, _LARGE, kwargs)


@register_model
def dinat_large_384(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Large fine-tuned at 384px, dilations for its maps (96 // 7 = 13, then 6, 3): 87.4% top-1 (reported)."""
    arch = dict(_LARGE, dilations=_dinat_dilations(_LARGE['depths'], image_size=384))
    return _variant('dinat_large_384', pretrained, arch, kwargs)


@register_model
def dinat_large_11x11(pretrained: bool = False, **kwargs: Any) -> NAT:
    """DiNAT-Large with 11x11 neighbourhoods (224px dilations): 87.5% top-1 at 384px (reported)."""
    return _variant('dinat_large_11x11', pretrained, dict(_LARGE, kernel_size=11), kwargs)


# Isotropic variants (DiNAT paper, Table 9; upstream classification/isotropic.py): 16x16 patches, 12 blocks,
# kernel 7; DiNAT-iso alternates dilation 1 and 2.
_ISO_SMALL = dict(embed_dim=384, depth=12, num_heads=12, mlp_ratio=4.)
_ISO_BASE = dict(embed_dim=768, depth=12, num_heads=24, mlp_ratio=4.)
_ISO_SMALL_DILATED = dict(_ISO_SMALL, dilations=(1, 2) * 6)
_ISO_BASE_DILATED = dict(_ISO_BASE, dilations=(1, 2) * 6)


@register_model
def nat_isotropic_small(pretrained: bool = False, **kwargs: Any) -> NATIsotropic:
    """NAT-iso-Small: 22M params, 80.0% ImageNet-1k top-1 (reported)."""
    return _create_nat_isotropic('nat_isotropic_small', pretrained, **dict(_ISO_SMALL, **kwargs))


@register_model
def dinat_isotropic_small(pretrained: bool = False, **kwargs: Any) -> NATIsotropic:
    """DiNAT-iso-Small: 22M params, 80.8% ImageNet-1k top-1 (reported)."""
    return _create_nat_isotropic('dinat_isotropic_small', pretrained, **dict(_ISO_SMALL_DILATED, **kwargs))


@register_model
def nat_isotropic_base(pretrained: bool = False, **kwargs: Any) -> NATIsotropic:
    """NAT-iso-Base: 86M params, 81.6% ImageNet-1k top-1 (reported)."""
    return _create_nat_isotropic('nat_isotropic_base', pretrained, **dict(_ISO_BASE, **kwargs))


@register_model
def dinat_isotropic_base(pretrained: bool = False, **kwargs: Any) -> NATIsotropic:
    """DiNAT-iso-Base: 86M params, 82.1% ImageNet-1k top-1 (reported)."""
    return _create_nat_isotropic('dinat_isotropic_base', pretrained, **dict(_ISO_BASE_DILATED, **kwargs))
