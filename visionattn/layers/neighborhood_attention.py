"""NATTEN 0.14-0.15's ``NeighborhoodAttention1D/2D/3D`` modules on :mod:`visionattn.ops` (``na1d/na2d/na3d``).

Why our own: the NAT/DiNAT checkpoints were trained with NATTEN 0.14-0.17, whose modules (relative
positional bias, zero-padding of small inputs) current NATTEN no longer ships. Parameter names and
shapes are NATTEN's (``qkv``, ``rpb``, ``proj``), so the official state dicts load unchanged.

For timm's FX feature extraction the modules are leaves (``register_notrace_module``: the op's argument
checks depend on shapes), and under TorchScript the op is called as Python (``torch.jit.ignore``), so
scripted models run it.
"""
from typing import Optional

import torch
from timm.layers import register_notrace_module
from torch import Tensor, nn
from torch.nn import functional as F

from ..ops import na1d, na2d, na3d

__all__ = ['NeighborhoodAttention1D', 'NeighborhoodAttention2D', 'NeighborhoodAttention3D']

# the op of each rank; looked up in the TorchScript-ignored _attend (a module attribute holding a Python
# function would make torch.jit.script try to compile the op)
_OPS = {1: na1d, 2: na2d, 3: na3d}


class _NeighborhoodAttention(nn.Module):
    """Multi-head neighbourhood attention over a ``(batch, *spatial, channels)`` map, as in NATTEN 0.14.

    Maps smaller than ``kernel_size * dilation`` along an axis are zero-padded at its end before the qkv
    projection (the padded tokens take part in attention, as upstream) and cropped afterwards.
    The backend is chosen by :mod:`visionattn.ops.dispatch` (``visionattn.use_backend(...)``).
    """

    def __init__(self, name: str, dim: int, num_heads: int,
                 kernels: tuple[int, ...], dilations: tuple[int, ...], bias: bool, qkv_bias: bool,
                 qk_scale: Optional[float], attn_drop: float, proj_drop: float,
                 device: Optional[torch.device], dtype: Optional[torch.dtype]) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if dim % num_heads:
            raise ValueError(f'{name}: dim ({dim}) must be divisible by num_heads ({num_heads})')
        if any(k < 3 or k % 2 == 0 for k in kernels):
            raise ValueError(f'{name}: kernel_size must be odd and >= 3 (NATTEN 0.14 centres the window on '
                             f'the query), got {kernels}')
        if any(d < 1 for d in dilations):
            raise ValueError(f'{name}: dilation must be >= 1, got {dilations}')
        if attn_drop:
            raise ValueError(f'{name}: attention dropout is not supported (the fused operator never forms '
                             'the attention matrix); NAT/DiNAT use attn_drop=0. Use proj_drop or drop_path '
                             'for regularisation.')
        self._name = name
        self._axes = {1: 'length', 2: 'height, width', 3: 'depth, height, width'}[len(kernels)]  # for errors
        # lists, not tuples: TorchScript indexes them with a loop variable in forward
        self._kernels, self._dilations = list(kernels), list(dilations)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        if bias:
            self.rpb = nn.Parameter(torch.zeros(num_heads, *(2 * k - 1 for k in kernels), **dd))
            nn.init.trunc_normal_(self.rpb, std=.02, mean=0., a=-2., b=2.)
        else:
            self.register_parameter('rpb', None)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        # Written for TorchScript too (timm scripts whole models): plain loops, no starred or nested
        # comprehensions; only the op call is Python (_attend).
        rank = len(self._kernels)
        if x.dim() != rank + 2:
            raise ValueError(f'{self._name} expects (batch, {self._axes}, channels), got shape {list(x.shape)}')
        spatial = list(x.shape[1:-1])
        windows: list[int] = []
        for axis in range(rank):
            windows.append(self._kernels[axis] * self._dilations[axis])
        pads: list[int] = []
        padded = False
        if not torch.jit.is_scripting():
            if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
                # an exported graph serves every size: pad by a possibly-zero amount, never branch on the size;
                # written max(window, size) - size, so the padded size is max(window, size), which the shape
                # solver simplifies (size + max(window - size, 0) left it guards it called inconsistent)
                for axis in range(rank):
                    pads.append(torch.sym_max(windows[axis], spatial[axis]) - spatial[axis])
                padded = True
        if not padded:  # eager and TorchScript: pad only a map smaller than the window
            for axis in range(rank):
                pads.append(max(windows[axis] - spatial[axis], 0))
            padded = max(pads) > 0
        if padded:
            pad_arg = [0, 0]  # F.pad lists the last axis first: channels (unpadded), then spatial from the last
            for axis in range(rank - 1, -1, -1):
                pad_arg += [0, pads[axis]]
            x = F.pad(x, pad_arg)
        qkv = self.qkv(x).view([x.shape[0]] + list(x.shape[1:-1]) + [3, self.num_heads, self.head_dim])
        q, k, v = qkv.unbind(-3)
        x = self._attend(q, k, v).reshape(x.shape)
        if padded:
            for axis in range(rank):
                x = x.narrow(axis + 1, 0, spatial[axis])
        return self.proj_drop(self.proj(x))

    @torch.jit.ignore
    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        op = _OPS[len(self._kernels)]
        return op(q, k, v, tuple(self._kernels), tuple(self._dilations), rpb=self.rpb, scale=self.scale)

    def extra_repr(self) -> str:
        return (f'head_dim={self.head_dim}, num_heads={self.num_heads}, kernel_size={self.kernel_size}, '
                f'dilation={self.dilation}, rel_pos_bias={self.rpb is not None}')


