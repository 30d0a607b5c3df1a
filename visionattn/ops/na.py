"""Neighbourhood attention in 1-D, 2-D and 3-D (``na1d``, ``na2d``, ``na3d``): NAT / DiNAT / GNA.

Why our own: NATTEN >= 0.20 dropped the relative positional bias (RPB) and its CPU kernels, so the
published NAT/DiNAT checkpoints no longer run on a current stack, and neither timm nor PyTorch has
neighbourhood attention.

Window rule (NATTEN >= 0.20, "Generalized Neighborhood Attention", Hassani et al. 2025), per spatial
axis of length ``L`` with kernel ``k``, dilation ``d``, stride ``s`` and causal flag ``c``:

- Dilation: position ``i`` belongs to dilation group ``g = i % d``; inside its group it sits at
  ``ip = i // d``, and the group has ``Lg = ceil((L - g) / d)`` positions. A query attends only keys of
  its own group; everything below is in group coordinates.
- Stride: the queries ``ip`` of one stride group ``ip // s`` share the window of the group's leader,
  ``leader = min((ip // s) * s + s // 2, Lg - 1)`` (the centre query; the right one of the two centres
  for an even stride), or ``min((ip // s) * s + s - 1, Lg - 1)`` (the last query) on a causal axis.
- Non-causal window: the ``k`` keys ``start <= kp < start + k`` with
  ``start = clamp(leader - k // 2, 0, Lg - k)``: centred on the leader (one more key left of it than
  right for an even ``k``), shifted inward at the borders, never truncated.
- Causal window: the keys ``max(leader - k + 1, 0) <= kp <= ip``: never after the query itself, so the
  first queries of an axis see fewer than ``k`` keys.
- The window of a query is the product of its per-axis windows. ``s = 1`` is neighbourhood attention,
  ``s = k`` blocked attention (non-overlapping windows); at ``s = 1``, non-causal, the rule is NATTEN
  0.14-0.17's, which the NAT/DiNAT checkpoints were trained with.
- RPB: only where NAT/DiNAT define it, i.e. stride 1 and non-causal on every axis; its shape is
  ``(heads, 2*k_1-1, ..., 2*k_n-1)`` for an n-D op and key ``kp`` of query ``ip`` gets
  ``rpb[head, kp_1 - ip_1 + k_1 - 1, ..., kp_n - ip_n + k_n - 1]`` (NAT's 2-D table; the same rule gives
  NATTEN 0.14's 1-D ``(heads, 2k-1)`` and 0.15's 3-D ``(heads, 2k_d-1, 2k_h-1, 2k_w-1)`` tables).

Accepted: ``kernel_size >= 2`` (even sizes too, as NATTEN >= 0.20), ``1 <= stride <= kernel_size``,
``dilation >= 1``, and a map of at least ``kernel_size * dilation`` positions per axis (pad first; the
layers do). Non-finite inputs stay local: a NaN/inf in q, k, v or rpb makes exactly the outputs (and the
gradient entries) whose window holds it non-finite; masking never turns finite inputs into NaN.

Layout: ``q, k, v`` are ``(batch, *spatial, heads, head_dim)`` (NATTEN's fused layout, which a
``(..., 3, heads, head_dim)`` qkv projection yields without a copy); any strides. The result has q's
shape, contiguous, in q's dtype.

Backends (picked by :mod:`.dispatch` from ``CAPABILITIES['na']``):

- ``'torch'``: the pure PyTorch path below, any device and floating dtype, forward and backward.
- ``'triton'``: the fused N-D kernels of ``visionattn.kernels.na`` (every rank, stride, causal and RPB
  case; float16/bfloat16/float32, head_dim <= 128).
- ``'reference'``: the explicit per-query formulation (:func:`_reference_forward`): each query
  gathers its own window's keys and values and takes a softmax over them; autograd through plain
  PyTorch. Slow and memory-hungry (``tokens x window x head_dim``), written to be read: the tests
  compare every other backend against it, and benchmarks and pictures use it as the naive baseline.
- ``'flex'``: ``torch.nn.attention.flex_attention`` (compiled) with a block mask from the window rule
  and the RPB as a ``score_mod``; forward and backward on CUDA, forward only on CPU.

'torch' and 'triton' run behind one pair of ``torch.library`` custom ops (``visionattn::na_forward`` /
``na_backward``, every rank run as 3-D with unit leading axes) with fake implementations and FLOP
formulas, so autograd, ``torch.compile(fullgraph=True)``, autocast and ``torch.export`` work. During
ONNX export (``torch.onnx.export(..., dynamo=True)``) the PyTorch path is traced into standard ONNX
operators instead.

The PyTorch path tiles each axis (per dilation group) into blocks of ``T`` queries, a multiple of the
stride; the keys of a block's windows all lie in a region of ``R = T + k - s`` positions, so one batched
matmul per pass computes every block's logits, a precomputed bias (RPB, or ``-inf`` outside each
query's window) masks them, and a second matmul applies the softmax. Memory is
O(tokens x R^n / T^n x heads), never tokens^2 and never the ``tokens x window x head_dim`` gathered keys
of the unfold formulation; the batch runs in chunks so that the temporaries stay small. The backward
recomputes the probabilities from the saved log-sum-exp (like FlashAttention). When an input is not
finite, the logits are masked by selection and every matmul that sums over a block's region keeps a
non-finite row to the windows that hold it (:func:`_local_matmul`), so NaN does not spread through
``0 * inf`` or ``nan + -inf``.
"""
from __future__ import annotations

import collections
import functools
import math
from typing import Callable, Hashable, Iterable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..errors import UnsupportedBackendError
from .dispatch import autocast_inputs, select_backend, triton_interpreted

__all__ = ['na1d', 'na2d', 'na3d']

_AXES = {1: 'length', 2: 'height, width', 3: 'depth, height, width'}

Ints = int | Sequence[int]
Bools = bool | Sequence[bool]


