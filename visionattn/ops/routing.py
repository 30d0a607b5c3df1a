"""Bi-level routing attention (BiFormer): the routing step and the routed token attention.

BiFormer splits the feature map into a ``grid_h x grid_w`` grid of regions, routes every query region
to the ``topk`` regions whose mean key is most similar to its mean query, and runs token attention of
the region's queries over the tokens of its ``topk`` routed regions. Upstream (rayleizhu/BiFormer
``ops/bra_legacy.py``) gathers a ``topk``-times copy of K and V for that; the ``'torch'`` and
``'triton'`` backends here never make that copy (the Triton kernels read the routed regions in place,
the PyTorch path gathers a bounded step at a time), so memory does not grow with ``topk``.

Layouts (channels last, heads split off the channels as ``channel = head * head_dim + i``, which is
upstream's ``(m c)`` split):

- ``q``, ``k``: ``(batch, height, width, heads, head_dim)``; ``v``: ``(batch, height, width, heads,
  head_dim_v)``. Views are fine (e.g. slices of one ``qkv`` projection); the last dim must be dense.
- Region ``r`` is the ``(r // grid_w, r % grid_w)`` cell of the grid (row-major, upstream's
  ``(j i)``), covering ``height // grid_h x width // grid_w`` tokens; regions may be any size from 1x1.
- ``region_index``: ``(batch, grid_h * grid_w, topk)`` integer, the routed regions of every query
  region, distinct within a row, shared by all heads (as upstream). :func:`bra_routing` makes it.
- ``key_mask`` / ``token_mask``: ``(batch or 1, height, width)`` bool, ``True`` for real tokens.
- Output: ``(batch, height, width, heads, head_dim_v)`` in the inputs' dtype.

Public functions:

- :func:`bra_routing`: region means, region affinity, top-k (no autograd, like upstream's default
  ``diff_routing=False``). PyTorch only, on purpose: it is one reading pass over q and k (region means),
  a ``regions x regions`` matmul (49 to a few hundred regions) and ``torch.topk``; a Triton kernel
  could only fuse the means, which are already a single memory-bound pass.
- :func:`bra_attention`: token attention of each query region over its routed regions (forward and
  backward), on the backend :mod:`.dispatch` picks (``backend=`` or :func:`~.dispatch.use_backend`):

  * ``'triton'``: the gather-free kernels of ``visionattn.kernels.bra`` (CUDA; CPU under
    ``TRITON_INTERPRET=1``).
  * ``'torch'``: the gather-free PyTorch path below (any device and dtype).
  * ``'reference'``: upstream's formulation written plainly: gather a ``topk``-times copy of the
    routed K and V, softmax, weighted sum, autograd through plain PyTorch ops. The ground truth of
    the tests, the baseline of the benchmarks and what ONNX export runs; memory grows with ``topk``.
  * ``'flex'``: ``torch.nn.attention.flex_attention`` (compiled) with a block mask made from
    ``region_index`` (see :func:`_flex_attention` for the layout and what it costs); forward and
    backward on CUDA, the forward alone on CPU, where a backward raises
    :class:`~visionattn.errors.UnsupportedBackendError` (FlexAttention's CPU kernel is inference-only).

  ``'torch'`` and ``'triton'`` are ``torch.library`` custom ops with fake implementations, so they
  work with autograd, ``torch.compile(fullgraph=True)`` and ``torch.export``; under autocast the
  inputs are cast to the autocast dtype (softmax and accumulation stay in float32).
- :func:`bi_level_routing_attention`: both steps with upstream's defaults (one scale for routing and
  attention, ``(heads * head_dim) ** -0.5``).
- :func:`bra_attention_reference`: ``bra_attention(..., backend='reference')`` under its old name,
  for callers outside the package that still use it.

Upstream facts reproduced: routing and token attention both use ``qk_dim ** -0.5`` with ``qk_dim`` the
full channel dim (``heads * head_dim``), not the head dim; the routing step averages q and k over each
region (all channels, all heads) and keeps the top-k regions by affinity; keys of the union are ordered
by routing rank, then row-major within a region (softmax does not depend on that order). Upstream's
``auto_pad`` zero-pads the feature map before the qkv projection and lets padded tokens take part in
routing and attention; pass ``token_mask`` to exclude them instead (masked region means, padded keys
never attended). A query whose routed keys are all masked gets a zero output and zero gradients.

Non-finite inputs stay where they belong, on every backend (the tests check each):

- Routing: a token whose q (k) holds a NaN or infinity is left out of its region's mean query (mean
  key), exactly as a ``token_mask``-ed token; a region without a finite key token is routed last, one
  without a finite query token routes as if its mean query were zero. A bad token therefore changes
  routing only as much as leaving it out of the means does. (Averaging it in would make every
  affinity of its region NaN, and ``torch.topk`` ranks NaN first: every query region of the map would
  be routed to it and turn NaN.)
- Attention: say query ``i`` *attends* key ``j`` when ``j`` lies in one of ``i``'s routed regions and
  ``key_mask`` keeps it. A NaN in ``q`` at ``(i, head)`` makes ``out`` at ``(i, head)`` NaN (if ``i``
  attends any key); a NaN in ``k`` or ``v`` at ``(j, head)`` makes ``out`` NaN at exactly the queries
  attending ``j`` (in that head). For a finite ``grad_out`` the gradients follow: ``dq`` is non-finite
  exactly at those queries, ``dk`` and ``dv`` exactly at the keys they attend (``dv = P^T dO`` stays
  finite when only values were non-finite). An infinity spreads to at most the same places (where
  the softmax arithmetic makes it non-finite, e.g. not through a ``-inf`` logit). Masked keys never
  matter, whatever they hold, and masking never makes a NaN from finite inputs.

Empty inputs (batch 0, zero heads) give empty outputs and empty gradients on every backend. No
backend syncs the host with the device: values of ``region_index`` (range, distinct rows) are
checked on CPU tensors only (on CUDA they are trusted, as :func:`bra_routing` makes them valid).

ONNX: during ``torch.onnx.export(..., dynamo=True)`` :func:`bra_attention` runs the ``'reference'``
formulation (gather, matmul, softmax), which lowers to standard ONNX operators, and
:func:`bra_routing`'s ``torch.topk`` lowers to ``TopK``; the custom ops have no ONNX lowering.

Building upstream's ``BiLevelRoutingAttention`` (``bra_legacy.py``, the released checkpoints) on these
ops, for an NHWC input ``x`` of ``C`` channels and ``n_win`` regions per side::

    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))                   # auto_pad: zeros at the right/bottom
    q, k, v = qkv(x).split([qk_dim, qk_dim, C], -1)            # the qkv Linear, views are fine
    q, k = (t.unflatten(-1, (heads, qk_dim // heads)) for t in (q, k))
    out = bi_level_routing_attention(q, k, v.unflatten(-1, (heads, C // heads)), n_win, topk,
                                     token_mask=None)          # 'upstream' padding mode
    out = wo(out.flatten(3) + lepe(v))[:, :H, :W]              # LePE on the (padded) V, then crop

The ``masked`` padding mode passes ``token_mask = (rows < H)[:, None] & (cols < W)`` (shape
``(1, H + pad_h, W + pad_w)``) instead: padded tokens then neither enter the region means nor serve as
keys. timm and the OpenMMLab packages have no routed attention, hence this module.

The PyTorch path works in steps whose working set stays within ``_STEP_BUDGET`` elements, whatever
``topk``: each step gathers (``index_select``, from the inputs' own layout) the tokens of a chunk of query
regions (or of one region's queries) and of a group of their routed regions, all ``topk`` when they fit, and
attends them with an online softmax across groups; the backward recomputes the scores from the saved
log-sum-exp (flash-attention style), writes dQ a tile at a time and adds dK and dV up with ``index_add_``.
Besides its results (in the backward also float32 dK, dV) it uses one step buffer, which on CPU is kept
per thread and dtype for the next call (its size follows the budget, not the input: 4.6-5.7 MiB for the
forward, 7.9-9.5 MiB with the backward at BiFormer-S's stages 1-3 in float32; :func:`release_step_buffers`
frees it). Gathering per step into a
kept buffer, instead of laying q, k, v out region by region in fresh tensors on every call, is what made
it fast on CPU: those copies cost more in page faults than the attention's arithmetic (BiFormer-S stage 2
forward, one thread: 13.3-14.0 ms -> 9.8-10.4 ms; ``benchmarks/kernels_cpu.md``).
"""
from __future__ import annotations

