"""NATTEN 0.14's ``NeighborhoodAttention2D`` module on :func:`visionattn.ops.na2d`.

Why our own: the NAT/DiNAT checkpoints were trained with NATTEN 0.14-0.17, whose module (relative
positional bias, zero-padding of small inputs) current NATTEN no longer ships. Parameter names and
shapes are NATTEN 0.14's (``qkv``, ``rpb``, ``proj``), so the official state dicts load unchanged.

For timm's FX feature extraction the module is a leaf (``register_notrace_module``: the op's argument
checks depend on shapes), and under TorchScript the op is called as Python (``torch.jit.ignore``), so
scripted models run it.
"""
from typing import Optional

import torch
from timm.layers import register_notrace_module
from torch import Tensor, nn
from torch.nn import functional as F

from ..ops import na2d

__all__ = ['NeighborhoodAttention2D']


@register_notrace_module
class NeighborhoodAttention2D(nn.Module):
    """Multi-head 2-D neighbourhood attention over a ``(B, H, W, C)`` map, as in NATTEN 0.14.

    Maps smaller than ``kernel_size * dilation`` are zero-padded on the right/bottom before the qkv
    projection (the padded tokens take part in attention, as upstream) and cropped afterwards.
    The backend is chosen by :mod:`visionattn.ops.dispatch` (``visionattn.use_backend(...)``).
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int, dilation: Optional[int] = 1, bias: bool = True,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, attn_drop: float = 0.,
                 proj_drop: float = 0., device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if dim % num_heads:
            raise ValueError(f'NeighborhoodAttention2D: dim ({dim}) must be divisible by num_heads ({num_heads})')
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f'NeighborhoodAttention2D: kernel_size must be odd and >= 3, got {kernel_size}')
        dilation = 1 if dilation is None else dilation  # NAT passes None for 'no dilation', like NATTEN
        if dilation < 1:
            raise ValueError(f'NeighborhoodAttention2D: dilation must be >= 1, got {dilation}')
        if attn_drop:
            raise ValueError('NeighborhoodAttention2D: attention dropout is not supported (the fused '
                             'operator never forms the attention matrix); NAT/DiNAT use attn_drop=0. '
                             'Use proj_drop or drop_path for regularisation.')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.window_size = kernel_size * dilation
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        if bias:
            self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1, **dd))
            nn.init.trunc_normal_(self.rpb, std=.02, mean=0., a=-2., b=2.)
        else:
            self.register_parameter('rpb', None)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f'NeighborhoodAttention2D expects (batch, height, width, channels), got shape '
                             f'{list(x.shape)}')
        batch, height, width, channels = x.shape
        pad_right, pad_bottom = max(0, self.window_size - width), max(0, self.window_size - height)
        if pad_right or pad_bottom:
            x = F.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))
        padded_h, padded_w = height + pad_bottom, width + pad_right
        qkv = self.qkv(x).view(batch, padded_h, padded_w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(3)
        x = self._attend(q, k, v)
        x = x.reshape(batch, padded_h, padded_w, channels)
        if pad_right or pad_bottom:
            x = x[:, :height, :width]
        return self.proj_drop(self.proj(x))

    @torch.jit.ignore
    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return na2d(q, k, v, self.kernel_size, self.dilation, rpb=self.rpb, scale=self.scale)

    def extra_repr(self) -> str:
        return (f'head_dim={self.head_dim}, num_heads={self.num_heads}, kernel_size={self.kernel_size}, '
                f'dilation={self.dilation}, rel_pos_bias={self.rpb is not None}')
