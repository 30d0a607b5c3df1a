"""2-D neighbourhood attention (NAT / DiNAT) with dilation and relative positional bias (RPB).

Why our own: NATTEN >= 0.20 dropped RPB and its CPU kernels, so the published NAT/DiNAT checkpoints
no longer run on a current stack, and neither timm nor PyTorch has neighbourhood attention.

Semantics are exactly NATTEN 0.14-0.17's (non-causal). Per axis of length ``L``, kernel ``k``,
dilation ``d`` and ``ns = k // 2``: query ``i`` belongs to dilation group ``i % d``; in group
coordinates (``ip = i // d``, group length ``Lg``) its window is the ``k`` group positions starting at
``clamp(ip - ns, 0, Lg - k)`` (shifted inward at the borders, never truncated), and the bias of key
``kp`` of that window is ``rpb[head, kp_h - ip_h + k_h - 1, kp_w - ip_w + k_w - 1]``.

Layout: ``q, k, v`` are ``(batch, height, width, heads, head_dim)`` (NATTEN's fused layout, which a
``(B, H, W, 3, heads, head_dim)`` qkv projection yields without a copy); any strides. The result has
the same shape, contiguous. ``rpb`` is ``(heads, 2 * k_h - 1, 2 * k_w - 1)``.

Backends (picked by :mod:`.dispatch`): ``'triton'`` runs the fused kernels of
``visionattn.kernels.na2d``; ``'torch'`` is the pure PyTorch path below. Both are behind the same
``torch.library`` custom ops (``visionattn::na2d_forward`` / ``na2d_backward``) with fake
implementations, so autograd, ``torch.compile(fullgraph=True)``, autocast and ``torch.export`` work.
During ONNX export (``torch.onnx.export(..., dynamo=True)``, the default) the PyTorch path is
traced directly into standard ONNX operators.

The PyTorch path tiles the map (per dilation group) into blocks of ``T x T`` queries; the keys of a
block's queries all lie in a ``(T + k - 1)^2`` region, so one batched matmul per pass computes every
block's logits, a precomputed bias (RPB, or ``-inf`` outside each query's window) masks them, and a
second matmul applies the softmax. Memory is O(tokens x (T + k - 1)^2 x heads), never tokens^2 and
never the ``tokens x k^2 x head_dim`` gathered keys of the usual unfold implementation, and the batch
runs in chunks so that the temporaries stay small. The backward recomputes the probabilities from the
saved log-sum-exp (like FlashAttention) instead of storing them.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from .dispatch import autocast_inputs, select_backend, triton_interpreted

__all__ = ['na2d']

def na2d(q: Tensor, k: Tensor, v: Tensor, kernel_size: int | Sequence[int], dilation: int | Sequence[int] = 1,
         rpb: Optional[Tensor] = None, scale: Optional[float] = None, backend: Optional[str] = None) -> Tensor:
    """Neighbourhood attention over a 2-D map, NATTEN 0.14-0.17 semantics.

    Args:
        q, k, v: ``(batch, height, width, heads, head_dim)``, same shape, dtype and device; any strides.
        kernel_size: odd window size (>= 3), one int or ``(k_h, k_w)``.
        dilation: >= 1, one int or ``(d_h, d_w)``; needs ``height >= k_h * d_h`` and ``width >= k_w * d_w``.
        rpb: optional relative positional bias ``(heads, 2 * k_h - 1, 2 * k_w - 1)``, in q's dtype or float32.
        scale: multiplies ``q . k`` before the bias is added; default ``head_dim ** -0.5``.
        backend: ``'triton'``, ``'torch'``, ``'auto'`` or None (the default of :mod:`.dispatch`).

    Under autocast, q, k and v run in the autocast dtype (rpb may stay float32). Computation is in
    float32 for half inputs (float64 for float64 inputs on the 'torch' backend).

    Returns:
        ``(batch, height, width, heads, head_dim)``, contiguous, in q's dtype.
    """
    q, k, v = autocast_inputs(q, k, v)
    kernel, dil = _check_args(q, k, v, kernel_size, dilation, rpb)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if torch.onnx.is_in_onnx_export():
        if torch.jit.is_tracing():
            raise RuntimeError("na2d: the TorchScript ONNX exporter (torch.onnx.export(..., dynamo=False)) "
                               "translates this op wrongly; use the default dynamo=True exporter")
        return _torch_forward(q, k, v, rpb, kernel, dil, float(scale), chunked=False)[0]
    name = select_backend('na', backend, q)
    out, _ = torch.ops.visionattn.na2d_forward(q, k, v, rpb, list(kernel), list(dil), float(scale), name)
    return out


# ----------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------

def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair):
        raise ValueError(f'na2d: {name} must be an int or a pair of ints, got {value!r}')
    return pair  # type: ignore[return-value]


def _check_args(q: Tensor, k: Tensor, v: Tensor, kernel_size: int | Sequence[int],
                dilation: int | Sequence[int], rpb: Optional[Tensor]) -> tuple[tuple[int, int], tuple[int, int]]:
    kernel, dil = _pair(kernel_size, 'kernel_size'), _pair(dilation, 'dilation')
    if any(x < 3 or x % 2 == 0 for x in kernel):
        raise ValueError(f'na2d: kernel_size must be odd and >= 3 (NATTEN semantics centre the window on '
                         f'the query), got {kernel}')
    if any(x < 1 for x in dil):
        raise ValueError(f'na2d: dilation must be >= 1, got {dil}')
    if q.dim() != 5:
        raise ValueError(f'na2d: q, k, v must be (batch, height, width, heads, head_dim), got q of shape '
                         f'{tuple(q.shape)}')
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f'na2d: q, k, v must have the same shape, got {tuple(q.shape)}, {tuple(k.shape)}, '
                         f'{tuple(v.shape)}')
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f'na2d: q, k, v must have the same dtype, got {q.dtype}, {k.dtype}, {v.dtype}')
    if not q.dtype.is_floating_point:
        raise TypeError(f'na2d: q, k, v must be floating point, got {q.dtype}')
    if k.device != q.device or v.device != q.device:
        raise ValueError(f'na2d: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}')
    _, height, width, heads, _ = q.shape
    if height < kernel[0] * dil[0] or width < kernel[1] * dil[1]:
        raise ValueError(f'na2d: the map ({height}x{width}) must be at least kernel_size x dilation '
                         f'({kernel[0] * dil[0]}x{kernel[1] * dil[1]}) on each axis; pad the input first '
                         '(NeighborhoodAttention2D does this, like NATTEN)')
    if rpb is not None:
        expected = (heads, 2 * kernel[0] - 1, 2 * kernel[1] - 1)
        if tuple(rpb.shape) != expected:
            raise ValueError(f'na2d: rpb must have shape (heads, 2*k_h-1, 2*k_w-1) = {expected}, '
                             f'got {tuple(rpb.shape)}')
        if rpb.dtype not in (q.dtype, torch.float32):
            raise TypeError(f'na2d: rpb must be float32 or q\'s dtype ({q.dtype}), got {rpb.dtype}')
        if rpb.device != q.device:
            raise ValueError(f'na2d: rpb is on {rpb.device} but q on {q.device}')
    return kernel, dil


# ----------------------------------------------------------------------------------------------------
# Geometry of the PyTorch path: blocks of T x T queries (in dilation-group coordinates) and the
# (T + k - 1)^2 key region that holds all their windows.
# ----------------------------------------------------------------------------------------------------

class _AxisTiles(NamedTuple):
    query_pos: Tensor   # (blocks, T): map position of each query slot, or L for an empty slot
    key_pos: Tensor     # (blocks, R): map position of each key of the region, or L outside the map
    in_window: Tensor   # (blocks, T, R): the key is in the query's window
    bias_index: Tensor  # (blocks, T, R): rpb index along this axis (clamped where not in window)


def _axis_tiles(length: int, kernel: int, dilation: int, tile: int) -> _AxisTiles:
    ns = kernel // 2
    group_max = -(-length // dilation)
    tile = min(tile, group_max)
    region = min(tile + kernel - 1, group_max)
    n_tiles = -(-group_max // tile)
    group = torch.arange(dilation).view(-1, 1, 1)
    group_len = (length - group + dilation - 1) // dilation                      # (d, 1, 1)
    ip = (torch.arange(n_tiles) * tile).view(1, -1, 1) + torch.arange(tile)      # (1, n, T)
    start = torch.minimum((ip - ns).clamp(min=0), group_len - kernel)            # (d, n, T)
    region_start = torch.minimum(start[..., :1], group_len - region).clamp(min=0)
    kp = region_start + torch.arange(region)                                     # (d, n, R)
    query_pos = torch.where(ip < group_len, ip * dilation + group, length)
    key_pos = torch.where(kp < group_len, kp * dilation + group, length)
    rel = kp.unsqueeze(-2) - start.unsqueeze(-1)                                 # (d, n, T, R)
    in_window = (rel >= 0) & (rel < kernel)
    bias_index = (kp.unsqueeze(-2) - ip.unsqueeze(-1) + kernel - 1).clamp(0, 2 * kernel - 2)
    n_blocks = dilation * n_tiles
    return _AxisTiles(query_pos.reshape(n_blocks, tile), key_pos.reshape(n_blocks, region),
                      in_window.reshape(n_blocks, tile, region), bias_index.reshape(n_blocks, tile, region))


class _Plan(NamedTuple):
    query_index: Tensor  # (blocks * T^2,): flat map index of each query slot, N for empty slots
    query_slot: Tensor   # (N,): slot of each map position in query_index
    key_index: Tensor    # (blocks * R^2,): flat map index of each region key, N outside the map
    in_window: Tensor    # (blocks, T^2, R^2) bool
    bias_index: Tensor   # (blocks, T^2, R^2): flat index into rpb[h].view(-1)
    blocks: int
    queries: int         # T^2 (T_h * T_w)
    keys: int            # R^2 (R_h * R_w)


def _combine(index_h: Tensor, index_w: Tensor, size_h: int, size_w: int) -> Tensor:
    """Flat map indices of the outer product of per-axis positions, N where either is outside."""
    inside = (index_h < size_h)[:, None, :, None] & (index_w < size_w)[None, :, None, :]
    flat = index_h[:, None, :, None] * size_w + index_w[None, :, None, :]
    return torch.where(inside, flat, size_h * size_w).reshape(-1)


@functools.lru_cache(maxsize=64)
def _plan(height: int, width: int, kernel: tuple[int, int], dilation: tuple[int, int],
          tile: tuple[int, int], device: torch.device) -> _Plan:
    with torch.inference_mode(False), torch.no_grad():
        th = _axis_tiles(height, kernel[0], dilation[0], tile[0])
        tw = _axis_tiles(width, kernel[1], dilation[1], tile[1])
        bh, qh, rh = th.in_window.shape
        bw, qw, rw = tw.in_window.shape
        query_index = _combine(th.query_pos, tw.query_pos, height, width)
        query_slot = torch.empty(height * width + 1, dtype=torch.long)
        query_slot[query_index] = torch.arange(query_index.numel())
        key_index = _combine(th.key_pos, tw.key_pos, height, width)

        def outer(a: Tensor, b: Tensor, fn) -> Tensor:  # (bh, qh, rh) x (bw, qw, rw) -> (blocks, T^2, R^2)
            out = fn(a[:, None, :, None, :, None], b[None, :, None, :, None, :])
            return out.reshape(bh * bw, qh * qw, rh * rw)

        in_window = outer(th.in_window, tw.in_window, torch.logical_and)
        bias_index = outer(th.bias_index, tw.bias_index, lambda a, b: a * (2 * kernel[1] - 1) + b)
        tensors = [query_index, query_slot[:-1], key_index, in_window, bias_index]
        return _Plan(*(t.to(device) for t in tensors), bh * bw, qh * qw, rh * rw)


def _tile_for(kernel: int) -> int:
    """Query block edge of the PyTorch path: bigger blocks give bigger matmuls and fewer gathered keys
    per query ((T + k - 1)^2 / T^2) but more wasted logits per query ((T + k - 1)^2 instead of k^2)."""
    return max(3, (kernel + 1) // 2)


# Logits elements per batch chunk: chunks keep the temporaries small (peak memory) and below glibc's
# mmap threshold, where CPU allocations are reused instead of page-faulted in again on every call.
_CHUNK_ELEMENTS = 1 << 22


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _setup(q: Tensor, kernel: Sequence[int], dilation: Sequence[int],
           chunked: bool) -> tuple[_Plan, torch.dtype, list[tuple[int, int]]]:
    kernel, dilation = tuple(kernel), tuple(dilation)
    plan = _plan(q.shape[1], q.shape[2], kernel, dilation, (_tile_for(kernel[0]), _tile_for(kernel[1])),
                 q.device)
    batch, heads = q.shape[0], q.shape[3]
    size = max(1, _CHUNK_ELEMENTS // (heads * plan.blocks * plan.queries * plan.keys)) if chunked else batch
    chunks = [(b, min(b + size, batch)) for b in range(0, batch, size)]
    return plan, _compute_dtype(q.dtype), chunks


def _flat_padded(x: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, H, W, heads, D) -> (B, heads, H*W + 1, D) in ``dtype``, the extra row zero (empty slots)."""
    b, h, w, heads, d = x.shape
    flat = x.permute(0, 3, 1, 2, 4).reshape(b, heads, h * w, d).to(dtype)
    return torch.cat([flat, flat.new_zeros(b, heads, 1, d)], dim=2)