def na1d(q: Tensor, k: Tensor, v: Tensor, kernel_size: Ints, dilation: Ints = 1, stride: Ints = 1,
         is_causal: Bools = False, rpb: Optional[Tensor] = None, scale: Optional[float] = None,
         backend: Optional[str] = None) -> Tensor:
    """Neighbourhood attention over sequences; the window rule is in this module's docstring.

    Args:
        q, k, v: ``(batch, length, heads, head_dim)``, same shape, dtype and device; any strides.
        kernel_size, dilation, stride, is_causal: see :func:`na2d` (one value: 1-D).
        rpb: optional ``(heads, 2*k-1)`` bias (NATTEN 0.14's ``NeighborhoodAttention1D`` table); stride 1,
            non-causal only.
        scale, backend: see :func:`na2d`.

    Returns:
        ``(batch, length, heads, head_dim)``, contiguous, in q's dtype.
    """
    return _na(1, q, k, v, kernel_size, dilation, stride, is_causal, rpb, scale, backend)


def na2d(q: Tensor, k: Tensor, v: Tensor, kernel_size: Ints, dilation: Ints = 1, stride: Ints = 1,
         is_causal: Bools = False, rpb: Optional[Tensor] = None, scale: Optional[float] = None,
         backend: Optional[str] = None) -> Tensor:
    """Neighbourhood attention over a 2-D map (NAT / DiNAT); the window rule is in this module's docstring.

    Args:
        q, k, v: ``(batch, height, width, heads, head_dim)``, same shape, dtype and device; any strides.
        kernel_size: window size per axis, >= 2 (one int or one per axis).
        dilation: >= 1, one int or one per axis; needs ``height >= k_h * d_h`` and ``width >= k_w * d_w``.
        stride: ``1 <= stride <= kernel_size``, one int or one per axis (1: neighbourhood attention,
            ``kernel_size``: blocked attention).
        is_causal: one bool or one per axis: a query sees no key after it along a causal axis.
        rpb: optional relative positional bias ``(heads, 2*k_h-1, 2*k_w-1)``, in q's dtype or float32;
            stride 1 and non-causal only (where NAT/DiNAT define it).
        scale: multiplies ``q . k`` before the bias is added; default ``head_dim ** -0.5``.
        backend: ``'torch'``, ``'triton'``, ``'reference'``, ``'flex'``, ``'auto'`` or None (the default
            of :mod:`.dispatch`).

    Under autocast, q, k and v run in the autocast dtype (rpb may stay float32). Computation is in
    float32 for half inputs (float64 for float64 inputs on the 'torch' and 'reference' backends).

    Returns:
        ``(batch, height, width, heads, head_dim)``, contiguous, in q's dtype.
    """
    return _na(2, q, k, v, kernel_size, dilation, stride, is_causal, rpb, scale, backend)


def na3d(q: Tensor, k: Tensor, v: Tensor, kernel_size: Ints, dilation: Ints = 1, stride: Ints = 1,
         is_causal: Bools = False, rpb: Optional[Tensor] = None, scale: Optional[float] = None,
         backend: Optional[str] = None) -> Tensor:
    """Neighbourhood attention over volumes and videos; the window rule is in this module's docstring.

    Args:
        q, k, v: ``(batch, depth, height, width, heads, head_dim)``, same shape, dtype and device.
        kernel_size, dilation, stride, is_causal: see :func:`na2d` (three values per argument; e.g.
            ``is_causal=(True, False, False)`` for a video causal in time).
        rpb: optional ``(heads, 2*k_d-1, 2*k_h-1, 2*k_w-1)`` bias (NATTEN 0.15's ``NeighborhoodAttention3D``
            table); stride 1, non-causal only.
        scale, backend: see :func:`na2d`.

    Returns:
        ``(batch, depth, height, width, heads, head_dim)``, contiguous, in q's dtype.
    """
    return _na(3, q, k, v, kernel_size, dilation, stride, is_causal, rpb, scale, backend)


class _Geometry(NamedTuple):
    """Per-axis window parameters of one call, always 3 axes (unit leading axes for 1-D and 2-D)."""
    kernel: tuple[int, int, int]
    dilation: tuple[int, int, int]
    stride: tuple[int, int, int]
    causal: tuple[bool, bool, bool]


def _na(rank: int, q: Tensor, k: Tensor, v: Tensor, kernel_size: Ints, dilation: Ints, stride: Ints,
        is_causal: Bools, rpb: Optional[Tensor], scale: Optional[float], backend: Optional[str]) -> Tensor:
    q, k, v = autocast_inputs(q, k, v)
    kernel, dil, strides, causal = _check_args(rank, q, k, v, kernel_size, dilation, stride, is_causal, rpb)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    pad = 3 - rank  # run every rank as 3-D: unit leading axes with kernel 1 (a window of one key)
    geometry = _Geometry((1,) * pad + kernel, (1,) * pad + dil, (1,) * pad + strides, (False,) * pad + causal)
    q3, k3, v3 = (t.reshape(t.shape[0], *(1,) * pad, *t.shape[1:]) if pad else t for t in (q, k, v))
    rpb3 = rpb.reshape(rpb.shape[0], *(1,) * pad, *rpb.shape[1:]) if rpb is not None and pad else rpb
    if torch.onnx.is_in_onnx_export():
        if torch.jit.is_tracing():
            raise RuntimeError(f"na{rank}d: the TorchScript ONNX exporter (torch.onnx.export(..., dynamo=False)) "
                               "translates this op wrongly; use the default dynamo=True exporter")
        out = _torch_forward(q3, k3, v3, rpb3, geometry, scale, traced=True)[0]
    else:
        name = select_backend('na', backend, q)
        if name == 'reference':
            out = _reference_forward(q3, k3, v3, rpb3, geometry, scale)
        elif name == 'flex':
            out = _flex_forward(q3, k3, v3, rpb3, geometry, scale)
        else:
            out = torch.ops.visionattn.na_forward(q3, k3, v3, rpb3, *map(list, geometry), scale, name)[0]
    return out.view(q.shape)