@register_notrace_module
class NeighborhoodAttention1D(_NeighborhoodAttention):
    """NATTEN 0.14's ``NeighborhoodAttention1D`` over ``(batch, length, channels)``; rpb ``(heads, 2k-1)``."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int, dilation: Optional[int] = 1, bias: bool = True,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, attn_drop: float = 0.,
                 proj_drop: float = 0., device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        dilation = 1 if dilation is None else dilation  # NATTEN takes None for 'no dilation'
        super().__init__('NeighborhoodAttention1D', dim, num_heads, (kernel_size,), (dilation,), bias,
                         qkv_bias, qk_scale, attn_drop, proj_drop, device, dtype)
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.window_size = kernel_size * dilation


@register_notrace_module
class NeighborhoodAttention2D(_NeighborhoodAttention):
    """NATTEN 0.14's ``NeighborhoodAttention2D`` over ``(batch, height, width, channels)``; rpb
    ``(heads, 2k-1, 2k-1)``. NAT and DiNAT are built on it."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int, dilation: Optional[int] = 1, bias: bool = True,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, attn_drop: float = 0.,
                 proj_drop: float = 0., device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        dilation = 1 if dilation is None else dilation  # NAT passes None for 'no dilation', like NATTEN
        super().__init__('NeighborhoodAttention2D', dim, num_heads, (kernel_size,) * 2, (dilation,) * 2,
                         bias, qkv_bias, qk_scale, attn_drop, proj_drop, device, dtype)
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.window_size = kernel_size * dilation


@register_notrace_module
class NeighborhoodAttention3D(_NeighborhoodAttention):
    """NATTEN 0.15's ``NeighborhoodAttention3D`` over ``(batch, depth, height, width, channels)``: kernel and
    dilation ``(kernel_size_d, kernel_size, kernel_size)`` / ``(dilation_d, dilation, dilation)``, the
    depth values defaulting to the spatial ones; rpb ``(heads, 2k_d-1, 2k-1, 2k-1)``. Unlike NATTEN 0.15,
    which pads only height and width, a short depth is padded too (NATTEN's op rejects it)."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int, kernel_size_d: Optional[int] = None,
                 dilation: Optional[int] = 1, dilation_d: Optional[int] = None, bias: bool = True,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, attn_drop: float = 0.,
                 proj_drop: float = 0., device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        dilation = 1 if dilation is None else dilation
        kernel_size_d = kernel_size if kernel_size_d is None else kernel_size_d
        dilation_d = dilation if dilation_d is None else dilation_d
        super().__init__('NeighborhoodAttention3D', dim, num_heads, (kernel_size_d, kernel_size, kernel_size),
                         (dilation_d, dilation, dilation), bias, qkv_bias, qk_scale, attn_drop, proj_drop, device,
                         dtype)
        self.kernel_size, self.kernel_size_d = kernel_size, kernel_size_d
        self.dilation, self.dilation_d = dilation, dilation_d
        self.window_size, self.window_size_d = kernel_size * dilation, kernel_size_d * dilation_d

    def extra_repr(self) -> str:
        return (f'head_dim={self.head_dim}, num_heads={self.num_heads}, kernel_size_d={self.kernel_size_d}, '
                f'dilation_d={self.dilation_d}, kernel_size={self.kernel_size}, dilation={self.dilation}, '
                f'rel_pos_bias={self.rpb is not None}')