def _gather(x: Tensor, index: Tensor, plan: _Plan, dtype: torch.dtype) -> Tensor:
    """(B, H, W, heads, D) -> (B, heads, blocks, slots, D): the map rows named by ``index``."""
    flat = _flat_padded(x, dtype)
    return flat.index_select(2, index).view(flat.shape[0], flat.shape[1], plan.blocks, -1, flat.shape[3])


def _bias(plan: _Plan, rpb: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """(heads or 1, blocks, T^2, R^2): RPB inside each query's window, -inf outside."""
    if rpb is None:
        bias = torch.zeros(plan.in_window.shape, dtype=dtype, device=plan.in_window.device)
        return bias.masked_fill_(~plan.in_window, -math.inf).unsqueeze(0)
    table = rpb.to(dtype).reshape(rpb.shape[0], -1)
    return table[:, plan.bias_index].masked_fill_(~plan.in_window, -math.inf)


def _unblock(blocked: Tensor, plan: _Plan, height: int, width: int) -> Tensor:
    """(B, heads, blocks, T^2, ...) query slots back to the map: (B, heads, H, W, ...)."""
    b, heads = blocked.shape[:2]
    rest = blocked.shape[4:]
    flat = blocked.reshape(b, heads, plan.blocks * plan.queries, *rest).index_select(2, plan.query_slot)
    return flat.view(b, heads, height, width, *rest)


def _heads_last(x: Tensor) -> Tensor:
    """(B, heads, H, W, D) -> (B, H, W, heads, D) view."""
    return x.permute(0, 2, 3, 1, 4)


def _torch_forward(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], kernel: Sequence[int],
                   dilation: Sequence[int], scale: float, chunked: bool = True) -> tuple[Tensor, Tensor]:
    """PyTorch path: out (B, H, W, heads, D) in q's dtype; log-sum-exp (B, heads, H, W) in float32
    (float64 for float64 inputs). ``chunked=False`` runs the whole batch at once (ONNX export)."""
    _, height, width, _, _ = q.shape
    plan, dtype, chunks = _setup(q, kernel, dilation, chunked)
    with torch.autocast(q.device.type, enabled=False):
        bias = _bias(plan, rpb, dtype)
        outs, lses = [], []
        for b0, b1 in chunks:
            qb = _gather(q[b0:b1], plan.query_index, plan, dtype).mul_(scale)  # NATTEN scales q first
            kb = _gather(k[b0:b1], plan.key_index, plan, dtype)
            logits = torch.matmul(qb, kb.transpose(-1, -2)).add_(bias)
            del qb, kb
            row_max = logits.amax(dim=-1, keepdim=True)
            probs = logits.sub_(row_max).exp_()
            row_sum = probs.sum(dim=-1, keepdim=True)
            out = torch.matmul(probs, _gather(v[b0:b1], plan.key_index, plan, dtype)).div_(row_sum)
            del probs, logits
            outs.append(_heads_last(_unblock(out, plan, height, width)).to(q.dtype))
            lses.append(_unblock(row_sum.log_().add_(row_max)[..., 0], plan, height, width))
    return torch.cat(outs).contiguous(), torch.cat(lses)