# ----------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------

def _per_axis(rank: int, value, name: str, kind: type) -> tuple:
    values = (value,) * rank if isinstance(value, kind) else tuple(value) if isinstance(value, Sequence) else ()
    # bool is an int in Python: keep True out of the int arguments and 1 out of is_causal
    if len(values) != rank or not all(isinstance(x, kind) and (kind is bool or not isinstance(x, bool))
                                      for x in values):
        what = 'an int' if kind is int else 'a bool'
        raise ValueError(f'na{rank}d: {name} must be {what} or {rank} of them (one per axis), got {value!r}')
    return values


def _check_args(rank: int, q: Tensor, k: Tensor, v: Tensor, kernel_size: Ints, dilation: Ints, stride: Ints,
                is_causal: Bools, rpb: Optional[Tensor]) -> tuple[tuple, tuple, tuple, tuple]:
    op = f'na{rank}d'
    kernel = _per_axis(rank, kernel_size, 'kernel_size', int)
    dil = _per_axis(rank, dilation, 'dilation', int)
    strides = _per_axis(rank, stride, 'stride', int)
    causal = _per_axis(rank, is_causal, 'is_causal', bool)
    if any(x < 2 for x in kernel):
        raise ValueError(f'{op}: kernel_size must be >= 2, got {kernel}')
    if any(x < 1 for x in dil):
        raise ValueError(f'{op}: dilation must be >= 1, got {dil}')
    if any(s < 1 or s > kk for s, kk in zip(strides, kernel)):
        raise ValueError(f'{op}: stride must be between 1 and kernel_size {kernel} on each axis, got {strides}')
    if q.dim() != rank + 3:
        raise ValueError(f'{op}: q, k, v must be (batch, {_AXES[rank]}, heads, head_dim), got q of shape '
                         f'{tuple(q.shape)}')
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f'{op}: q, k, v must have the same shape, got {tuple(q.shape)}, {tuple(k.shape)}, '
                         f'{tuple(v.shape)}')
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f'{op}: q, k, v must have the same dtype, got {q.dtype}, {k.dtype}, {v.dtype}')
    if not q.dtype.is_floating_point:
        raise TypeError(f'{op}: q, k, v must be floating point, got {q.dtype}')
    if k.device != q.device or v.device != q.device:
        raise ValueError(f'{op}: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}')
    if q.shape[-1] < 1:
        raise ValueError(f'{op}: head_dim must be >= 1, got {q.shape[-1]}')
    spatial = tuple(q.shape[1:1 + rank])
    needed = tuple(kk * dd for kk, dd in zip(kernel, dil))
    if any(size < need for size, need in zip(spatial, needed)):
        raise ValueError(f'{op}: the map {spatial} must be at least kernel_size x dilation {needed} on each '
                         'axis; pad the input first (the NeighborhoodAttention layers do this, like NATTEN)')
    if rpb is not None:
        if any(s != 1 for s in strides) or any(causal):
            raise ValueError(f'{op}: rpb is defined only for stride 1 and non-causal axes (NAT/DiNAT\'s '
                             f'relative positional bias), got stride={strides}, is_causal={causal}')
        expected = (q.shape[-2], *(2 * kk - 1 for kk in kernel))
        if tuple(rpb.shape) != expected:
            raise ValueError(f'{op}: rpb must have shape (heads, 2*k-1 per axis) = {expected}, '
                             f'got {tuple(rpb.shape)}')
        if rpb.dtype not in (q.dtype, torch.float32):
            raise TypeError(f'{op}: rpb must be float32 or q\'s dtype ({q.dtype}), got {rpb.dtype}')
        if rpb.device != q.device:
            raise ValueError(f'{op}: rpb is on {rpb.device} but q on {q.device}')
    return kernel, dil, strides, causal


# ----------------------------------------------------------------------------------------------------
# The window rule (shared by every backend written here) and caches that tracing cannot poison
# ----------------------------------------------------------------------------------------------------

