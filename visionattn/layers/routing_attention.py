"""BiFormer's bi-level routing attention as a module, parameter-compatible with the released checkpoints.

Why our own: neither timm nor any maintained package has BiFormer, and upstream's module
(rayleizhu/BiFormer ``ops/bra_legacy.py``) gathers a ``topk``-times copy of K and V (issues #21, #50).
This module keeps upstream's parameters and semantics (one ``qkv`` linear laid out ``[q | k | v]``,
routing and attention scaled by ``qk_dim ** -0.5`` with ``qk_dim`` the full query width, LePE as a
depthwise conv on V added before the output projection) and runs the attention through
:func:`visionattn.ops.bi_level_routing_attention`, whose backend :mod:`visionattn.ops.dispatch` picks.

Any input size: the feature map is split into an ``n_win x n_win`` grid of regions, so it is
zero-padded at the right/bottom to a multiple of ``n_win`` first (at most ``n_win - 1`` rows and
columns; a map smaller than ``n_win`` is padded up to it) and the output is cropped back.
``pad_mode`` says what the padded tokens do:

- ``'upstream'`` (default): they take part in routing, attention and LePE like real tokens (their
  q/k/v are the qkv bias), exactly as upstream's ``auto_pad=True``, which the official detection
  and segmentation models were trained with. Use it to reproduce those checkpoints and recipes.
- ``'masked'``: they are left out of the region means of the routing and never attended, and LePE
  sees zeros there, so every real token's output is independent of the padding. Use it when
  training on new input sizes, where a fixed ``n_win`` can pad a lot (a 50x84 stage-3 map padded
  to 64x96 with ``n_win=16``).

When the map is a multiple of ``n_win`` (ImageNet at 224 with ``n_win=7``) nothing is padded and
the two modes are the same computation.

The module exports to ONNX (``torch.onnx.export(module, args, dynamo=True)``): during export the
attention runs upstream's gather formulation and the routing's top-k becomes ONNX ``TopK``. Empty
batches pass (empty output and gradients), and a NaN in one input token reaches only that token, the
tokens whose routed regions hold it and its LePE neighbourhood (see :mod:`visionattn.ops.routing`).

For timm's FX feature extraction the module is a leaf (``register_notrace_module``: padding and the
op's argument checks depend on shapes), and under TorchScript the op is called as Python
(``torch.jit.ignore``), so scripted models run it.
"""
from typing import Optional

import torch
from timm.layers import register_notrace_module
from torch import Tensor, nn
from torch.nn import functional as F

from ..ops import bi_level_routing_attention

__all__ = ['BiLevelRoutingAttention', 'PAD_MODES']

PAD_MODES = ('upstream', 'masked')


@register_notrace_module
class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention over a ``(batch, height, width, dim)`` map (BiFormer's ``bra_legacy``).

    Args:
        dim: channels of the input, the values and the output.
        num_heads: attention heads (queries/keys split into ``qk_dim // num_heads`` channels each).
        n_win: regions per side of the routing grid.
        topk: routed regions per query region (at most ``n_win ** 2``).
        qk_dim: width of queries and keys (default ``dim``).
        qk_scale: logit scale of routing and attention (default ``qk_dim ** -0.5``, upstream's).
        side_dwconv: kernel of the LePE depthwise conv on V (0: no LePE).
        pad_mode: ``'upstream'`` or ``'masked'``, what padded tokens do (see the module docstring).
    """

    def __init__(self, dim: int, num_heads: int, n_win: int = 7, topk: int = 4, qk_dim: Optional[int] = None,
                 qk_scale: Optional[float] = None, side_dwconv: int = 5, pad_mode: str = 'upstream',
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        qk_dim = qk_dim or dim
        if qk_dim % num_heads or dim % num_heads:
            raise ValueError(f'BiLevelRoutingAttention: qk_dim ({qk_dim}) and dim ({dim}) must be divisible by '
                             f'num_heads ({num_heads})')
        if n_win < 1 or not 1 <= topk <= n_win ** 2:
            raise ValueError(f'BiLevelRoutingAttention: topk={topk} must be between 1 and the number of regions '
                             f'n_win**2={n_win ** 2} (n_win={n_win}); lower topk or raise n_win')
        if pad_mode not in PAD_MODES:
            raise ValueError(f'BiLevelRoutingAttention: pad_mode must be one of {PAD_MODES}, got {pad_mode!r}')
        if side_dwconv < 0 or (side_dwconv and side_dwconv % 2 == 0):
            raise ValueError(f'BiLevelRoutingAttention: side_dwconv must be 0 (no LePE) or an odd kernel size, '
                             f'got {side_dwconv}')
        self.dim, self.qk_dim, self.num_heads = dim, qk_dim, num_heads
        self.n_win, self.topk, self.pad_mode = n_win, topk, pad_mode
        self.scale = qk_scale or qk_dim ** -0.5
        self.qkv = nn.Linear(dim, 2 * qk_dim + dim, **dd)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim, **dd) \
            if side_dwconv else None
        self.proj = nn.Linear(dim, dim, **dd)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] != self.dim:
            raise ValueError(f'BiLevelRoutingAttention expects (batch, height, width, {self.dim}), got '
                             f'{list(x.shape)}')
        height, width = x.shape[1:3]
        pad_h, pad_w = -height % self.n_win, -width % self.n_win
        # padded whatever the size (a no-op when nothing is missing): a branch on the size would make an
        # exported graph with dynamic height and width serve only the sizes that take the export's branch
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        q, k, v = self.qkv(x).split([self.qk_dim, self.qk_dim, self.dim], dim=-1)
        token_mask: Optional[Tensor] = None
        if self.pad_mode == 'masked' and (pad_h or pad_w):
            token_mask = torch.zeros(1, height + pad_h, width + pad_w, dtype=torch.bool, device=x.device)
            token_mask[:, :height, :width] = True
            v_for_lepe = v[:, :height, :width]  # the conv's own zero padding stands in for the padded tokens
        else:
            v_for_lepe = v
        out = self._attend(q, k, v, token_mask).flatten(-2)[:, :height, :width]
        if self.lepe is not None:
            lepe = self.lepe(v_for_lepe.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            out = out + lepe[:, :height, :width]
        return self.proj(out)

    @torch.jit.ignore
    def _attend(self, q: Tensor, k: Tensor, v: Tensor, token_mask: Optional[Tensor]) -> Tensor:
        heads = self.num_heads
        return bi_level_routing_attention(q.unflatten(-1, (heads, -1)), k.unflatten(-1, (heads, -1)),
                                          v.unflatten(-1, (heads, -1)), self.n_win, self.topk, self.scale,
                                          token_mask)

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, qk_dim={self.qk_dim}, n_win={self.n_win}, topk={self.topk}, '
                f'pad_mode={self.pad_mode!r}')