def _torch_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], out: Tensor,
                    lse: Tensor, kernel: Sequence[int], dilation: Sequence[int],
                    scale: float) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """PyTorch path backward: recompute the probabilities from ``lse``, then dQ, dK, dV, dRPB."""
    _, height, width, heads, _ = q.shape
    plan, dtype, chunks = _setup(q, kernel, dilation, chunked=True)
    grads_q, grads_k, grads_v = [], [], []
    grad_rpb = None if rpb is None else torch.zeros(heads, rpb[0].numel(), dtype=dtype, device=q.device)

    def scatter_keys(blocked: Tensor) -> Tensor:
        b, _, _, _, d = blocked.shape
        flat = blocked.new_zeros(b, heads, height * width + 1, d)
        flat.index_add_(2, plan.key_index, blocked.view(b, heads, -1, d))
        return _heads_last(flat[:, :, :-1].view(b, heads, height, width, d)).to(q.dtype)

    with torch.autocast(q.device.type, enabled=False):
        bias = _bias(plan, rpb, dtype)
        for b0, b1 in chunks:
            qb = _gather(q[b0:b1], plan.query_index, plan, dtype).mul_(scale)
            kb = _gather(k[b0:b1], plan.key_index, plan, dtype)
            vb = _gather(v[b0:b1], plan.key_index, plan, dtype)
            dob = _gather(grad_out[b0:b1], plan.query_index, plan, dtype)
            # per-query lse and delta = rowsum(dO * O); empty slots get 0 (their dO is 0)
            rows = torch.stack([lse[b0:b1].to(dtype).permute(0, 2, 3, 1),
                                (grad_out[b0:b1].to(dtype) * out[b0:b1].to(dtype)).sum(-1)], dim=-1)
            lse_b, delta_b = _gather(rows, plan.query_index, plan, dtype).unbind(-1)
            probs = torch.matmul(qb, kb.transpose(-1, -2)).add_(bias).sub_(lse_b.unsqueeze(-1)).exp_()
            grads_v.append(scatter_keys(torch.matmul(probs.transpose(-1, -2), dob)))
            grad_logits = torch.matmul(dob, vb.transpose(-1, -2)).sub_(delta_b.unsqueeze(-1)).mul_(probs)
            del probs, vb, dob
            grads_q.append(_heads_last(_unblock(torch.matmul(grad_logits, kb).mul_(scale), plan, height, width))
                           .to(q.dtype))
            grads_k.append(scatter_keys(torch.matmul(grad_logits.transpose(-1, -2), qb)))  # qb holds the scale
            if grad_rpb is not None:  # outside the windows probs = 0, so grad_logits = 0
                grad_rpb.index_add_(1, plan.bias_index.view(-1), grad_logits.sum(0).view(heads, -1))
            del grad_logits, qb, kb
    if grad_rpb is not None:
        grad_rpb = grad_rpb.view(rpb.shape).to(rpb.dtype)
    return (torch.cat(grads_q).contiguous(), torch.cat(grads_k).contiguous(), torch.cat(grads_v).contiguous(),
            grad_rpb)