def _window_bounds(ip: Tensor, group_len: Tensor | int, kernel: int, stride: int,
                   causal: bool) -> tuple[Tensor, Tensor]:
    """First and one-past-last key (group coordinates) of the window of query ``ip`` in a dilation group
    of ``group_len`` positions: the rule of this module's docstring."""
    if causal:
        leader = torch.clamp((ip // stride) * stride + stride - 1, max=group_len - 1)
        return torch.clamp(leader - kernel + 1, min=0), torch.clamp(ip + 1, max=group_len)
    leader = torch.clamp((ip // stride) * stride + stride // 2, max=group_len - 1)
    start = torch.clamp(torch.clamp(leader - kernel // 2, max=group_len - kernel), min=0)
    return start, start + kernel


def _axis_key_count(length: int, kernel: int, dilation: int, stride: int, causal: bool) -> int:
    """Keys summed over the windows of all positions of one axis (the FLOP formulas' count).

    Plain integers (FLOP formulas may run under fake tensors); the tests check it against the windows."""
    if not causal:
        return length * kernel
    total = 0
    for pos in range(length):
        ip, group_len = pos // dilation, (length - pos % dilation + dilation - 1) // dilation
        leader = min((ip // stride) * stride + stride - 1, group_len - 1)
        total += ip + 1 - max(leader - kernel + 1, 0)
    return total


def _tracing() -> bool:
    """True while a tracer runs (torch.compile, torch.export, ONNX export, FakeTensorMode): tensors made
    now may be placeholders, which must never be cached for, or taken from a cache into, an eager call."""
    return (torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
            or type(torch.empty(0)) is not torch.Tensor)  # FakeTensorMode/functionalization make subclasses


class _ShapeCache:
    """LRU cache of what is built from shapes alone (index plans, block masks), with one rule for tracing:
    nothing is stored or returned while :func:`_tracing` (issue 20: an export before the first eager call
    cached the exporter's fake tensors, and the next eager call returned a FakeTensor)."""

    def __init__(self, size: int) -> None:
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._size = size

    def get(self, key: Hashable, build: Callable[[], object], tensors: Callable[[object], Iterable[Tensor]]):
        if _tracing():
            return build()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = build()
        if all(type(t) is torch.Tensor for t in tensors(value)):
            self._items[key] = value
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()


# ----------------------------------------------------------------------------------------------------
# Geometry of the PyTorch path: blocks of T queries per axis (in dilation-group coordinates, T a multiple
# of the stride) and the region of R = T + k - s keys per axis that holds all their windows.
# ----------------------------------------------------------------------------------------------------

class _AxisTiles(NamedTuple):
    query_pos: Tensor   # (blocks, T): map position of each query slot, or L for an empty slot
    key_pos: Tensor     # (blocks, R): map position of each key of the region, or L outside the map
    in_window: Tensor   # (blocks, T, R): the key is in the query's window
    bias_index: Tensor  # (blocks, T, R): rpb index along this axis (clamped where not in window)


def _axis_tiles(length: int, kernel: int, dilation: int, stride: int, causal: bool, tile: int) -> _AxisTiles:
    group_max = (length + dilation - 1) // dilation  # ceil division of non-negative sizes (see below)
    tile = min(tile, group_max)
    region = min(tile + kernel - stride, group_max)
    n_tiles = (group_max + tile - 1) // tile
    group = torch.arange(dilation).view(-1, 1, 1)
    group_len = (length - group + dilation - 1) // dilation                      # (d, 1, 1)
    ip = (torch.arange(n_tiles) * tile).view(1, -1, 1) + torch.arange(tile)      # (1, n, T)
    start, end = _window_bounds(ip, group_len, kernel, stride, causal)           # (d, n, T)
    region_start = torch.minimum(start[..., :1], group_len - region).clamp(min=0)
    kp = region_start + torch.arange(region)                                     # (d, n, R)
    query_pos = torch.where(ip < group_len, ip * dilation + group, length)
    key_pos = torch.where(kp < group_len, kp * dilation + group, length)
    kp_, ip_ = kp.unsqueeze(-2), ip.unsqueeze(-1)                                # (., ., 1, R), (., ., T, 1)
    in_window = (kp_ >= start.unsqueeze(-1)) & (kp_ < end.unsqueeze(-1))         # (d, n, T, R)
    bias_index = (kp_ - ip_ + kernel - 1).clamp(0, 2 * kernel - 2).expand(in_window.shape)
    n_blocks = dilation * n_tiles
    return _AxisTiles(query_pos.expand(dilation, n_tiles, tile).reshape(n_blocks, tile),
                      key_pos.reshape(n_blocks, region), in_window.reshape(n_blocks, tile, region),
                      bias_index.reshape(n_blocks, tile, region))


class _Plan(NamedTuple):
    query_index: Tensor  # (blocks * T,): flat map index of each query slot, N for empty slots
    query_slot: Tensor   # (N,): slot of each map position in query_index
    key_index: Tensor    # (blocks * R,): flat map index of each region key, N outside the map
    in_window: Tensor    # (blocks, T, R) bool
    bias_index: Tensor   # (blocks, T, R): flat index into rpb[h].view(-1)
    blocks: int
    queries: int         # T (T_x * T_y * T_z)
    keys: int            # R (R_x * R_y * R_z)


def _spread(parts: Sequence[Tensor]) -> list[Tensor]:
    """Per-axis tensors ``(blocks_a, *slots_a)`` viewed so that they broadcast to
    ``(blocks_0, blocks_1, blocks_2, slots_0..., ...)``: dim ``j`` of axis ``a`` goes to ``3 * j + a``."""
    out = []
    for axis, part in enumerate(parts):
        shape = [1] * (len(parts) * part.dim())
        for j, size in enumerate(part.shape):
            shape[len(parts) * j + axis] = size
        out.append(part.reshape(shape))
    return out


def _flat_positions(parts: Sequence[Tensor], sizes: Sequence[int]) -> Tensor:
    """Flat map index of the outer product of per-axis positions (blocks_a, S_a), N where any is outside."""
    spread = _spread(parts)
    inside = functools.reduce(torch.logical_and, [p < size for p, size in zip(spread, sizes)])
    flat = functools.reduce(lambda acc, ps: acc * ps[1] + ps[0], zip(spread[1:], sizes[1:]), spread[0])
    return torch.where(inside, flat, math.prod(sizes)).reshape(-1)


def _build_plan(spatial: tuple[int, int, int], geometry: _Geometry, tile: tuple[int, int, int],
                device: torch.device) -> _Plan:
    with torch.inference_mode(False), torch.no_grad():
        axes = [_axis_tiles(length, *params, t) for length, *params, t in zip(spatial, *geometry, tile)]
        query_index = _flat_positions([a.query_pos for a in axes], spatial)
        query_slot = torch.empty(math.prod(spatial) + 1, dtype=torch.long)
        query_slot[query_index] = torch.arange(query_index.numel())
        key_index = _flat_positions([a.key_pos for a in axes], spatial)
        blocks = math.prod(a.in_window.shape[0] for a in axes)
        queries = math.prod(a.in_window.shape[1] for a in axes)
        keys = math.prod(a.in_window.shape[2] for a in axes)
        in_window = functools.reduce(torch.logical_and, _spread([a.in_window for a in axes]))
        widths = [2 * kk - 1 for kk in geometry.kernel]
        spread = _spread([a.bias_index for a in axes])
        bias_index = functools.reduce(lambda acc, bw: acc * bw[1] + bw[0], zip(spread[1:], widths[1:]), spread[0])
        tensors = [query_index, query_slot[:-1], key_index, in_window.reshape(blocks, queries, keys),
                   bias_index.reshape(blocks, queries, keys)]
        return _Plan(*(t.to(device) for t in tensors), blocks, queries, keys)


_PLANS = _ShapeCache(64)


def _tile_for(kernel: int, stride: int) -> int:
    """Query block edge of the PyTorch path, a multiple of the stride: bigger blocks give bigger matmuls and
    fewer gathered keys per query ((T + k - s) / T per axis) but more wasted logits per query."""
    base = max(3, (kernel + 1) // 2)
    return (base + stride - 1) // stride * stride


# Logits elements per batch chunk: chunks keep the temporaries small (peak memory) and below glibc's
# mmap threshold, where CPU allocations are reused instead of page-faulted in again on every call.
_CHUNK_ELEMENTS = 1 << 22


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _setup(q: Tensor, geometry: _Geometry, chunked: bool) -> tuple[_Plan, torch.dtype, list[tuple[int, int]]]:
    spatial = tuple(q.shape[1:4])
    tile = tuple(_tile_for(kk, s) for kk, s in zip(geometry.kernel, geometry.stride))
    key = (spatial, geometry, tile, q.device)
    plan = _PLANS.get(key, lambda: _build_plan(spatial, geometry, tile, q.device), lambda p: p[:5])
    batch, heads = q.shape[0], q.shape[4]
    size = max(1, _CHUNK_ELEMENTS // (heads * plan.blocks * plan.queries * plan.keys)) if chunked else batch
    chunks = [(b, min(b + size, batch)) for b in range(0, batch, size)]
    return plan, _compute_dtype(q.dtype), chunks


def _all_finite(*tensors: Optional[Tensor]) -> bool:
    """No element is NaN or inf. One sum per tensor: a NaN or inf element makes its sum non-finite, and a
    finite sum that overflows only sends the call down the exact path for non-finite inputs."""
    total = sum(t.sum(dtype=_compute_dtype(t.dtype)).double() for t in tensors if t is not None)
    return bool(torch.isfinite(total))


def _flat_padded(x: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, X, Y, Z, heads, D) -> (B, heads, N + 1, D) in ``dtype``, the extra row zero (empty slots)."""
    b, heads, d = x.shape[0], x.shape[4], x.shape[5]
    flat = x.permute(0, 4, 1, 2, 3, 5).reshape(b, heads, -1, d).to(dtype)
    return torch.cat([flat, flat.new_zeros(b, heads, 1, d)], dim=2)


def _gather(x: Tensor, index: Tensor, plan: _Plan, dtype: torch.dtype) -> Tensor:
    """(B, X, Y, Z, heads, D) -> (B, heads, blocks, slots, D): the map rows named by ``index``."""
    flat = _flat_padded(x, dtype)
    return flat.index_select(2, index).view(flat.shape[0], flat.shape[1], plan.blocks, -1, flat.shape[3])


def _bias(plan: _Plan, rpb: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """(heads or 1, blocks, T, R): RPB inside each query's window, -inf outside."""
    if rpb is None:
        bias = torch.zeros(plan.in_window.shape, dtype=dtype, device=plan.in_window.device)
        return bias.masked_fill_(~plan.in_window, -math.inf).unsqueeze(0)
    table = rpb.to(dtype).flatten(1)
    return table[:, plan.bias_index].masked_fill_(~plan.in_window, -math.inf)


def _unblock(blocked: Tensor, plan: _Plan, spatial: Sequence[int]) -> Tensor:
    """(B, heads, blocks, T, ...) query slots back to the map: (B, heads, X, Y, Z, ...)."""
    b, heads = blocked.shape[:2]
    rest = blocked.shape[4:]
    flat = blocked.reshape(b, heads, plan.blocks * plan.queries, *rest).index_select(2, plan.query_slot)
    return flat.view(b, heads, *spatial, *rest)


def _heads_last(x: Tensor) -> Tensor:
    """(B, heads, X, Y, Z, D) -> (B, X, Y, Z, heads, D) view."""
    return x.permute(0, 2, 3, 4, 1, 5)


def _occupied_windows(plan: _Plan, q: Tensor) -> Tensor:
    """The windows of the occupied query slots only: an empty slot's zero query times an infinite key is
    nan, which must not reach the key's gradients."""
    occupied = plan.query_index < math.prod(q.shape[1:4])
    return plan.in_window & occupied.view(plan.blocks, plan.queries, 1)


def _local_matmul(a: Tensor, x: Tensor, pattern: Optional[Tensor]) -> Tensor:
    """``a @ x`` where ``a`` is zero outside ``pattern`` (the (blocks, rows, region) windows as 0/1).

    ``pattern`` None: x is finite, a plain matmul. Otherwise a non-finite ``x[j, c]`` reaches exactly the
    rows whose pattern holds ``j`` (there the result is NaN), where a plain matmul would spread it over
    every row through ``0 * inf = nan``."""
    if pattern is None:
        return torch.matmul(a, x)
    bad = ~torch.isfinite(x)
    hit = torch.matmul(pattern, bad.to(x.dtype)) > 0
    return torch.matmul(a, x.masked_fill(bad, 0)).masked_fill_(hit, math.nan)


def _torch_forward(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], geometry: _Geometry, scale: float,
                   traced: bool = False) -> tuple[Tensor, Tensor]:
    """PyTorch path on the 3-D layout: out (B, X, Y, Z, heads, D) in q's dtype; log-sum-exp
    (B, heads, X, Y, Z) in float32 (float64 for float64 inputs). ``traced``: called under a tracer
    (ONNX export): the whole batch at once, and no data-dependent branch (inputs may be non-finite)."""
    batch, *spatial, heads, _ = q.shape
    lse_shape = (batch, heads, *spatial)
    if q.numel() == 0:  # batch or heads 0
        return q.new_empty(q.shape), q.new_empty(lse_shape, dtype=_compute_dtype(q.dtype))
    plan, dtype, chunks = _setup(q, geometry, chunked=not traced)
    finite = not traced and _all_finite(q, k, v, rpb)
    with torch.autocast(q.device.type, enabled=False):
        bias = _bias(plan, rpb, dtype)
        window = None if finite else _occupied_windows(plan, q)
        pattern = None if finite else window.to(dtype)
        outs, lses = [], []
        for b0, b1 in chunks:
            qb = _gather(q[b0:b1], plan.query_index, plan, dtype).mul_(scale)  # NATTEN scales q first
            kb = _gather(k[b0:b1], plan.key_index, plan, dtype)
            logits = torch.matmul(qb, kb.transpose(-1, -2)).add_(bias)
            if not finite:  # nan + -inf is nan: select instead
                logits = torch.where(window, logits, -math.inf)
            del qb, kb
            row_max = logits.amax(dim=-1, keepdim=True)
            probs = logits.sub_(row_max).exp_()
            row_sum = probs.sum(dim=-1, keepdim=True)
            out = _local_matmul(probs, _gather(v[b0:b1], plan.key_index, plan, dtype), pattern).div_(row_sum)
            del probs, logits
            outs.append(_heads_last(_unblock(out, plan, spatial)).to(q.dtype))
            lses.append(_unblock(row_sum.log_().add_(row_max)[..., 0], plan, spatial))
    return torch.cat(outs).contiguous(), torch.cat(lses)


def _torch_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], out: Tensor,
                    lse: Tensor, geometry: _Geometry,
                    scale: float) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """PyTorch path backward: recompute the probabilities from ``lse``, then dQ, dK, dV, dRPB."""
    batch, *spatial, heads, _ = q.shape
    dtype = _compute_dtype(q.dtype)
    grad_rpb = None if rpb is None else torch.zeros(heads, math.prod(rpb.shape[1:]), dtype=dtype, device=q.device)
    if q.numel() == 0:
        grads = [torch.zeros_like(q, memory_format=torch.contiguous_format) for _ in range(3)]
        return (*grads, None if rpb is None else grad_rpb.view(rpb.shape).to(rpb.dtype))
    plan, dtype, chunks = _setup(q, geometry, chunked=True)
    finite = _all_finite(grad_out, q, k, v, rpb)
    grads_q, grads_k, grads_v = [], [], []

    def scatter_keys(blocked: Tensor) -> Tensor:
        b, _, _, _, d = blocked.shape
        flat = blocked.new_zeros(b, heads, math.prod(spatial) + 1, d)
        flat.index_add_(2, plan.key_index, blocked.view(b, heads, -1, d))
        return _heads_last(flat[:, :, :-1].view(b, heads, *spatial, d)).to(q.dtype)

    with torch.autocast(q.device.type, enabled=False):
        bias = _bias(plan, rpb, dtype)
        window = None if finite else _occupied_windows(plan, q)
        pattern = None if finite else window.to(dtype)
        pattern_t = None if finite else pattern.transpose(-1, -2)
        for b0, b1 in chunks:
            qb = _gather(q[b0:b1], plan.query_index, plan, dtype).mul_(scale)
            kb = _gather(k[b0:b1], plan.key_index, plan, dtype)
            vb = _gather(v[b0:b1], plan.key_index, plan, dtype)
            dob = _gather(grad_out[b0:b1], plan.query_index, plan, dtype)
            # per-query lse and delta = rowsum(dO * O); empty slots get 0 (their dO is 0)
            rows = torch.stack([lse[b0:b1].to(dtype).permute(0, 2, 3, 4, 1),
                                (grad_out[b0:b1].to(dtype) * out[b0:b1].to(dtype)).sum(-1)], dim=-1)
            lse_b, delta_b = _gather(rows, plan.query_index, plan, dtype).unbind(-1)
            probs = torch.matmul(qb, kb.transpose(-1, -2)).add_(bias).sub_(lse_b.unsqueeze(-1)).exp_()
            if not finite:  # exp(-inf - nan) is nan: outside the windows probs are exactly 0
                probs = torch.where(window, probs, 0)
            grads_v.append(scatter_keys(_local_matmul(probs.transpose(-1, -2), dob, pattern_t)))
            grad_logits = torch.matmul(dob, vb.transpose(-1, -2)).sub_(delta_b.unsqueeze(-1)).mul_(probs)
            if not finite:  # 0 * nan is nan
                grad_logits = torch.where(window, grad_logits, 0)
            del probs, vb, dob
            grads_q.append(_heads_last(_unblock(_local_matmul(grad_logits, kb, pattern).mul_(scale), plan,
                                                spatial)).to(q.dtype))
            # qb holds the scale
            grads_k.append(scatter_keys(_local_matmul(grad_logits.transpose(-1, -2), qb, pattern_t)))
            if grad_rpb is not None:  # outside the windows grad_logits = 0
                grad_rpb.index_add_(1, plan.bias_index.view(-1), grad_logits.sum(0).view(heads, -1))
            del grad_logits, qb, kb
    if grad_rpb is not None:
        grad_rpb = grad_rpb.view(rpb.shape).to(rpb.dtype)
    return (torch.cat(grads_q).contiguous(), torch.cat(grads_k).contiguous(), torch.cat(grads_v).contiguous(),
            grad_rpb)


# ----------------------------------------------------------------------------------------------------
# 'triton': the fused N-D kernels (kernels/na.py), in the 3-D layout this module already uses.
# ----------------------------------------------------------------------------------------------------

def _triton_kernels():
    from visionattn.kernels import na as kernels  # lazy: visionattn imports without Triton
    return kernels


def _triton_forward(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], geometry: _Geometry,
                    scale: float) -> tuple[Tensor, Tensor]:
    return _triton_kernels().forward(q, k, v, rpb, *geometry, scale, triton_interpreted())


def _triton_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], out: Tensor,
                     lse: Tensor, geometry: _Geometry,
                     scale: float) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """The kernels recompute the softmax's delta from their own probabilities: ``out`` (the PyTorch path's
    delta source, same signature) is not read."""
    return _triton_kernels().backward(grad_out, q, k, v, rpb, lse, *geometry, scale, triton_interpreted())


# ----------------------------------------------------------------------------------------------------
# Custom ops ('torch' and 'triton') and autograd
# ----------------------------------------------------------------------------------------------------

@torch.library.custom_op('visionattn::na_forward', mutates_args=())
def _forward_op(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], kernel_size: list[int],
                dilation: list[int], stride: list[int], is_causal: list[bool], scale: float,
                backend: str) -> tuple[Tensor, Tensor]:
    geometry = _Geometry(tuple(kernel_size), tuple(dilation), tuple(stride), tuple(is_causal))
    if backend == 'triton':
        return _triton_forward(q, k, v, rpb, geometry, scale)
    return _torch_forward(q, k, v, rpb, geometry, scale)


@_forward_op.register_fake
def _(q, k, v, rpb, kernel_size, dilation, stride, is_causal, scale, backend):
    batch, x, y, z, heads, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((batch, heads, x, y, z), dtype=_compute_dtype(q.dtype))


@torch.library.custom_op('visionattn::na_backward', mutates_args=())
def _backward_op(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], out: Tensor,
                 lse: Tensor, kernel_size: list[int], dilation: list[int], stride: list[int],
                 is_causal: list[bool], scale: float, backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dQ, dK, dV and dRPB (an empty tensor when there is no rpb: op outputs cannot be None)."""
    geometry = _Geometry(tuple(kernel_size), tuple(dilation), tuple(stride), tuple(is_causal))
    backward = _triton_backward if backend == 'triton' else _torch_backward
    grad_q, grad_k, grad_v, grad_rpb = backward(grad_out, q, k, v, rpb, out, lse, geometry, scale)
    return grad_q, grad_k, grad_v, q.new_empty(0) if grad_rpb is None else grad_rpb


@_backward_op.register_fake
def _(grad_out, q, k, v, rpb, out, lse, kernel_size, dilation, stride, is_causal, scale, backend):
    grad_rpb = q.new_empty(0) if rpb is None else rpb.new_empty(rpb.shape)
    return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape), grad_rpb


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, rpb, *args = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, rpb, out, lse)
    ctx.args = args


def _backward(ctx, grad_out: Tensor, _grad_lse: Optional[Tensor]):
    # lse is an internal output of the op (the front-ends return only ``out``): no gradient flows into it.
    q, k, v, rpb, out, lse = ctx.saved_tensors
    grad_q, grad_k, grad_v, grad_rpb = torch.ops.visionattn.na_backward(grad_out, q, k, v, rpb, out, lse,
                                                                        *ctx.args)
    return grad_q, grad_k, grad_v, (grad_rpb if rpb is not None else None), None, None, None, None, None, None


torch.library.register_autograd('visionattn::na_forward', _backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.visionattn.na_forward)
def _forward_flops(q_shape, k_shape, v_shape, rpb_shape, kernel_size, dilation, stride, is_causal, scale,
                   backend, *, out_shape=None) -> int:
    """FlopCounterMode's count of useful FLOPs: QK^T and AV over each query's window (fewer keys near
    the start of a causal axis), 2 FLOPs per multiply-add."""
    batch, *spatial, heads, head_dim = q_shape
    keys = math.prod(_axis_key_count(*args) for args in zip(spatial, kernel_size, dilation, stride, is_causal))
    return 4 * batch * heads * keys * head_dim


@register_flop_formula(torch.ops.visionattn.na_backward)
def _backward_flops(grad_shape, q_shape, k_shape, v_shape, rpb_shape, saved_out_shape, lse_shape, kernel_size,
                    dilation, stride, is_causal, scale, backend, *, out_shape=None) -> int:
    """Recomputed QK^T plus dV, dP, dQ and dK: 2.5x the forward."""
    forward = _forward_flops(q_shape, k_shape, v_shape, rpb_shape, kernel_size, dilation, stride, is_causal,
                             scale, backend)
    return 5 * forward // 2


# ----------------------------------------------------------------------------------------------------
# 'reference': the explicit per-query formulation
# ----------------------------------------------------------------------------------------------------

def _axis_windows(length: int, kernel: int, dilation: int, stride: int, causal: bool,
                  device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """For every position of one axis and every tap ``t < k`` of its window: the key's map position,
    whether the tap exists (a causal window may be shorter than k) and its rpb index; all (L, k)."""
    pos = torch.arange(length, device=device)
    group, ip = pos % dilation, pos // dilation
    group_len = (length - group + dilation - 1) // dilation
    start, end = _window_bounds(ip, group_len, kernel, stride, causal)
    kp = start[:, None] + torch.arange(kernel, device=device)
    valid = kp < end[:, None]
    key = torch.where(valid, kp * dilation + group[:, None], pos[:, None])  # missing taps: any key in the map
    return key, valid, (kp - ip[:, None] + kernel - 1).clamp(0, 2 * kernel - 2)


def _reference_forward(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], geometry: _Geometry,
                       scale: float) -> Tensor:
    """The 'reference' backend on the 3-D layout: every query gathers the keys and values of its own window
    (``window_taps = k_x * k_y * k_z``), adds the bias, takes a softmax over the taps and sums the values.

    Missing taps (short causal windows) are removed by selection, never by multiplying with a zero
    probability, so a non-finite key or value reaches exactly the queries whose window holds it.
    Computes in float32 for half inputs (float64 for float64); autograd gives every gradient."""
    batch, *spatial, heads, head_dim = q.shape
    dtype = _compute_dtype(q.dtype)
    axes = [_axis_windows(length, *params, q.device) for length, *params in zip(spatial, *geometry)]
    key = _flat_positions([a[0] for a in axes], spatial).view(-1, math.prod(geometry.kernel))  # (N, taps)
    valid = functools.reduce(torch.logical_and, _spread([a[1] for a in axes])).reshape(key.shape)
    with torch.autocast(q.device.type, enabled=False):
        qf, kf, vf = (t.reshape(batch, key.shape[0], heads, head_dim).to(dtype) for t in (q, k, v))
        keys = torch.where(valid[:, :, None, None], kf[:, key], 0)     # (B, N, taps, heads, D)
        values = torch.where(valid[:, :, None, None], vf[:, key], 0)
        logits = torch.einsum('bnhd,bnthd->bnht', qf * scale, keys)
        if rpb is not None:
            widths = [2 * kk - 1 for kk in geometry.kernel]
            spread = _spread([a[2] for a in axes])
            index = functools.reduce(lambda acc, bw: acc * bw[1] + bw[0], zip(spread[1:], widths[1:]), spread[0])
            table = rpb.to(dtype).flatten(1)[:, index.reshape(key.shape)]  # (heads, N, taps)
            logits = logits + table.permute(1, 0, 2)
        logits = torch.where(valid[:, None, :], logits, -math.inf)
        out = torch.einsum('bnht,bnthd->bnhd', logits.softmax(-1), values)
    return out.to(q.dtype).reshape(q.shape)


# ----------------------------------------------------------------------------------------------------
# 'flex': torch.nn.attention.flex_attention with a block mask from the window rule
# ----------------------------------------------------------------------------------------------------

def _flex_mask_mod(spatial: Sequence[int], geometry: _Geometry) -> Callable:
    """FlexAttention ``mask_mod``: key ``kv_idx`` is in the window of query ``q_idx`` (flat map indices)."""
    def coords(index: Tensor) -> list[Tensor]:
        return [(index // math.prod(spatial[axis + 1:])) % spatial[axis] for axis in range(3)]

    def mask_mod(b, h, q_idx, kv_idx):
        inside = None
        for length, kernel, dil, stride, causal, qc, kc in zip(spatial, *geometry, coords(q_idx), coords(kv_idx)):
            group = qc % dil
            start, end = _window_bounds(qc // dil, (length - group + dil - 1) // dil, kernel, stride, causal)
            kp = kc // dil
            axis = (kc % dil == group) & (kp >= start) & (kp < end)
            inside = axis if inside is None else inside & axis
        return inside

    return mask_mod


def _flex_score_mod(spatial: Sequence[int], geometry: _Geometry, rpb: Tensor) -> Callable:
    """FlexAttention ``score_mod`` adding ``rpb[h, kp - ip + k - 1 per axis]`` (stride 1, no causal axis)."""
    table = rpb.float()

    def score_mod(score, b, h, q_idx, kv_idx):
        index = []
        for axis, (kernel, dil) in enumerate(zip(geometry.kernel, geometry.dilation)):
            inner = math.prod(spatial[axis + 1:])
            qc, kc = (q_idx // inner) % spatial[axis], (kv_idx // inner) % spatial[axis]
            index.append((kc // dil - qc // dil + kernel - 1).clamp(0, 2 * kernel - 2))
        return score + table[h, index[0], index[1], index[2]]

    return score_mod


_BLOCK_MASKS = _ShapeCache(32)


@functools.cache
def _compiled_flex_attention() -> Callable:
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def _flex_block_mask(spatial: tuple[int, ...], geometry: _Geometry, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask
    tokens = math.prod(spatial)

    def build():
        return create_block_mask(_flex_mask_mod(spatial, geometry), None, None, tokens, tokens, device=device)

    return _BLOCK_MASKS.get((spatial, geometry, device), build,
                           lambda mask: [t for t in mask.as_tuple() if isinstance(t, Tensor)])


class _NoBackward(torch.autograd.Function):
    """Runs ``run`` on detached inputs; a backward through the result raises (FlexAttention on CPU has
    no backward), naming what to do instead of failing in a compiler stack trace or silently."""

    @staticmethod
    def forward(ctx, run, *inputs):
        return run(*(t.detach() if t is not None else None for t in inputs))

    @staticmethod
    def backward(ctx, *grads):
        raise UnsupportedBackendError("attention backend 'flex' has no backward on CPU (FlexAttention runs "
                                      "only the forward there); train with backend='torch' (or 'auto'), or "
                                      "run the flex forward under torch.no_grad()")


def _flex_forward(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], geometry: _Geometry,
                  scale: float) -> Tensor:
    """The 'flex' backend on the 3-D layout. Calls with an input that is not finite run on the PyTorch
    path instead (one device sync for the check; a graph break under torch.compile): FlexAttention sums
    each block's keys with ``0 * inf = nan`` and would spread a NaN far outside its windows. Empty
    inputs (batch or heads 0), which FlexAttention cannot launch, run on the reference."""
    batch, *spatial, heads, head_dim = q.shape
    if q.numel() == 0:
        return _reference_forward(q, k, v, rpb, geometry, scale)
    if not _all_finite(q, k, v, rpb):
        return torch.ops.visionattn.na_forward(q, k, v, rpb, *map(list, geometry), scale, 'torch')[0]
    block_mask = _flex_block_mask(tuple(spatial), geometry, q.device)

    def run(q, k, v, rpb):
        qf, kf, vf = (t.reshape(batch, math.prod(spatial), heads, head_dim).transpose(1, 2) for t in (q, k, v))
        score_mod = None if rpb is None else _flex_score_mod(spatial, geometry, rpb)
        out = _compiled_flex_attention()(qf, kf, vf, score_mod=score_mod, block_mask=block_mask, scale=scale)
        return out.transpose(1, 2).reshape(q.shape)

    if q.device.type == 'cpu':  # always without autograd there, so that one compiled graph serves every call
        return _NoBackward.apply(run, q, k, v, rpb)
    return run(q, k, v, rpb)
