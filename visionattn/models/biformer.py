"""BiFormer (Zhu et al., CVPR 2023) as timm models, with the official checkpoints converted exactly.

Paper: `BiFormer: Vision Transformer with Bi-Level Routing Attention` - https://arxiv.org/abs/2303.08810
Code and weights: https://github.com/rayleizhu/BiFormer (MIT).

Why our own: timm has no BiFormer, and upstream's code gathers a ``topk``-times copy of K/V per
region (memory grows with ``topk``), asserts divisible inputs outside its dense-prediction wrappers
and pins fairscale/einops. Here the attention runs on :mod:`visionattn.ops` (Triton kernels on
CUDA, a PyTorch path elsewhere) through :class:`visionattn.layers.BiLevelRoutingAttention`.

Architecture (upstream ``models/biformer.py``): a two-conv stem to stride 4, four stages of
pre-norm blocks (3x3 depthwise conv position embedding, attention, MLP), stride-2 conv+BN between
stages, BatchNorm and average pooling before the head. Stages with ``topk > 0`` use bi-level routing
attention over an ``n_win x n_win`` region grid; ``topk == -2`` (the last stage of every released
model) is plain global attention with 8 heads plus LePE on the block input, ``-1`` the same without
LePE. The module layout follows timm (``stem``, ``stages.i.downsample``, ``stages.i.blocks.j``,
``norm``, ``head.fc``); :func:`checkpoint_filter_fn` renames upstream's keys.

``n_win`` is the region grid and must suit the task: 7 for 224px classification (the released
weights), 8 for 512px segmentation crops, 16 for detection (upstream's recipes). Any input size
works; ``pad_mode`` (``'upstream'`` by default, or ``'masked'``) says what the tokens padded to a
multiple of ``n_win`` do, see :mod:`visionattn.layers.routing_attention`. ``'upstream'`` is the
default because it reproduces every official model: the detection/segmentation ones were trained
with it, and at 224px classification nothing is padded, so the choice does not matter there.

Dense prediction: upstream's detection/segmentation backbones add a ``LayerNorm2d`` to every stage
output (``extra_norms``). ``feature_norms=True`` adds them here (applied by ``forward_intermediates``
and so by ``features_only``), so checkpoints trained with upstream's mmdet/mmseg code load, keys
included: ``timm.create_model('biformer_small', features_only=True, n_win=8, feature_norms=True,
pretrained=True, pretrained_cfg_overlay=dict(file='upernet_biformer_small.pth'))``.
"""
import logging
import os
import re
from typing import Any, Optional, Sequence, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (ClassifierHead, DropPath, LayerNorm2d, LayerScale, Mlp, calculate_drop_path_rates,
                         get_device_dtype, is_meta_device, trunc_normal_)
from timm.models import (build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model,
                         resolve_pretrained_cfg)
from timm.models._features import feature_take_indices  # no public name; timm's own models import it from here
from torch import Tensor, nn
from torch.hub import download_url_to_file, get_dir
from torch.nn import functional as F

from ..checkpoint import load_checkpoint_file, state_dict_from
from ..convert import register_family
from ..layers.routing_attention import PAD_MODES, BiLevelRoutingAttention
from ..weights import hub_offline, weights_unavailable

__all__ = ['BiFormer', 'BiFormerBlock', 'BiFormerStage', 'GlobalAttention', 'checkpoint_filter_fn',
           'biformer_from_upstream', 'biformer_mm_from_upstream']

_logger = logging.getLogger(__name__)

_GLOBAL_HEADS = 8  # upstream's AttentionLePE is built with its default num_heads=8, whatever the width


def _per_stage(value: Union[float, Sequence[float]], name: str, stages: int) -> tuple:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * stages
    if len(values) != stages:
        raise ValueError(f'BiFormer: {name} needs one value per stage ({stages}), got {value!r}')
    return values