import functools
import math
import threading
import warnings
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.flop_counter import register_flop_formula

from ..errors import UnsupportedBackendError
from .dispatch import autocast_inputs, select_backend, triton_interpreted

__all__ = ['bra_routing', 'bra_attention', 'bi_level_routing_attention', 'bra_attention_reference',
           'release_step_buffers']

_STEP_BUDGET = 1 << 20  # elements of one step's working set in the PyTorch path (4 MiB in float32; module docstring)
_LOG2E, _LN2 = 1 / math.log(2), math.log(2)


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def _grid(region_grid: int | tuple[int, int], height: int, width: int) -> tuple[int, int]:
    grid_h, grid_w = (region_grid, region_grid) if isinstance(region_grid, int) else tuple(region_grid)
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f'region_grid must be positive, got {region_grid}')
    if height % grid_h or width % grid_w:
        raise ValueError(
            f'feature map {height}x{width} is not divisible by the region grid {grid_h}x{grid_w}: pad it '
            f'to a multiple of the grid first (BiFormer auto_pad), and pass a token_mask/key_mask if the '
            f'padded tokens must not take part')
    return grid_h, grid_w


def _check_qk(q: Tensor, k: Tensor) -> None:
    if q.dim() != 5 or k.shape != q.shape:
        raise ValueError('q and k must have the same shape (batch, height, width, heads, head_dim), got '
                         f'{tuple(q.shape)} and {tuple(k.shape)}')
    if k.dtype != q.dtype or not q.is_floating_point():
        raise TypeError(f'q and k must share one floating dtype, got {q.dtype} and {k.dtype}')
    if k.device != q.device:
        raise ValueError(f'q and k are on different devices ({q.device}, {k.device})')


def _check_mask(mask: Optional[Tensor], q: Tensor, name: str) -> None:
    if mask is None:
        return
    batch, height, width = q.shape[:3]
    if mask.dtype != torch.bool or mask.dim() != 3 or mask.shape[0] not in (1, batch) or \
            tuple(mask.shape[1:]) != (height, width):
        raise ValueError(f'{name} must be a bool tensor of shape ({batch} or 1, {height}, {width}) '
                         f'(True for real tokens), got {mask.dtype} {tuple(mask.shape)}')
    if mask.device != q.device:
        raise ValueError(f'{name} is on {mask.device} but q is on {q.device}')


def _tracing() -> bool:
    """True under torch.compile / torch.export / ONNX export, where tensor values are not at hand."""
    return torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def _check_attention_args(q: Tensor, k: Tensor, v: Tensor, region_index: Tensor,
                          region_grid: int | tuple[int, int], key_mask: Optional[Tensor]) -> tuple[int, int]:
    _check_qk(q, k)
    if v.dim() != 5 or v.shape[:4] != q.shape[:4]:
        raise ValueError(f'v must be (batch, height, width, heads, head_dim_v) with the first four dims of '
                         f'q {tuple(q.shape[:4])}, got {tuple(v.shape)}')
    if v.dtype != q.dtype or v.device != q.device:
        raise TypeError(f'v must have the dtype and device of q ({q.dtype}, {q.device}), got {v.dtype}, {v.device}')
    grid_h, grid_w = _grid(region_grid, q.shape[1], q.shape[2])
    regions = grid_h * grid_w
    if region_index.dim() != 3 or region_index.shape[:2] != (q.shape[0], regions) or \
            region_index.dtype not in (torch.int32, torch.int64):
        raise ValueError(f'region_index must be an int32/int64 tensor of shape (batch={q.shape[0]}, '
                         f'regions={regions}, topk), got {region_index.dtype} {tuple(region_index.shape)}')
    if not 1 <= region_index.shape[2] <= regions:
        raise ValueError(f'topk={region_index.shape[2]} must be between 1 and the number of regions ({regions})')
    if region_index.device != q.device:
        raise ValueError(f'region_index is on {region_index.device} but q is on {q.device}')
    # Checking the values costs a device sync on GPUs; bra_routing's indices are valid by construction.
    if region_index.device.type == 'cpu' and region_index.numel() and not _tracing():
        if int(region_index.min()) < 0 or int(region_index.max()) >= regions:
            raise ValueError(f'region_index holds values outside [0, {regions})')
        ranked = region_index.sort(dim=-1).values
        if bool((ranked[..., 1:] == ranked[..., :-1]).any()):
            raise ValueError('region_index routes a query region to the same region twice: the routed regions '
                             'of a query region must be distinct (as torch.topk / bra_routing make them)')
    _check_mask(key_mask, q, 'key_mask')
    return grid_h, grid_w