# ----------------------------------------------------------------------------------------------------
# Custom ops (one pair for both backends) and autograd
# ----------------------------------------------------------------------------------------------------

def _triton_kernels():
    from visionattn.kernels import na as kernels  # lazy: visionattn imports without Triton
    return kernels


@torch.library.custom_op('visionattn::na2d_forward', mutates_args=())
def _forward_op(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], kernel_size: list[int],
                dilation: list[int], scale: float, backend: str) -> tuple[Tensor, Tensor]:
    if backend == 'triton':
        out, lse = _triton_kernels().forward(  # 2-D as 3-D with a unit leading axis
            q[:, None], k[:, None], v[:, None], None if rpb is None else rpb[:, None], [1, *kernel_size],
            [1, *dilation], [1, 1, 1], [False] * 3, scale, triton_interpreted())
        return out[:, 0], lse[:, :, 0]
    return _torch_forward(q, k, v, rpb, kernel_size, dilation, scale)


@_forward_op.register_fake
def _(q, k, v, rpb, kernel_size, dilation, scale, backend):
    b, h, w, heads, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((b, heads, h, w), dtype=_compute_dtype(q.dtype))


@torch.library.custom_op('visionattn::na2d_backward', mutates_args=())
def _backward_op(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], out: Tensor,
                 lse: Tensor, kernel_size: list[int], dilation: list[int], scale: float,
                 backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dQ, dK, dV and dRPB (an empty tensor when there is no rpb: op outputs cannot be None)."""
    if backend == 'triton':
        grad_q, grad_k, grad_v, grad_rpb = _triton_kernels().backward(  # 2-D as 3-D with a unit leading axis
            grad_out[:, None], q[:, None], k[:, None], v[:, None], None if rpb is None else rpb[:, None],
            out[:, None], lse[:, :, None], [1, *kernel_size], [1, *dilation], [1, 1, 1], [False] * 3, scale,
            triton_interpreted())
        grad_q, grad_k, grad_v = grad_q[:, 0], grad_k[:, 0], grad_v[:, 0]
        grad_rpb = None if grad_rpb is None else grad_rpb[:, 0]
    else:
        grad_q, grad_k, grad_v, grad_rpb = _torch_backward(grad_out, q, k, v, rpb, out, lse, kernel_size,
                                                           dilation, scale)
    return grad_q, grad_k, grad_v, q.new_empty(0) if grad_rpb is None else grad_rpb


@_backward_op.register_fake
def _(grad_out, q, k, v, rpb, out, lse, kernel_size, dilation, scale, backend):
    grad_rpb = q.new_empty(0) if rpb is None else rpb.new_empty(rpb.shape)
    return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape), grad_rpb


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, rpb, kernel_size, dilation, scale, backend = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, rpb, out, lse)
    ctx.args = (kernel_size, dilation, scale, backend)


def _backward(ctx, grad_out: Tensor, _grad_lse: Optional[Tensor]):
    # lse is an internal output of the op (na2d returns only ``out``): its gradient is not propagated.
    q, k, v, rpb, out, lse = ctx.saved_tensors
    grad_q, grad_k, grad_v, grad_rpb = torch.ops.visionattn.na2d_backward(grad_out, q, k, v, rpb, out, lse,
                                                                          *ctx.args)
    return grad_q, grad_k, grad_v, (grad_rpb if rpb is not None else None), None, None, None, None


torch.library.register_autograd('visionattn::na2d_forward', _backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.visionattn.na2d_forward)
def _forward_flops(q_shape, k_shape, v_shape, rpb_shape, kernel_size, dilation, scale, backend, *,
                   out_shape=None) -> int:
    """FlopCounterMode's count: QK^T and AV over each query's window, 2 FLOPs per multiply-add."""
    batch, height, width, heads, head_dim = q_shape
    return 4 * batch * heads * height * width * math.prod(kernel_size) * head_dim


@register_flop_formula(torch.ops.visionattn.na2d_backward)
def _backward_flops(grad_shape, q_shape, k_shape, v_shape, rpb_shape, saved_out_shape, lse_shape, kernel_size,
                    dilation, scale, backend, *, out_shape=None) -> int:
    """Recomputed QK^T plus dV, dP, dQ and dK: 2.5x the forward."""
    forward = _forward_flops(q_shape, k_shape, v_shape, rpb_shape, kernel_size, dilation, scale, backend)
    return 5 * forward // 2