class GlobalAttention(nn.Module):
    """Multi-head self-attention over all tokens of a ``(B, H, W, C)`` map, plus optional LePE.

    Upstream's ``AttentionLePE`` (``topk=-2``) and ``Attention`` (``topk=-1``, ``side_dwconv=0``):
    qkv without bias, scale ``head_dim ** -0.5``, and LePE, unlike in routing attention, a depthwise
    conv on the block's normalised input rather than on V.
    """

    def __init__(self, dim: int, num_heads: int = _GLOBAL_HEADS, side_dwconv: int = 5,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if dim % num_heads:
            raise ValueError(f'GlobalAttention: dim ({dim}) must be divisible by num_heads ({num_heads})')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim, **dd) \
            if side_dwconv else None

    def forward(self, x: Tensor) -> Tensor:
        batch, height, width, dim = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, height, width, dim)
        if self.lepe is not None:
            out = out + self.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(out)


class BiFormerBlock(nn.Module):
    """Pre-norm BiFormer block: depthwise-conv position embedding, attention, MLP (channels-last map)."""

    def __init__(self, dim: int, num_heads: int, topk: int, n_win: int = 7, qk_dim: Optional[int] = None,
                 qk_scale: Optional[float] = None, mlp_ratio: float = 3.0, side_dwconv: int = 5,
                 before_attn_dwconv: int = 3, layer_scale_init_value: Optional[float] = None,
                 drop_path: float = 0.0, pad_mode: str = 'upstream', device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if before_attn_dwconv not in (0, 3):
            # upstream builds this conv with padding=1 whatever the kernel, so only 3 keeps the map size
            raise ValueError(f'BiFormerBlock: before_attn_dwconv must be 3 or 0 (none), got {before_attn_dwconv}')
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd) if before_attn_dwconv else None
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, **dd)
        if topk > 0:
            self.attn = BiLevelRoutingAttention(dim, num_heads, n_win=n_win, topk=topk, qk_dim=qk_dim,
                                                qk_scale=qk_scale, side_dwconv=side_dwconv, pad_mode=pad_mode, **dd)
        elif topk in (-1, -2):
            self.attn = GlobalAttention(dim, side_dwconv=side_dwconv if topk == -2 else 0, **dd)
        else:
            raise ValueError(f'BiFormerBlock: topk must be > 0 (routing attention), -1 (global attention) or -2 '
                             f'(global attention with LePE), got {topk}; upstream\'s topk=0 conv stand-in of its '
                             'ablations is not supported')
        self.ls1 = LayerScale(dim, layer_scale_init_value, **dd) if layer_scale_init_value else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer=nn.GELU, **dd)
        self.ls2 = LayerScale(dim, layer_scale_init_value, **dd) if layer_scale_init_value else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` in and out; the convs see NCHW views of it (channels-last memory, no copies)."""
        if self.pos_embed is not None:
            x = x + self.pos_embed(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class BiFormerStage(nn.Module):
    """Optional stride-2 conv + BatchNorm downsampling, then BiFormer blocks (NCHW in and out)."""

    def __init__(self, in_dim: int, dim: int, depth: int, downsample: bool, drop_path_rates: Sequence[float],
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None,
                 **block_kwargs: Any) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.downsample = nn.Sequential(nn.Conv2d(in_dim, dim, 3, stride=2, padding=1, **dd),
                                        nn.BatchNorm2d(dim, **dd)) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[BiFormerBlock(dim, drop_path=drop_path_rates[i], **block_kwargs, **dd)
                                      for i in range(depth)])
        self.grad_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x).permute(0, 2, 3, 1)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x.permute(0, 3, 1, 2)


class BiFormer(nn.Module):
    """BiFormer: four stages of bi-level routing attention blocks (see the module docstring).

    Args:
        in_chans: input channels.
        num_classes: classes of the head (0: no head).
        global_pool: timm pooling type of the head (``'avg'`` as upstream, ``''`` for none).
        depths: blocks per stage.
        embed_dims: channels per stage.
        head_dim: channels per head of routing attention (heads = ``qk_dims[i] // head_dim``).
        qk_dims: query/key width per stage (default ``embed_dims``).
        mlp_ratios: MLP hidden width over the block width, one value or one per stage.
        n_win: regions per side of the routing grid (7: 224px classification, 8: 512px segmentation,
            16: detection).
        topks: routed regions per stage; ``-2`` global attention with LePE, ``-1`` without.
        side_dwconv: LePE kernel size (0: none).
        before_attn_dwconv: 3 for the depthwise-conv position embedding of every block, 0 for none.
        qk_scale: routing/attention scale (default ``qk_dim ** -0.5``, upstream's).
        layer_scale_init_value: LayerScale init of both residual branches (None: no LayerScale).
        pad_mode: ``'upstream'`` or ``'masked'``: what tokens padded to a multiple of ``n_win`` do.
        feature_norms: add upstream's per-stage LayerNorm2d of the dense-prediction backbones,
            applied to the maps ``forward_intermediates`` / ``features_only`` return.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        device, dtype: where and in which dtype the parameters are created (timm's factory keywords).
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg',
                 depths: Sequence[int] = (4, 4, 18, 4), embed_dims: Sequence[int] = (64, 128, 256, 512),
                 head_dim: int = 32, qk_dims: Optional[Sequence[int]] = None,
                 mlp_ratios: Union[float, Sequence[float]] = 3.0, n_win: int = 7,
                 topks: Sequence[int] = (1, 4, 16, -2), side_dwconv: int = 5, before_attn_dwconv: int = 3,
                 qk_scale: Optional[float] = None, layer_scale_init_value: Optional[float] = None,
                 pad_mode: str = 'upstream', feature_norms: bool = False, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        num_stages = len(depths)
        embed_dims = _per_stage(embed_dims, 'embed_dims', num_stages)
        qk_dims = _per_stage(qk_dims if qk_dims is not None else embed_dims, 'qk_dims', num_stages)
        qk_dims = tuple(q or d for q, d in zip(qk_dims, embed_dims))
        mlp_ratios = _per_stage(mlp_ratios, 'mlp_ratios', num_stages)
        topks = _per_stage(topks, 'topks', num_stages)
        if pad_mode not in PAD_MODES:
            raise ValueError(f'BiFormer: pad_mode must be one of {PAD_MODES}, got {pad_mode!r}')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = embed_dims[-1]

        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, embed_dims[0] // 2, 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(embed_dims[0] // 2, **dd),
            nn.GELU(),
            nn.Conv2d(embed_dims[0] // 2, embed_dims[0], 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(embed_dims[0], **dd),
        )
        rates = calculate_drop_path_rates(drop_path_rate, sum(depths))  # per block, increasing linearly
        self.stages = nn.Sequential()
        self.feature_info = []
        for i in range(num_stages):
            start = sum(depths[:i])
            self.stages.append(BiFormerStage(
                embed_dims[i - 1] if i else embed_dims[0], embed_dims[i], depths[i], downsample=i > 0,
                drop_path_rates=rates[start:start + depths[i]], num_heads=qk_dims[i] // head_dim, topk=topks[i],
                n_win=n_win, qk_dim=qk_dims[i], qk_scale=qk_scale, mlp_ratio=mlp_ratios[i],
                side_dwconv=side_dwconv, before_attn_dwconv=before_attn_dwconv,
                layer_scale_init_value=layer_scale_init_value, pad_mode=pad_mode, **dd))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=4 * 2 ** i, module=f'stages.{i}'))
        self.feature_norms = nn.ModuleList(LayerNorm2d(d, **dd) for d in embed_dims) if feature_norms else None
        self.norm = nn.BatchNorm2d(self.num_features, **dd)
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        if not is_meta_device(device):  # meta tensors hold no values; their init only costs time
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)' if coarse else [
            (r'^stages\.(\d+)\.downsample', (0,)),
            (r'^stages\.(\d+)\.blocks\.(\d+)', None),
            (r'^feature_norms|^norm', (99999,)),
        ])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

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

    def forward_intermediates(self, x: Tensor, indices: Optional[Union[int, list[int]]] = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False) -> Union[list[Tensor], tuple[Tensor, list[Tensor]]]:
        """Stage outputs (NCHW), through ``feature_norms`` when the model has them.

        Args:
            indices: the last ``n`` stages if an int, all if None, else the stages listed.
            norm: apply the final BatchNorm to the last stage's map (models without feature norms).
            stop_early: stop after the last stage asked for.
            output_fmt: only ``'NCHW'``.
            intermediates_only: return only the list of maps.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"BiFormer features are NCHW, got output_fmt={output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_index = len(self.stages) - 1
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        intermediates = []
        x = self.stem(x)
        for index, stage in enumerate(stages):
            x = stage(x)
            if index in take_indices:
                if self.feature_norms is not None:
                    intermediates.append(self.feature_norms[index](x))
                elif norm and index == last_index:
                    intermediates.append(self.norm(x))
                else:
                    intermediates.append(x)
        if intermediates_only:
            return intermediates
        if index == last_index:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages (and feature norms) after the last of ``indices``; returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if self.feature_norms is not None:
            self.feature_norms = self.feature_norms[:max_index + 1]
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# Official checkpoints
# ---------------------------------------------------------------------------------------------
_KEY_RENAMES = (
    (r'^downsample_layers\.0\.', 'stem.'),
    (r'^downsample_layers\.(\d+)\.', r'stages.\1.downsample.'),
    (r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.'),
    (r'\.attn\.qkv\.qkv\.', '.attn.qkv.'),
    (r'\.attn\.wo\.', '.attn.proj.'),
    (r'\.mlp\.0\.', '.mlp.fc1.'),
    (r'\.mlp\.3\.', '.mlp.fc2.'),
    (r'\.gamma1$', '.ls1.gamma'),
    (r'\.gamma2$', '.ls2.gamma'),
    (r'^extra_norms\.', 'feature_norms.'),
    (r'^head\.', 'head.fc.'),
)


def _rename(key: str) -> str:
    for pattern, replacement in _KEY_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Upstream BiFormer keys -> this model's; accepts classification and mmdet/mmseg checkpoints.

    Takes a bare state dict or the ``{'model': ...}`` / ``{'state_dict': ...}`` wrappers. Checkpoints
    of upstream's detection/segmentation code keep their ``backbone.*`` weights (the necks and heads
    are left out) and need a model with ``feature_norms=True`` for their ``extra_norms``.
    Checkpoints already in this model's layout pass unchanged.
    """
    state_dict = state_dict_from(state_dict)
    if any(k.startswith('backbone.') for k in state_dict):
        dropped = sorted({k.split('.')[0] for k in state_dict if not k.startswith('backbone.')})
        _logger.info('BiFormer: keeping the backbone of a detection/segmentation checkpoint, leaving out %s', dropped)
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    if 'stem.0.weight' in state_dict:
        return state_dict
    if 'downsample_layers.0.0.weight' not in state_dict:
        raise KeyError('BiFormer checkpoint_filter_fn: this is neither an upstream BiFormer checkpoint '
                       "(no 'downsample_layers.0.0.weight') nor one of this model (no 'stem.0.weight'); "
                       f'first keys: {list(state_dict)[:5]}')
    if any(k.startswith('extra_norms.') for k in state_dict) and getattr(model, 'feature_norms', None) is None:
        raise ValueError('This BiFormer checkpoint comes from upstream\'s detection/segmentation code and has '
                         'per-stage output norms (extra_norms): create the model with feature_norms=True '
                         '(e.g. timm.create_model(..., features_only=True, feature_norms=True, n_win=...)).')
    return {_rename(k): v for k, v in state_dict.items()}


_UPSTREAM_DEFAULTS: dict[str, Any] = dict(  # upstream BiFormer.__init__'s defaults
    depth=[3, 4, 8, 3], in_chans=3, num_classes=1000, embed_dim=[64, 128, 320, 512], head_dim=64, qk_scale=None,
    representation_size=None, drop_path_rate=0.0, drop_rate=0.0, use_checkpoint_stages=[], n_win=7,
    kv_downsample_mode='ada_avgpool', kv_per_wins=[2, 2, -1, -1], topks=[8, 8, -1, -1], side_dwconv=5,
    layer_scale_init_value=-1, qk_dims=[None, None, None, None], param_routing=False, diff_routing=False,
    soft_routing=False, pre_norm=True, pe=None, pe_stages=[0], before_attn_dwconv=3, auto_pad=False,
    kv_downsample_kernels=[4, 2, 1, 1], kv_downsample_ratios=[4, 2, 1, 1], mlp_ratios=[4, 4, 4, 4],
    param_attention='qkvo', mlp_dwconv=False)
# Upstream options only the released configuration of which is implemented (the value it needs).
_RELEASED_ONLY: dict[str, Any] = dict(
    kv_downsample_mode='identity', param_routing=False, diff_routing=False, soft_routing=False, pre_norm=True,
    pe=None, representation_size=None, param_attention='qkvo', mlp_dwconv=False)
# kv_per_wins, kv_downsample_kernels/ratios and pe_stages have no effect under those values, nor has drop_rate
# upstream at all: they are accepted and left out.


def biformer_from_upstream(**upstream_kwargs: Any) -> BiFormer:
    """Our :class:`BiFormer` for the keyword arguments of upstream's ``BiFormer(...)`` (``models/biformer.py``).

    ``auto_pad`` (either value) becomes ``pad_mode='upstream'``, which equals upstream wherever
    upstream runs; ``use_checkpoint_stages`` turns on gradient checkpointing of those stages.
    """
    return _from_upstream(upstream_kwargs)


# Arguments upstream's detection/segmentation backbone (BiFormer_mm) adds; none changes the weights' layout.
_MM_ONLY = ('type', 'pretrained', 'norm_eval', 'disable_bn_grad')


def biformer_mm_from_upstream(**upstream_kwargs: Any) -> BiFormer:
    """Our model for the backbone dict of an upstream mmdet/mmseg config (``BiFormer_mm``).

    Upstream's dense backbone is the classification model without its final norm and head, plus a
    LayerNorm2d on every stage output: here ``feature_norms=True`` with the norm and head pruned, so
    ``forward_intermediates(x, intermediates_only=True)`` gives the four maps the neck read upstream.
    ``type``, ``pretrained``, ``norm_eval`` and ``disable_bn_grad`` (loading and training options) are
    accepted and left out.
    """
    kwargs = {k: v for k, v in upstream_kwargs.items() if k not in _MM_ONLY}
    model = _from_upstream(kwargs, feature_norms=True)
    model.prune_intermediate_layers(len(model.stages), prune_norm=True, prune_head=True)
    return model


def _from_upstream(upstream_kwargs: dict[str, Any], feature_norms: bool = False) -> BiFormer:
    unknown = sorted(set(upstream_kwargs) - set(_UPSTREAM_DEFAULTS))
    if unknown:
        raise TypeError(f'{unknown} are not arguments of upstream BiFormer(...) (models/biformer.py); for the '
                        f"backbone of an upstream detection/segmentation config use family 'biformer_mm'")
    kw = dict(_UPSTREAM_DEFAULTS, **upstream_kwargs)
    unsupported = {k: kw[k] for k, v in _RELEASED_ONLY.items() if kw[k] != v}
    if unsupported:
        needed = ', '.join(f'{k}={_RELEASED_ONLY[k]!r}' for k in unsupported)
        raise NotImplementedError(f'upstream BiFormer options {unsupported} are not implemented; only the released '
                                  f'configuration is ({needed})')
    model = BiFormer(
        in_chans=kw['in_chans'], num_classes=kw['num_classes'], depths=kw['depth'], embed_dims=kw['embed_dim'],
        head_dim=kw['head_dim'], qk_dims=kw['qk_dims'], mlp_ratios=kw['mlp_ratios'], n_win=kw['n_win'],
        topks=kw['topks'], side_dwconv=kw['side_dwconv'], before_attn_dwconv=kw['before_attn_dwconv'],
        qk_scale=kw['qk_scale'],
        layer_scale_init_value=kw['layer_scale_init_value'] if kw['layer_scale_init_value'] > 0 else None,
        pad_mode='upstream', feature_norms=feature_norms, drop_path_rate=kw['drop_path_rate'])
    for i in kw['use_checkpoint_stages']:
        model.stages[i].grad_checkpointing = True
    return model


register_family('biformer', biformer_from_upstream, checkpoint_filter_fn)
register_family('biformer_mm', biformer_mm_from_upstream, checkpoint_filter_fn)


# ---------------------------------------------------------------------------------------------
# timm entry points
# ---------------------------------------------------------------------------------------------
_ONEDRIVE = 'https://api.onedrive.com/'
_ONEDRIVE_FOLDER = 'https://1drv.ms/u/s!AkBbczdRlZvChGsXFqAA-PVnA-R8?e=IPlOCG'


def _official_weights(variant: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the official OneDrive checkpoint of ``variant`` downloaded and unwrapped.

    timm would cache all three files under the URL's last path part (``content``) and would take
    ``model_ema`` over ``model`` from a training checkpoint; upstream loads ``checkpoint['model']``
    from ``<variant>_in1k.pth``, and so does this (torch's hub cache, where timm keeps its downloads).
    """
    overlay = dict(kwargs.get('pretrained_cfg_overlay') or {})
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get('pretrained_cfg'), pretrained_cfg_overlay=overlay)
    url = cfg.url if isinstance(cfg.url, str) else ''
    if cfg.file or cfg.state_dict is not None or cfg.hf_hub_id or not url.startswith(_ONEDRIVE):
        return kwargs
    file_name = f"{variant.split('.')[0]}_in1k.pth"
    by_hand = (f'{file_name} from the OneDrive folder linked in the README of rayleizhu/BiFormer, '
               f'{_ONEDRIVE_FOLDER}; its direct links have broken before, upstream issues #15, #53')
    path = os.path.join(get_dir(), 'checkpoints', file_name)
    if not os.path.isfile(path):
        if hub_offline():
            raise weights_unavailable(variant, url, f'HF_HUB_OFFLINE=1 is set and {file_name} is not in the local '
                                      f'cache {os.path.dirname(path)}', by_hand=by_hand)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            download_url_to_file(url, path, progress=False)
        except OSError as err:  # URLError and HTTPError are OSErrors
            raise weights_unavailable(variant, url, f'{type(err).__name__}: {err}', by_hand=by_hand) from err
    return dict(kwargs, pretrained_cfg_overlay=dict(overlay, state_dict=load_checkpoint_file(path)))


def _create_biformer(variant: str, pretrained: bool = False, **kwargs: Any) -> BiFormer:
    if pretrained:
        kwargs = _official_weights(variant, kwargs)
    return build_model_with_cfg(BiFormer, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3)), **kwargs)


def _cfg(url: str = '', **kwargs: Any) -> dict[str, Any]:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.0', 'classifier': 'head.fc', 'license': 'mit',
        'paper_ids': 'arXiv:2303.08810', 'paper_name': 'BiFormer: Vision Transformer with Bi-Level Routing Attention',
        'origin_url': 'https://github.com/rayleizhu/BiFormer', **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'biformer_tiny.in1k': _cfg(url=_ONEDRIVE + 'v1.0/shares/s!AkBbczdRlZvChHEOoGkgwgQzEDlM/root/content'),
    'biformer_small.in1k': _cfg(url=_ONEDRIVE + 'v1.0/shares/s!AkBbczdRlZvChHDyM-x9KWRBZ832/root/content'),
    'biformer_base.in1k': _cfg(url=_ONEDRIVE + 'v1.0/shares/s!AkBbczdRlZvChHI_XPhoadjaNxtO/root/content'),
})


@register_model
def biformer_tiny(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-T: 13.1M parameters, 81.4% ImageNet-1k top-1 (upstream)."""
    model_args = dict(depths=(2, 2, 8, 2), embed_dims=(64, 128, 256, 512))
    return _create_biformer('biformer_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_small(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-S: 25.5M parameters, 83.8% ImageNet-1k top-1 (upstream)."""
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(64, 128, 256, 512))
    return _create_biformer('biformer_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_base(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-B: 56.8M parameters, 84.3% ImageNet-1k top-1 (upstream)."""
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(96, 192, 384, 768))
    return _create_biformer('biformer_base', pretrained=pretrained, **dict(model_args, **kwargs))