# ----------------------------------------------------------------------------------------------
# routing
# ----------------------------------------------------------------------------------------------
def _region_sums(x: Tensor, grid_h: int, grid_w: int) -> Tensor:
    """(B, H, W, C) -> (B, regions, C): the sum of every region."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, grid_h, height // grid_h, grid_w, width // grid_w, channels)
    return x.sum((2, 4)).reshape(batch, grid_h * grid_w, channels)


def _region_means(x: Tensor, token_mask: Optional[Tensor], grid_h: int, grid_w: int) -> tuple[Tensor, Tensor]:
    """Mean of ``x`` (B, H, W, C) over the finite, unmasked tokens of every region, and their count.

    A token with any non-finite channel (so a non-finite channel sum) is left out, see the module
    docstring; a region without such tokens gets a zero mean and count 0."""
    keep = torch.isfinite(x.sum(-1, keepdim=True, dtype=_accumulation_dtype(x.dtype)))
    if token_mask is not None:
        keep = keep & token_mask.unsqueeze(-1)
    count = _region_sums(keep.to(torch.float32), grid_h, grid_w)  # (B, regions, 1), exact up to 2**24 tokens
    sums = _region_sums(torch.where(keep, x, 0), grid_h, grid_w)
    return (sums / count.clamp(min=1)).to(x.dtype), count


def bra_routing(q: Tensor, k: Tensor, region_grid: int | tuple[int, int], topk: int,
                scale: float | None = None, token_mask: Tensor | None = None) -> Tensor:
    """The ``topk`` regions every query region attends to: ``(batch, regions, topk)`` int64.

    Region affinity is ``(mean_q * scale) @ mean_k^T`` over all channels of all heads, ``scale``
    defaulting to upstream's ``(heads * head_dim) ** -0.5``; ties are broken by ``torch.topk``. Means
    are taken over the real (``token_mask``) and finite tokens of each region; regions without any are
    routed to last. Runs without autograd (indices carry no gradient, as upstream's default).
    """
    _check_qk(q, k)
    batch, height, width, heads, head_dim = q.shape
    grid_h, grid_w = _grid(region_grid, height, width)
    regions = grid_h * grid_w
    if not 1 <= topk <= regions:
        raise ValueError(f'topk={topk} must be between 1 and the number of regions '
                         f'({grid_h}x{grid_w}={regions}); lower topk or use a finer region grid')
    _check_mask(token_mask, q, 'token_mask')
    scale = max(1, heads * head_dim) ** -0.5 if scale is None else scale
    with torch.no_grad():
        q_region, _ = _region_means(q.flatten(3), token_mask, grid_h, grid_w)
        k_region, k_count = _region_means(k.flatten(3), token_mask, grid_h, grid_w)
        affinity = (q_region * scale) @ k_region.transpose(-2, -1)  # (B, regions, regions)
        affinity = affinity.masked_fill(k_count.transpose(-2, -1) == 0, float('-inf'))
        return torch.topk(affinity, topk, dim=-1).indices


# ----------------------------------------------------------------------------------------------
# PyTorch path
# ----------------------------------------------------------------------------------------------
def _to_regions(x: Tensor, grid_h: int, grid_w: int) -> Tensor:
    """(B, H, W, *rest) -> (B * regions, tokens per region, *rest), regions and tokens row-major."""
    batch, height, width = x.shape[:3]
    rest = x.shape[3:]
    x = x.reshape(batch, grid_h, height // grid_h, grid_w, width // grid_w, *rest).transpose(2, 3)
    return x.reshape(batch * grid_h * grid_w, (height // grid_h) * (width // grid_w), *rest)


def _from_regions(x: Tensor, batch: int, grid_h: int, grid_w: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`_to_regions`."""
    rest = x.shape[2:]
    x = x.reshape(batch, grid_h, grid_w, height // grid_h, width // grid_w, *rest).transpose(2, 3)
    return x.reshape(batch, height, width, *rest)


def _mask_rows(key_mask: Optional[Tensor], batch: int, grid_h: int, grid_w: int) -> Optional[Tensor]:
    """``key_mask`` region-major: (B * regions, tokens per region), or None."""
    return None if key_mask is None else _to_regions(key_mask.expand(batch, -1, -1), grid_h, grid_w)


class _Plan:
    """How the PyTorch path tiles a problem into steps: rows (batch x query regions) x query tokens x a group
    of routed regions, each step's working set (scores, the gathered q, k, v and the output tile) within
    ``_STEP_BUDGET`` elements; every token is addressed by its row in the flattened ``(B * H * W, heads, c)``."""

    def __init__(self, q: Tensor, v: Tensor, region_index: Tensor, grid_h: int, grid_w: int) -> None:
        batch, height, width, heads, qk_dim = q.shape
        self.heads, self.qk_dim, self.v_dim = heads, qk_dim, v.shape[-1]
        self.tokens = (height // grid_h) * (width // grid_w)
        self.topk = region_index.shape[-1]
        grid = torch.arange(batch * height * width, device=q.device).view(batch, height, width)
        self.region_tokens = _to_regions(grid, grid_h, grid_w)  # (B * regions, tokens): their token rows
        self.rows = self.region_tokens.shape[0]
        offset = torch.arange(batch, device=q.device).view(batch, 1, 1) * (grid_h * grid_w)
        self.routed_rows = (region_index.long() + offset).reshape(self.rows, self.topk)
        # all routed regions with all of a region's queries if they fit, else fewer; then as many rows as fit
        self.group = next((g for g in range(self.topk, 0, -1)
                           if self._elements(self.tokens, g * self.tokens) <= _STEP_BUDGET), 1)
        keys = self.group * self.tokens
        self.query_chunk = next(
            (n for n in range(self.tokens, 0, -1) if self._elements(n, keys) <= _STEP_BUDGET), 1)
        self.row_chunk = max(1, _STEP_BUDGET // self._elements(self.query_chunk, keys))

    def _elements(self, queries: int, keys: int) -> int:
        """Working set of one row's step: scores, q and output tiles, gathered keys and values."""
        return max(1, self.heads) * (queries * keys + (queries + keys) * (self.qk_dim + self.v_dim))

    def tiles(self):
        """Steps' query tiles covering every query once: (rows slice, token rows (n regions, queries))."""
        for r0 in range(0, self.rows, self.row_chunk):
            for t0 in range(0, self.tokens, self.query_chunk):
                rows = slice(r0, r0 + self.row_chunk)
                yield rows, self.region_tokens[rows, t0:t0 + self.query_chunk]

    def groups(self, rows: slice):
        """Token rows of the routed regions of ``rows``, ``self.group`` regions at a time: (n * group * T,)."""
        for j0 in range(0, self.topk, self.group):
            yield self.region_tokens[self.routed_rows[rows, j0:j0 + self.group]].reshape(-1)

    def workspace(self, dtype: torch.dtype, device: torch.device, *names: str) -> dict[str, Tensor]:
        """A buffer per name, large enough for any step: ``q``/``dq``, ``k``/``dk``, ``v``/``dv``, ``out``,
        ``scores``, ``grads`` (dP) and ``rows`` (a tile token-major); sections of :func:`_step_buffer`."""
        queries = min(self.rows, self.row_chunk) * self.query_chunk * self.heads
        keys = min(self.rows, self.row_chunk) * self.group * self.tokens * self.heads
        scores = queries * self.group * self.tokens
        sizes = dict(q=queries * self.qk_dim, dq=queries * self.qk_dim, out=queries * self.v_dim,
                     k=keys * self.qk_dim, dk=keys * self.qk_dim, v=keys * self.v_dim, dv=keys * self.v_dim,
                     scores=scores, grads=scores, rows=keys * max(self.qk_dim, self.v_dim))
        total = sum(sizes[name] for name in names)
        flat = _step_buffer(total, dtype, device)[:total]
        return dict(zip(names, flat.split([sizes[name] for name in names])))


_step_buffers = threading.local()  # per thread: {dtype: flat CPU tensor}, see _step_buffer


def _step_buffer(numel: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A flat tensor of at least ``numel`` elements for one call's steps, which write into it with ``out=``
    and in-place ops. On CPU it is kept (per thread and dtype, grown to the largest call) and reused by the
    next call: a fresh one is page-faulted in anew whenever the allocator has handed the freed one back to
    the system, which depends on the process's allocation history (BiFormer-S stage 2 forward in the kernel
    benchmark: 16.9 ms with a buffer made per call, 9.6 ms with the kept one). On other devices the caching
    allocator already reuses memory."""
    if device.type != 'cpu':
        return torch.empty(numel, dtype=dtype, device=device)
    buffers = _step_buffers.__dict__.setdefault('by_dtype', {})
    if dtype not in buffers or buffers[dtype].numel() < numel:
        with torch.inference_mode(False):  # an inference tensor could not be written by a later normal call
            buffers[dtype] = torch.empty(numel, dtype=dtype)
    return buffers[dtype]


def release_step_buffers() -> None:
    """Free this thread's kept CPU step buffers of the PyTorch path (module docstring); the next call
    makes them anew."""
    _step_buffers.__dict__.pop('by_dtype', None)


def _take(buffer: Tensor, *shape: int) -> Tensor:
    """The start of a workspace buffer as a contiguous tensor of ``shape``."""
    return buffer[:math.prod(shape)].view(shape)


def _gather(x: Tensor, tokens: Tensor, buffer: Tensor) -> Tensor:
    """Token rows ``tokens`` of x (B * H * W, heads, c) into ``buffer``, in its dtype: (len(tokens), heads, c)."""
    out = _take(buffer, tokens.numel(), *x.shape[1:])
    if x.dtype == out.dtype:
        return torch.index_select(x, 0, tokens, out=out)
    return out.copy_(x.index_select(0, tokens))


def _per_head(x: Tensor, regions: int) -> Tensor:
    """A gathered tile (regions * L, heads, c) as the heads-first view (heads, regions, L, c), no copy."""
    return x.view(regions, x.shape[0] // regions, *x.shape[1:]).permute(2, 0, 1, 3)


def _token_major(x: Tensor, buffer: Tensor) -> Tensor:
    """A heads-first tile (heads, n, L, c) as contiguous token rows (n * L, heads, c) in ``buffer``:
    ``index_copy_`` and ``index_add_`` took a 6x slower path with the strided view as their source."""
    heads, regions, length, channels = x.shape
    rows = _take(buffer, regions, length, heads, channels).copy_(x.permute(1, 2, 0, 3))
    return rows.view(regions * length, heads, channels)


def _bmm_heads(a: Tensor, b: Tensor, out: Tensor, accumulate: bool = False) -> Tensor:
    """``out[i] (+)= a[i] @ b[i]`` for every head ``i`` of (heads, n, rows, cols) operands. One bmm per head
    reads the token-major tiles in place; folding the heads into one batch would copy every tile."""
    for a_i, b_i, out_i in zip(a, b, out):
        if accumulate:
            out_i.baddbmm_(a_i, b_i)
        else:
            torch.bmm(a_i, b_i, out=out_i)
    return out


def _key_tiles(kf: Tensor, vf: Tensor, key_valid: Optional[Tensor], keys: Tensor, regions: int,
               work: dict[str, Tensor]) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """A step's routed keys and values, heads first (heads, n, keys, c), and which keys the mask keeps
    ((1, n, 1, keys) or None). Masked keys are zeroed: one takes no part, so a NaN it holds must not
    reach any result through ``0 * NaN``."""
    k_tile, v_tile = _gather(kf, keys, work['k']), _gather(vf, keys, work['v'])
    valid = None
    if key_valid is not None:
        valid = key_valid.index_select(0, keys)
        k_tile.masked_fill_(~valid[:, None, None], 0)
        v_tile.masked_fill_(~valid[:, None, None], 0)
        valid = valid.view(1, regions, 1, -1)
    return _per_head(k_tile, regions), _per_head(v_tile, regions), valid


def _log2_scores(q_tile: Tensor, k_tile: Tensor, valid: Optional[Tensor], buffer: Tensor) -> Tensor:
    """Logits in base 2 (the queries carry ``scale * log2(e)``; ``exp2`` was 2.6x faster than ``exp`` on
    CPU) of (heads, n, queries, d) against (heads, n, keys, d), masked keys at -inf."""
    heads, regions, queries = q_tile.shape[:3]
    scores = _bmm_heads(q_tile, k_tile.transpose(-2, -1), _take(buffer, heads, regions, queries, k_tile.shape[2]))
    return scores if valid is None else scores.masked_fill_(~valid, float('-inf'))


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _token_rows(x: Tensor) -> Tensor:
    """(B, H, W, heads, c) -> (B * H * W, heads, c), a view for the usual layouts."""
    return x.reshape(math.prod(x.shape[:3]), *x.shape[3:])


def _key_valid(key_mask: Optional[Tensor], q: Tensor) -> Optional[Tensor]:
    return None if key_mask is None else key_mask.expand(*q.shape[:3]).reshape(-1)


def _torch_forward(q: Tensor, k: Tensor, v: Tensor, region_index: Tensor, key_mask: Optional[Tensor],
                   grid_h: int, grid_w: int, scale: float) -> tuple[Tensor, Tensor]:
    """Online softmax over groups of routed regions; returns the output and the log-sum-exp.

    A query with no key to attend has a zero output and log-sum-exp ``+inf``; one whose softmax sum is
    NaN (a non-finite input) keeps NaN in both, so that its backward is NaN as well."""
    acc = _accumulation_dtype(q.dtype)
    plan = _Plan(q, v, region_index, grid_h, grid_w)
    with torch.autocast(q.device.type, enabled=False):
        qf, kf, vf = _token_rows(q), _token_rows(k), _token_rows(v)
        key_valid = _key_valid(key_mask, q)
        out = torch.empty(vf.shape, dtype=q.dtype, device=q.device)
        lse = torch.empty(qf.shape[:2], dtype=acc, device=q.device)
        work = plan.workspace(acc, q.device, 'q', 'k', 'v', 'scores', 'out', 'rows')
        for rows, tile_tokens in plan.tiles():
            regions, query_tokens = tile_tokens.shape[0], tile_tokens.reshape(-1)
            q_tile = _per_head(_gather(qf, query_tokens, work['q']).mul_(scale * _LOG2E), regions)
            heads, _, chunk = q_tile.shape[:3]
            run_out = _take(work['out'], heads, regions, chunk, plan.v_dim)
            run_max = run_sum = None
            for keys in plan.groups(rows):
                k_tile, v_tile, valid = _key_tiles(kf, vf, key_valid, keys, regions, work)
                scores = _log2_scores(q_tile, k_tile, valid, work['scores'])
                step_max = scores.amax(-1) if run_max is None else torch.maximum(run_max, scores.amax(-1))
                shift = step_max.masked_fill(step_max == float('-inf'), 0)  # every key so far masked
                probs = scores.sub_(shift.unsqueeze(-1)).exp2_()
                if run_max is None:  # the first step: nothing to rescale
                    run_sum = probs.sum(-1)
                    _bmm_heads(probs, v_tile, run_out)
                else:
                    rescale = torch.exp2(run_max - shift)
                    run_sum = run_sum * rescale + probs.sum(-1)
                    _bmm_heads(probs, v_tile, run_out.mul_(rescale.unsqueeze(-1)), accumulate=True)
                run_max = step_max
            attended = run_sum != 0  # NaN counts as attended
            run_out.div_(torch.where(attended, run_sum, 1).unsqueeze(-1))
            out.index_copy_(0, query_tokens, _token_major(run_out, work['rows']).to(out.dtype))
            log2_sum = torch.where(attended, run_max + torch.log2(run_sum), float('inf'))
            lse.index_copy_(0, query_tokens, (log2_sum * _LN2).permute(1, 2, 0).reshape(query_tokens.numel(), heads))
    return out.view(*q.shape[:4], plan.v_dim), lse.view(q.shape[:4])


def _torch_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, region_index: Tensor,
                    key_mask: Optional[Tensor], lse: Tensor, grid_h: int, grid_w: int,
                    scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients by recomputing the attention of each key group from the saved log-sum-exp.

    The softmax's delta is rowsum(p * dP) / rowsum(p) over the recomputed p (as the Triton kernels), not
    rowsum(dO * O) from the saved output: in 16-bit dtypes that output is rounded, which a saturated softmax
    turned into gradient errors of 0.35 where ds = p * (dP - delta) must cancel. With a single key group
    (the usual case) its p and dP are kept from the delta pass; several groups are recomputed, so memory
    stays bounded. dQ of a tile is complete after its groups; dK and dV are added up over tiles."""
    acc = _accumulation_dtype(q.dtype)
    plan = _Plan(q, v, region_index, grid_h, grid_w)
    with torch.autocast(q.device.type, enabled=False):
        qf, kf, vf, gf = _token_rows(q), _token_rows(k), _token_rows(v), _token_rows(grad_out)
        log2_lse = _token_rows(lse.unsqueeze(-1)).squeeze(-1) * _LOG2E  # (B * H * W, heads)
        key_valid = _key_valid(key_mask, q)
        dq = torch.empty(qf.shape, dtype=q.dtype, device=q.device)
        dk = torch.zeros(kf.shape, dtype=acc, device=q.device)
        dv = torch.zeros(vf.shape, dtype=acc, device=q.device)
        work = plan.workspace(acc, q.device, 'q', 'k', 'v', 'out', 'scores', 'grads', 'dq', 'dk', 'dv', 'rows')
        for rows, tile_tokens in plan.tiles():
            regions, query_tokens = tile_tokens.shape[0], tile_tokens.reshape(-1)
            q_tile = _per_head(_gather(qf, query_tokens, work['q']).mul_(scale * _LOG2E), regions)
            g_tile = _per_head(_gather(gf, query_tokens, work['out']), regions)
            heads, _, chunk = q_tile.shape[:3]
            tile_lse = log2_lse.index_select(0, query_tokens).view(regions, chunk, heads).permute(2, 0, 1)

            def recompute(keys: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
                """The group's keys, values, probabilities p and dP = dO V^T."""
                k_tile, v_tile, valid = _key_tiles(kf, vf, key_valid, keys, regions, work)
                probs = _log2_scores(q_tile, k_tile, valid, work['scores']).sub_(tile_lse.unsqueeze(-1)).exp2_()
                grads = _bmm_heads(g_tile, v_tile.transpose(-2, -1), _take(work['grads'], *probs.shape))
                return k_tile, v_tile, probs, grads

            groups = list(plan.groups(rows))
            p_dp = p_sum = 0
            for keys in groups:
                _, _, probs, grads = step = recompute(keys)
                p_dp, p_sum = p_dp + (probs * grads).sum(-1), p_sum + probs.sum(-1)
            delta = (p_dp / torch.where(p_sum == 0, 1, p_sum)).unsqueeze(-1)  # no key attended: p = 0
            dq_tile = _take(work['dq'], *q_tile.shape)
            for i, keys in enumerate(groups):
                k_tile, _, probs, grads = step if len(groups) == 1 else recompute(keys)
                dscores = grads.sub_(delta).mul_(probs)
                dv_tile = _bmm_heads(probs.transpose(-2, -1), g_tile, _take(work['dv'], *k_tile.shape[:3], plan.v_dim))
                dk_tile = _bmm_heads(dscores.transpose(-2, -1), q_tile, _take(work['dk'], *k_tile.shape))
                dv.index_add_(0, keys, _token_major(dv_tile, work['rows']))
                dk.index_add_(0, keys, _token_major(dk_tile, work['rows']))
                _bmm_heads(dscores, k_tile, dq_tile, accumulate=i > 0)
            dq.index_copy_(0, query_tokens, _token_major(dq_tile.mul_(scale), work['rows']).to(dq.dtype))
        dk *= _LN2  # dK = dS^T (scale Q): the tiles' queries carry scale * log2(e)
        if key_valid is not None:  # masked keys take no part: zero gradients, even next to a NaN query
            dk.masked_fill_(~key_valid[:, None, None], 0)
            dv.masked_fill_(~key_valid[:, None, None], 0)
    return dq.view(q.shape), dk.to(k.dtype).view(k.shape), dv.to(v.dtype).view(v.shape)


# ----------------------------------------------------------------------------------------------
# custom ops
# ----------------------------------------------------------------------------------------------
@torch.library.custom_op('visionattn::bra_attention_forward', mutates_args=())
def _forward_op(q: Tensor, k: Tensor, v: Tensor, region_index: Tensor, key_mask: Optional[Tensor],
                grid_h: int, grid_w: int, scale: float, backend: str) -> tuple[Tensor, Tensor]:
    if backend == 'triton':
        from visionattn.kernels import bra as kernels
        return kernels.forward(q, k, v, region_index, key_mask, grid_h, grid_w, scale, triton_interpreted())
    return _torch_forward(q, k, v, region_index, key_mask, grid_h, grid_w, scale)


@_forward_op.register_fake
def _forward_fake(q, k, v, region_index, key_mask, grid_h, grid_w, scale, backend):
    out = q.new_empty(*q.shape[:4], v.shape[-1])
    return out, q.new_empty(q.shape[:4], dtype=_accumulation_dtype(q.dtype))


@torch.library.custom_op('visionattn::bra_attention_backward', mutates_args=())
def _backward_op(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, region_index: Tensor,
                 key_mask: Optional[Tensor], lse: Tensor, grid_h: int, grid_w: int, scale: float,
                 backend: str) -> tuple[Tensor, Tensor, Tensor]:
    if backend == 'triton':
        from visionattn.kernels import bra as kernels
        return kernels.backward(grad_out, q, k, v, region_index, key_mask, lse, grid_h, grid_w, scale,
                                triton_interpreted())
    return _torch_backward(grad_out, q, k, v, region_index, key_mask, lse, grid_h, grid_w, scale)


@_backward_op.register_fake
def _backward_fake(grad_out, q, k, v, region_index, key_mask, lse, grid_h, grid_w, scale, backend):
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape))


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, region_index, key_mask, grid_h, grid_w, scale, backend = inputs
    ctx.save_for_backward(q, k, v, region_index, key_mask, output[1])  # the log-sum-exp; not the output
    ctx.args = (grid_h, grid_w, scale, backend)


def _backward(ctx, grad_out: Tensor, grad_lse: Tensor):
    q, k, v, region_index, key_mask, lse = ctx.saved_tensors
    dq, dk, dv = _backward_op(grad_out, q, k, v, region_index, key_mask, lse, *ctx.args)
    return dq, dk, dv, None, None, None, None, None, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.visionattn.bra_attention_forward)
def _forward_flops(q_shape, k_shape, v_shape, index_shape, mask_shape, grid_h, grid_w, scale, backend, *,
                   out_shape=None) -> int:
    """FlopCounterMode's count: QK^T and AV over the topk routed regions, 2 FLOPs per multiply-add."""
    batch, height, width, heads, qk_dim = q_shape
    routed_keys = index_shape[-1] * (height // grid_h) * (width // grid_w)
    return 2 * batch * heads * height * width * routed_keys * (qk_dim + v_shape[-1])


@register_flop_formula(torch.ops.visionattn.bra_attention_backward)
def _backward_flops(grad_shape, q_shape, k_shape, v_shape, index_shape, mask_shape, lse_shape,
                    grid_h, grid_w, scale, backend, *, out_shape=None) -> int:
    """Recomputed QK^T plus dV, dP, dQ and dK: 2.5x the forward."""
    forward = _forward_flops(q_shape, k_shape, v_shape, index_shape, mask_shape, grid_h, grid_w, scale, backend)
    return 5 * forward // 2


# ----------------------------------------------------------------------------------------------
# 'reference' backend: upstream's gather
# ----------------------------------------------------------------------------------------------
def _gather_attention(q: Tensor, k: Tensor, v: Tensor, region_index: Tensor, key_mask: Optional[Tensor],
                      grid_h: int, grid_w: int, scale: float) -> Tensor:
    """Upstream's formulation: a ``topk``-times copy of the routed keys and values per query region,
    then softmax attention, in plain PyTorch ops (autograd, ONNX export). Masked keys are zeroed in
    the copy and their logits set to ``-inf``; a query with no key to attend gets zeros."""
    batch, height, width, heads = q.shape[:4]
    regions, topk = grid_h * grid_w, region_index.shape[-1]
    rows, tokens = batch * regions, (height // grid_h) * (width // grid_w)
    offset = torch.arange(batch, device=q.device).view(batch, 1, 1) * regions
    routed = (region_index.long() + offset).reshape(rows * topk)

    def gather(x: Tensor) -> Tensor:  # (rows, T, ...) -> (rows, topk * T, ...)
        return x.index_select(0, routed).reshape(rows, topk * tokens, *x.shape[2:])

    def heads_first(x: Tensor) -> Tensor:  # (rows, L, h, c) -> (rows, h, L, c)
        return x.transpose(1, 2)

    keys, values = gather(_to_regions(k, grid_h, grid_w)), gather(_to_regions(v, grid_h, grid_w))
    valid = None
    if key_mask is not None:
        valid = gather(_mask_rows(key_mask, batch, grid_h, grid_w))  # (rows, topk * T)
        keys = keys.masked_fill(~valid[..., None, None], 0)
        values = values.masked_fill(~valid[..., None, None], 0)
    logits = heads_first(_to_regions(q, grid_h, grid_w) * scale) @ heads_first(keys).transpose(-2, -1)
    if valid is not None:
        logits = logits.masked_fill(~valid[:, None, None, :], float('-inf'))
    probs = torch.softmax(logits, dim=-1)
    if valid is not None:  # a query without any key: softmax over nothing is NaN, the result is zero
        probs = probs.masked_fill(~valid.any(-1)[:, None, None, None], 0)
    out = heads_first(probs @ heads_first(values))  # (rows, T, h, c)
    return _from_regions(out, batch, grid_h, grid_w, height, width)


# ----------------------------------------------------------------------------------------------
# 'flex' backend: FlexAttention with a block mask from the routing
# ----------------------------------------------------------------------------------------------
def _flex_slots(tokens: int) -> int:
    """Sequence slots per region in the FlexAttention layout: a power of two, at least 16."""
    return max(16, 1 << (tokens - 1).bit_length())


def _to_flex_sequence(x: Tensor, grid_h: int, grid_w: int, slots: int) -> Tensor:
    """(B, H, W, h, c) -> (B, h, regions * slots, c): regions one after another, each zero-padded to
    ``slots`` tokens."""
    rows = _to_regions(x, grid_h, grid_w)
    rows = F.pad(rows, (0, 0, 0, 0, 0, slots - rows.shape[1]))
    return rows.reshape(x.shape[0], -1, *rows.shape[2:]).transpose(1, 2)


def _block_list(blocks: Tensor) -> tuple[Tensor, Tensor]:
    """(B, R, R) bool blocks of each row -> their number (B, 1, R) and indices first (B, 1, R, R), int32,
    the ordered form of ``BlockMask.from_kv_blocks``."""
    blocks = blocks.unsqueeze(1).to(torch.int32)
    indices = torch.argsort(blocks, dim=-1, descending=True, stable=True)
    return blocks.sum(-1).to(torch.int32), indices.to(torch.int32)


def _flex_block_mask(region_index: Tensor, key_valid: Tensor):
    """The BlockMask of the routing: one block per (query region, routed region) pair.

    ``key_valid`` (B, regions, slots) says which key slots hold a real, unmasked token; a routed region
    all of whose slots do is a full block (no mask_mod evaluated), any other a partial one."""
    from torch.nn.attention.flex_attention import BlockMask

    batch, regions, slots = key_valid.shape
    routed = torch.zeros(batch, regions, regions, dtype=torch.bool, device=region_index.device)
    routed.scatter_(2, region_index.long(), True)
    full = routed & key_valid.all(-1).unsqueeze(1)
    valid = key_valid.reshape(batch, regions * slots)

    def mask_mod(b, h, q_idx, kv_idx):
        return routed[b, q_idx // slots, kv_idx // slots] & valid[b, kv_idx]

    return BlockMask.from_kv_blocks(*_block_list(routed & ~full), *_block_list(full), BLOCK_SIZE=slots,
                                    mask_mod=mask_mod, seq_lengths=(regions * slots, regions * slots))


@functools.cache
def _compiled_flex_attention():
    """FlexAttention compiled once per process (uncompiled, it materialises every score)."""
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def _flex_forward(q: Tensor, k: Tensor, v: Tensor, region_index: Tensor, key_mask: Optional[Tensor],
                  grid_h: int, grid_w: int, scale: float) -> Tensor:
    if q.numel() == 0 or v.numel() == 0:  # nothing to attend (FlexAttention cannot launch empty grids)
        return _gather_attention(q, k, v, region_index, key_mask, grid_h, grid_w, scale)
    batch, height, width, heads = q.shape[:4]
    regions, tokens = grid_h * grid_w, (height // grid_h) * (width // grid_w)
    slots = _flex_slots(tokens)
    key_valid = torch.zeros(batch, regions, slots, dtype=torch.bool, device=q.device)
    mask_rows = _mask_rows(key_mask, batch, grid_h, grid_w)
    key_valid[..., :tokens] = True if mask_rows is None else mask_rows.view(batch, regions, tokens)
    q_seq, k_seq, v_seq = (_to_flex_sequence(x, grid_h, grid_w, slots) for x in (q, k, v))
    if key_mask is not None:  # a masked key takes no part, whatever it holds (FlexAttention computes 0 * v)
        keep = key_valid.view(batch, 1, regions * slots, 1)
        k_seq, v_seq = k_seq.masked_fill(~keep, 0), v_seq.masked_fill(~keep, 0)
    cpu = q.device.type == 'cpu'
    if cpu:  # the CPU kernel gives a NaN logit zero weight: carry a NaN key through its value (an infinite
        # key's logits are +-inf, which the kernel weighs as softmax does: no NaN where the reference has none)
        v_seq = v_seq.masked_fill(torch.isnan(k_seq).any(-1, keepdim=True), float('nan'))
    from torch.nn.attention.flex_attention import flex_attention
    attend = flex_attention if torch.compiler.is_compiling() else _compiled_flex_attention()
    out = attend(q_seq, k_seq, v_seq, block_mask=_flex_block_mask(region_index, key_valid), scale=scale)
    if cpu:  # ... and a query whose logits are all NaN a zero output: make it NaN if it attends any key
        attends = key_valid.any(-1).gather(1, region_index.long().flatten(1)).view(batch, regions, -1).any(-1)
        bad = ~torch.isfinite(q_seq).all(-1) & attends.repeat_interleave(slots, 1).unsqueeze(1)
        out = out.masked_fill(bad.unsqueeze(-1), float('nan'))
    out = out.transpose(1, 2).reshape(batch * regions, slots, heads, v.shape[-1])[:, :tokens]
    return _from_regions(out, batch, grid_h, grid_w, height, width)


class _FlexForwardOnly(torch.autograd.Function):
    """FlexAttention's compiled CPU kernel is inference-only: run it without autograd, fail on a backward."""

    @staticmethod
    def forward(ctx, q, k, v, region_index, key_mask, grid_h, grid_w, scale):
        return _flex_forward(q, k, v, region_index, key_mask, grid_h, grid_w, scale)

    @staticmethod
    def backward(ctx, grad_out):
        raise UnsupportedBackendError(
            "attention backend 'flex' cannot run the backward of bra on CPU: FlexAttention's CPU kernel is "
            "inference-only. Use backend='torch' (or 'auto') to train on CPU, or run 'flex' under torch.no_grad().")


def _flex_attention(q: Tensor, k: Tensor, v: Tensor, region_index: Tensor, key_mask: Optional[Tensor],
                    grid_h: int, grid_w: int, scale: float) -> Tensor:
    """Routed attention through ``torch.nn.attention.flex_attention``.

    Layout: the sequence holds the regions one after another, each padded to ``slots`` tokens
    (:func:`_flex_slots`: the next power of two, at least 16, FlexAttention's smallest tile), and the
    block size is ``slots``: every block is one region, so the block mask is the routing itself (query
    block ``r`` visits the key blocks ``region_index[b, r]``) and a kernel tile never pairs a query with
    a key it does not attend. That keeps non-finite values local: FlexAttention multiplies the zero
    probabilities of masked keys by their values, so a tile shared with an unrouted region would turn a
    NaN there into NaN outputs. Padding slots and ``key_mask``-ed keys are zeroed and masked by
    ``mask_mod`` (partial blocks); routed regions without either are full blocks. FlexAttention's CPU
    kernel (like PyTorch's other CPU attention kernels) gives a NaN logit zero weight, so a NaN in q
    or k would vanish there; on CPU (forward only) a NaN key therefore turns its value NaN and a
    non-finite query that attends any key its output (an infinite key is left to the kernel: turning
    its value NaN would also poison the queries whose logit with it is -inf, which softmax weighs 0). On CUDA
    the kernel's own arithmetic carries them.
    Under a ``torch.compile`` backend other than inductor, FlexAttention runs its dense reference
    (every score of the sequence, and no such locality).

    Cost at BiFormer's region sizes (224px, ``n_win=7``): 8x8 regions (stage 1, 64 tokens) and 4x4
    (stage 2, 16) fill their blocks, so the computed scores are the useful ones, but the tiles are
    64x64 and 16x16, far below the 128x128 FlexAttention is tuned for; 2x2 regions (stage 3, 4 tokens)
    pad to 16 slots, 16x the useful scores and 4x the memory of q, k, v. The default 128-token blocks
    would fill tiles but mix regions (computing unrouted pairs, up to dense attention at 196 tokens)
    and break the non-finite locality above. Building the mask costs a few ``(batch, regions,
    regions)`` tensors per call, no host sync. Tile-level costs: the cost model of issue 17.
    """
    if q.device.type == 'cpu' and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return _FlexForwardOnly.apply(q, k, v, region_index, key_mask, grid_h, grid_w, scale)
    return _flex_forward(q, k, v, region_index, key_mask, grid_h, grid_w, scale)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def bra_attention(q: Tensor, k: Tensor, v: Tensor, region_index: Tensor, region_grid: int | tuple[int, int],
                  scale: float | None = None, key_mask: Tensor | None = None,
                  backend: str | None = None) -> Tensor:
    """Token attention of every query region over the tokens of its routed regions.

    Args:
        q, k: ``(batch, height, width, heads, head_dim)``; v: ``(batch, height, width, heads, head_dim_v)``.
        region_index: ``(batch, regions, topk)`` routed regions of each query region (all heads),
            distinct within a row.
        region_grid: regions per side, ``n`` or ``(grid_h, grid_w)``; must divide the feature map.
        scale: logit scale, default ``head_dim ** -0.5`` (BiFormer uses ``(heads * head_dim) ** -0.5``).
        key_mask: ``(batch or 1, height, width)`` bool, False for tokens no query may attend.
        backend: ``'triton'``, ``'torch'``, ``'reference'``, ``'flex'``, ``'auto'`` or None (see the
            module docstring and :mod:`visionattn.ops.dispatch`). Ignored during ONNX export, which
            runs the ``'reference'`` formulation.

    Returns:
        ``(batch, height, width, heads, head_dim_v)`` in the dtype of q (the autocast dtype under autocast).
    """
    grid_h, grid_w = _check_attention_args(q, k, v, region_index, region_grid, key_mask)
    q, k, v = autocast_inputs(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if torch.onnx.is_in_onnx_export():
        return _gather_attention(q, k, v, region_index, key_mask, grid_h, grid_w, scale)
    name = select_backend('bra', backend, q, head_dim=max(q.shape[-1], v.shape[-1]))
    if name == 'reference':
        return _gather_attention(q, k, v, region_index, key_mask, grid_h, grid_w, scale)
    if name == 'flex':
        return _flex_attention(q, k, v, region_index, key_mask, grid_h, grid_w, scale)
    out, _ = _forward_op(q, k, v, region_index, key_mask, grid_h, grid_w, scale, name)
    return out


def bi_level_routing_attention(q: Tensor, k: Tensor, v: Tensor, region_grid: int | tuple[int, int], topk: int,
                               scale: float | None = None, token_mask: Tensor | None = None,
                               backend: str | None = None) -> Tensor:
    """BiFormer's bi-level routing attention: :func:`bra_routing`, then :func:`bra_attention`.

    One ``scale`` serves both steps, as upstream, defaulting to ``(heads * head_dim) ** -0.5``.
    ``token_mask`` (``(batch or 1, height, width)`` bool) excludes tokens from the routing means and
    from the attended keys (BiFormer's padding, masked); queries at masked positions still get outputs.
    """
    scale = max(1, q.shape[-2] * q.shape[-1]) ** -0.5 if scale is None else scale
    region_index = bra_routing(q, k, region_grid, topk, scale, token_mask)
    return bra_attention(q, k, v, region_index, region_grid, scale, token_mask, backend)


def bra_attention_reference(q: Tensor, k: Tensor, v: Tensor, region_index: Tensor,
                            region_grid: int | tuple[int, int], scale: float | None = None,
                            key_mask: Tensor | None = None) -> Tensor:
    """Deprecated: ``bra_attention(..., backend='reference')`` (upstream's gather formulation).

    Kept only while code outside the package still calls it by this name; select the backend instead.
    """
    warnings.warn("bra_attention_reference is deprecated: use bra_attention(..., backend='reference')",
                  DeprecationWarning, stacklevel=2)
    grid_h, grid_w = _check_attention_args(q, k, v, region_index, region_grid, key_mask)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _gather_attention(q, k, v, region_index, key_mask, grid_h, grid_w, scale)
