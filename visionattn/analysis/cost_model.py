"""Tile-level cost model of the attention kernels: what each one computes against what the attention needs,
and the bytes it moves, reasoned from the tiling alone (issue 17; the GNA paper argues tile choices with
such a simulator). Why our own: no library models these kernels' tilings.

For one problem (map shape, kernel, dilation, stride, causal axes, heads, head_dim, dtype) it counts:

- **useful FLOPs**: 4 * batch * heads * head_dim * (sum over queries of the keys in their window), the
  forward's QK^T and PV (the ops' registered FLOP formula); a backward is 2.5x that.
- **computed FLOPs**: what the kernel's dots compute, every lane of every block included (idle lanes,
  keys outside a window, head_dim padded to the block's power of two): 2 FLOPs per multiply-add, 2 dots
  per (query block, key block) in the forward, 3 in the dQ kernel, 4 in the dK/dV kernel (Triton NA);
  FlexAttention: 2 forward, 5 backward per non-empty block pair.
- **visited pairs**: (query, key) pairs of real positions a program's walk covers (no idle lanes): the
  tiling's own waste, apart from the padding of blocks to powers of two.
- **bytes**: global-memory traffic if no cache helps: every load a program issues for real positions
  (a key box walked by many tiles is read by each) and every store; small tables (RPB, block masks) are
  left out.

The kernels modelled, each from its own tiling rules:

- :func:`na_triton_cost`: ``visionattn.kernels.na`` (forward, dQ and dK/dV kernels) for one
  :class:`~visionattn.kernels.na.TileConfig`. A program's box of keys (or of queries, dK/dV) is the
  product of per-axis boxes, and the programs are the product of per-axis tiles (every dilation group),
  so every count is a product over axes of per-axis sums, exact and fast at any size.
- :func:`na_flex_cost`: FlexAttention with the 'flex' backend's block mask (the window rule on the
  row-major flattened map, ``block`` tokens per block, 128 by default): a (query block, key block) pair
  is computed whole when any query of the one has a key of the other in its window.
- :func:`bra_triton_cost`, :func:`bra_gather_cost`, :func:`bra_flex_cost`: routing attention's Triton
  kernels (query tiles walk the ``topk * tokens`` routed keys as one sequence), upstream's gather (a
  ``topk``-times copy of K and V, then dense matmuls: no wasted FLOPs, many bytes) and FlexAttention with
  one region per block (regions padded to at least 16 slots).

:func:`prune_tiles` is how the Triton NA kernels' autotuning space is cut before it reaches the
autotuner (``kernels/na.py``); :func:`attention_layers` lists the attention layers of a model at its
input size; :func:`layer_table` and :func:`targets_table` are what ``tools/cost_model.py`` prints.
"""
from __future__ import annotations

import bisect
import functools
import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import torch

__all__ = ['Cost', 'NAProblem', 'BRAProblem', 'na_useful_pairs', 'na_triton_cost', 'na_flex_cost',
           'na_flex_blocks', 'bra_triton_cost', 'bra_gather_cost', 'bra_flex_cost', 'prune_tiles',
           'PRUNE_SLACK', 'attention_layers', 'layer_table', 'targets_table']

KERNEL_NAMES = ('forward', 'dq', 'dkdv')
_DOTS = {'forward': 2, 'dq': 5, 'dkdv': 4}  # dots per (query block, key block) of the Triton NA kernels (dQ: a
# first pass QK^T, dO V^T for delta, then QK^T, dO V^T, dS K)
FLEX_BLOCK = 128                             # FlexAttention's default block size (the 'flex' backend's)
PRUNE_SLACK = 1.5                            # see prune_tiles


@dataclass(frozen=True)
class Cost:
    """One kernel's counts for one problem (whole batch, all heads)."""

    useful_flops: float
    computed_flops: float
    visited_pairs: float   # (query, key) pairs of real positions the walk covers
    useful_pairs: float    # (query, key) pairs in a window
    bytes: float
    programs: int = 0

    @property
    def ratio(self) -> float:
        """Computed over useful FLOPs (1.0: nothing wasted)."""
        return self.computed_flops / self.useful_flops if self.useful_flops else math.inf

    @property
    def visited_ratio(self) -> float:
        """Visited over useful pairs: the tiling's waste without the padding of blocks to powers of two."""
        return self.visited_pairs / self.useful_pairs if self.useful_pairs else math.inf

    def __add__(self, other: 'Cost') -> 'Cost':
        return Cost(*(getattr(self, f) + getattr(other, f) for f in
                      ('useful_flops', 'computed_flops', 'visited_pairs', 'useful_pairs', 'bytes', 'programs')))


@dataclass(frozen=True)
class NAProblem:
    """A neighbourhood-attention call in the kernels' 3-D form (1-D/2-D: unit leading axes)."""

    shape: tuple[int, int, int]
    kernel_size: tuple[int, int, int]
    dilation: tuple[int, int, int] = (1, 1, 1)
    stride: tuple[int, int, int] = (1, 1, 1)
    is_causal: tuple[bool, bool, bool] = (False, False, False)
    batch: int = 1
    heads: int = 1
    head_dim: int = 32
    dtype: torch.dtype = torch.float16

    @classmethod
    def of(cls, shape: Sequence[int], kernel_size, dilation=1, stride=1, is_causal=False, **kwargs) -> 'NAProblem':
        """From an n-D call's arguments (one value or one per axis), padded to 3 axes."""
        rank = len(shape)

        def axes(value, unit):
            values = tuple(value) if isinstance(value, Sequence) else (value,) * rank
            return (unit,) * (3 - rank) + values

        return cls((1,) * (3 - rank) + tuple(shape), axes(kernel_size, 1), axes(dilation, 1), axes(stride, 1),
                   axes(is_causal, False), **kwargs)

    def kernel_problem(self):
        """The :class:`visionattn.kernels.na.Problem` (what the tile candidates depend on)."""
        from visionattn.kernels import na
        return na.Problem(self.shape, self.kernel_size, self.dilation, self.stride, self.is_causal, self.head_dim,
                          self.dtype)

    def axes(self):
        return zip(self.shape, self.kernel_size, self.dilation, self.stride, self.is_causal)


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def _block_dim(head_dim: int) -> int:
    """head_dim padded as the Triton kernels (and FlexAttention's) blocks pad it: a power of two, >= 16."""
    return max(16, 1 << (head_dim - 1).bit_length())


# ----------------------------------------------------------------------------------------------------
# Neighbourhood attention: windows and the Triton kernels' walk, per axis
# ----------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _group_windows(group_len: int, kernel: int, stride: int, causal: bool) -> tuple[tuple[int, int], ...]:
    from visionattn.kernels.na import window_bounds
    return tuple(window_bounds(i, group_len, kernel, stride, causal) for i in range(group_len))


def _groups(length: int, dilation: int) -> list[int]:
    """Lengths of the dilation groups of an axis."""
    return [(length - g + dilation - 1) // dilation for g in range(dilation)]


@functools.lru_cache(maxsize=4096)
def _axis_useful(length: int, kernel: int, dilation: int, stride: int, causal: bool) -> int:
    """Keys summed over the windows of the positions of one axis."""
    return sum(end - start for g in _groups(length, dilation)
               for start, end in _group_windows(g, kernel, stride, causal))


def na_useful_pairs(problem: NAProblem) -> int:
    """(query, key) pairs in a window, per batch element and head."""
    return math.prod(_axis_useful(*axis) for axis in problem.axes())


@dataclass(frozen=True)
class _AxisWalk:
    """Sums over one axis's tiles (every dilation group) of what a program's walk sees along the axis."""
    tiles: int
    owned: int      # positions owned (queries in the forward/dQ kernels, keys in dK/dV)
    chunks: int     # chunks of the walked box
    box: int        # positions of the walked box (all real)
    owned_box: int  # owned x box, summed (visited pairs along this axis)


@functools.lru_cache(maxsize=4096)
def _axis_walk(length: int, kernel: int, dilation: int, stride: int, causal: bool, tile: int, chunk: int,
               kind: str) -> _AxisWalk:
    """One axis of the Triton kernels' walk (``kernels/na.py``: ``_tile_origin``, ``_query_tile``,
    ``_query_range``): tiles of ``tile`` lanes own ``step`` positions (whole stride groups); 'forward'
    walks the keys of the owned queries' windows, 'dkdv' the queries whose windows hold an owned key, in
    chunks of ``chunk`` lanes. Every dilation group has as many tiles as the longest one."""
    from visionattn.kernels.na import _step
    step = _step(tile, stride)
    per_group = -(-(-(-length // dilation)) // step)
    tiles = owned = chunks = box = owned_box = 0
    for group_len in _groups(length, dilation):
        windows = _group_windows(group_len, kernel, stride, causal)
        starts, ends = [w[0] for w in windows], [w[1] for w in windows]
        for first in range(0, per_group * step, step):
            last = min(first + step, group_len) - 1
            tiles += 1
            if last < first:  # a shorter group's extra tile: nothing owned, an empty box
                continue
            if kind == 'forward':
                extent = windows[last][1] - windows[first][0]  # windows are monotone
            else:  # windows with start <= last and end > first: a run of queries (starts and ends are sorted)
                extent = max(0, bisect.bisect_right(starts, last) - bisect.bisect_right(ends, first))
            n = last - first + 1
            owned += n
            box += extent
            chunks += -(-extent // chunk)
            owned_box += n * extent
    return _AxisWalk(tiles, owned, chunks, box, owned_box)


def na_triton_cost(problem: NAProblem, config, kernel: str = 'forward') -> Cost:
    """Cost of one Triton NA kernel ('forward', 'dq' or 'dkdv') run with ``config`` (a
    :class:`~visionattn.kernels.na.TileConfig`: query and key blocks; the tile is the query block in the
    forward and dQ kernels, the key block in the dK/dV kernel)."""
    if kernel not in KERNEL_NAMES:
        raise ValueError(f'kernel must be one of {KERNEL_NAMES}, got {kernel!r}')
    kind = 'dkdv' if kernel == 'dkdv' else 'forward'
    tile, chunk = (config.key, config.query) if kind == 'dkdv' else (config.query, config.key)
    walks = [_axis_walk(*axis, t, c, kind) for axis, t, c in zip(problem.axes(), tile, chunk)]
    heads = problem.batch * problem.heads
    block_d, size = _block_dim(problem.head_dim), _element_size(problem.dtype)
    useful = na_useful_pairs(problem)
    lane_pairs = math.prod(tile) * math.prod(chunk) * math.prod(w.chunks for w in walks)
    owned, box = math.prod(w.owned for w in walks), math.prod(w.box for w in walks)
    row = problem.head_dim * size
    if kernel == 'forward':   # q, out and lse per owned query; K and V per box key
        moved = owned * (2 * row + 4) + box * 2 * row
    elif kernel == 'dq':      # q, dO, lse, delta, dQ per owned query; K and V per box key, in both passes
        moved = owned * (3 * row + 8) + box * 4 * row
    else:                     # K, V, dK, dV per owned key; q, dO, lse, delta per box query
        moved = owned * 4 * row + box * (2 * row + 8)
    useful_flops = (4 if kernel == 'forward' else 5) * problem.head_dim * useful * heads  # bwd kernels: 2.5x fwd
    return Cost(useful_flops, 2 * _DOTS[kernel] * block_d * lane_pairs * heads,
                math.prod(w.owned_box for w in walks) * heads, useful * heads, moved * heads,
                math.prod(w.tiles for w in walks) * heads)


def na_triton_training_cost(problem: NAProblem, configs: dict[str, Any]) -> Cost:
    """Forward + dQ + dK/dV with one config per kernel (``configs[name]``)."""
    return sum((na_triton_cost(problem, configs[name], name) for name in KERNEL_NAMES[1:]),
               na_triton_cost(problem, configs['forward'], 'forward'))


# ----------------------------------------------------------------------------------------------------
# Pruning the autotuning space
# ----------------------------------------------------------------------------------------------------

def prune_tiles(problem, kernel: str, candidates: Sequence) -> list:
    """The candidates worth autotuning: those whose computed FLOPs and bytes are both within
    :data:`PRUNE_SLACK` of the best candidate's (each measure's best may be another candidate).

    ``problem`` is a :class:`visionattn.kernels.na.Problem` (batch and heads scale every candidate alike,
    so they do not matter). The cost model cannot rank launch options (num_warps, num_stages) or what a
    GPU overlaps, so it only drops what is far worse on one measure; when no candidate is within the
    slack of both bests (a trade-off between a small tile's few wasted FLOPs and a big tile's few
    re-read bytes), those with the smallest worse-of-the-two excess stay. Order is kept."""
    if len(candidates) <= 1:
        return list(candidates)
    model = NAProblem(problem.shape, problem.kernel_size, problem.dilation, problem.stride, problem.is_causal,
                      head_dim=problem.head_dim, dtype=problem.dtype)
    costs = [na_triton_cost(model, config, kernel) for config in candidates]
    best_flops = min(c.computed_flops for c in costs)
    best_bytes = min(c.bytes for c in costs)
    excess = [max(c.computed_flops / best_flops, c.bytes / best_bytes) for c in costs]
    kept = [config for config, e in zip(candidates, excess) if e <= PRUNE_SLACK]
    return kept or [config for config, e in zip(candidates, excess) if e == min(excess)]


# ----------------------------------------------------------------------------------------------------
# FlexAttention's block mask on the row-major flattened map
# ----------------------------------------------------------------------------------------------------

def _axis_window_table(length: int, kernel: int, dilation: int, stride: int, causal: bool):
    """Per position of one axis: the map positions of its window's keys (padded with -1), (length, kernel)."""
    from visionattn.ops.na import _axis_windows  # the ops' window rule, on tensors
    key, valid, _ = _axis_windows(length, kernel, dilation, stride, causal, torch.device('cpu'))
    return torch.where(valid, key, -1)


def na_flex_blocks(problem: NAProblem, block: int = FLEX_BLOCK) -> int:
    """Non-empty (query block, key block) pairs of FlexAttention's block mask, per batch element and head.

    Built from the window rule directly (each query's window keys, flattened row-major, mapped to their
    blocks), not through ``create_block_mask``, so it stays cheap at any map size."""
    (lx, ly, lz) = problem.shape
    tables = [_axis_window_table(*axis) for axis in problem.axes()]
    tokens = lx * ly * lz
    pairs: set = set()
    qy, qz = torch.meshgrid(torch.arange(ly), torch.arange(lz), indexing='ij')
    for x in range(lx):  # one plane of queries at a time: (ly * lz) x (kx * ky * kz) keys
        kx, ky, kz = tables[0][x], tables[1][qy.reshape(-1)], tables[2][qz.reshape(-1)]
        flat = ((kx[None, :, None, None] * ly + ky[:, None, :, None]) * lz + kz[:, None, None, :])
        valid = (kx[None, :, None, None] >= 0) & (ky[:, None, :, None] >= 0) & (kz[:, None, None, :] >= 0)
        query = (x * ly * lz + torch.arange(ly * lz))[:, None, None, None].expand(flat.shape)
        code = (query[valid] // block) * tokens + flat[valid] // block
        pairs.update(torch.unique(code).tolist())
    return len(pairs)


def na_flex_cost(problem: NAProblem, block: int = FLEX_BLOCK, kernel: str = 'forward') -> Cost:
    """FlexAttention ('forward', or 'backward': 5 dots per pair) with the 'flex' backend's block mask."""
    tokens = math.prod(problem.shape)
    heads = problem.batch * problem.heads
    pairs = na_flex_blocks(problem, block)
    q_blocks = -(-tokens // block)
    block_d, row = _block_dim(problem.head_dim), problem.head_dim * _element_size(problem.dtype)
    useful = na_useful_pairs(problem)
    key_rows = pairs * block  # K and V rows loaded (the last, partial block counted whole: an upper bound)
    if kernel == 'forward':
        dots, useful_flops, moved = 2, 4 * problem.head_dim * useful, tokens * (2 * row + 4) + key_rows * 2 * row
    elif kernel == 'backward':  # per pair Q, dO, lse, delta re-read; per token K, V, dK, dV, dQ once
        dots, useful_flops = 5, 10 * problem.head_dim * useful
        moved = tokens * 5 * row + key_rows * (2 * row + 8)
    else:
        raise ValueError(f"kernel must be 'forward' or 'backward', got {kernel!r}")
    return Cost(useful_flops * heads, 2 * dots * block_d * pairs * block * block * heads,
                pairs * block * block * heads, useful * heads, moved * heads, q_blocks * heads)


# ----------------------------------------------------------------------------------------------------
# Routing attention: the Triton kernels, upstream's gather, FlexAttention with one region per block
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BRAProblem:
    """Routed token attention on a ``height x width`` map of ``grid x grid`` regions, ``topk`` routed each."""

    height: int
    width: int
    grid: tuple[int, int]
    topk: int
    batch: int = 1
    heads: int = 1
    head_dim: int = 32
    head_dim_v: int = 32
    dtype: torch.dtype = torch.float16

    @property
    def regions(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def tokens(self) -> int:
        """Tokens per region."""
        return (self.height // self.grid[0]) * (self.width // self.grid[1])

    def useful_flops(self) -> float:
        """Forward QK^T and PV over the routed keys, per batch element and head."""
        return 2 * self.regions * self.tokens * self.topk * self.tokens * (self.head_dim + self.head_dim_v)


def bra_triton_cost(problem: BRAProblem, kernel: str = 'forward',
                    routed_per_region: Optional[Sequence[int]] = None) -> Cost:
    """The routing kernels' blocks (``kernels/bra.py``: ``_Config``): query tiles of a region walk its
    ``topk * tokens`` routed keys as one sequence; the dK/dV kernel's key tiles walk the queries of every
    region routed to theirs (``routed_per_region[r]`` query regions; default ``topk`` each, balanced).
    The backward's useful FLOPs (2.5x the forward's) are split evenly between the dQ and dK/dV kernels."""
    from visionattn.kernels.bra import _Config
    q = torch.empty(1, problem.height, problem.width, 1, problem.head_dim, device='meta')
    v = torch.empty(1, problem.height, problem.width, 1, problem.head_dim_v, device='meta')
    cfg = _Config(q, v, *problem.grid, False, False)
    tokens, topk, regions = problem.tokens, problem.topk, problem.regions
    routed = list(routed_per_region) if routed_per_region is not None else [topk] * regions
    heads = problem.batch * problem.heads
    size = _element_size(problem.dtype)
    qrow, vrow = problem.head_dim * size, problem.head_dim_v * size
    q_tiles = -(-tokens // cfg.block_region)
    useful_pairs = regions * tokens * topk * tokens
    if kernel in ('forward', 'dq'):
        lanes = regions * q_tiles * cfg.block_region * -(-topk * tokens // cfg.block_flat) * cfg.block_flat
        keys = regions * q_tiles * topk * tokens  # each query tile reads all routed keys
        if kernel == 'forward':  # QK^T, PV
            moved = regions * tokens * (qrow + vrow + 4) + keys * (qrow + vrow)
            flops, useful_flops = 2 * (cfg.block_d + cfg.block_dv) * lanes, problem.useful_flops()
        else:  # a first pass QK^T, dO V^T for delta = rowsum(dP * P), then QK^T, dO V^T, dS K
            moved = regions * tokens * (2 * qrow + vrow + 8) + 2 * keys * (qrow + vrow)
            flops = 2 * (3 * cfg.block_d + 2 * cfg.block_dv) * lanes
            useful_flops = problem.useful_flops() * 5 / 4
        programs = regions * q_tiles
    elif kernel == 'dkdv':
        k_tiles = -(-tokens // cfg.block_region)
        lanes = sum(k_tiles * cfg.block_region * -(-n * tokens // cfg.block_flat) * cfg.block_flat for n in routed)
        queries = sum(k_tiles * n * tokens for n in routed)
        moved = regions * tokens * 2 * (qrow + vrow) + queries * (qrow + vrow + 8)
        flops = 4 * (cfg.block_d + cfg.block_dv) * lanes  # QK^T, dP = dO V^T, dV += P^T dO, dK += dS^T Q
        useful_flops, programs = problem.useful_flops() * 5 / 4, regions * k_tiles
    else:
        raise ValueError(f'kernel must be one of {KERNEL_NAMES}, got {kernel!r}')
    return Cost(useful_flops * heads, flops * heads, useful_pairs * heads, useful_pairs * heads, moved * heads,
                programs * heads)


def bra_gather_cost(problem: BRAProblem) -> Cost:
    """Upstream's gather (the 'reference' backend), forward: ``index_select`` writes a ``topk``-times copy of
    the routed K and V, QK^T writes the logits, softmax reads and writes them, PV reads them and the copy.
    Dense matmuls over exactly the routed keys: no wasted FLOPs."""
    regions, tokens, topk = problem.regions, problem.tokens, problem.topk
    size = _element_size(problem.dtype)
    copy_k, copy_v = (regions * topk * tokens * d * size for d in (problem.head_dim, problem.head_dim_v))
    logits = regions * tokens * topk * tokens * size
    n = regions * tokens
    moved = (2 * (copy_k + copy_v)                             # gather: read the routed rows, write the copy
             + n * problem.head_dim * size + copy_k + logits   # QK^T: q, the copied K, the logits
             + 2 * logits                                      # softmax
             + logits + copy_v + n * problem.head_dim_v * size)  # PV
    heads = problem.batch * problem.heads
    pairs = regions * tokens * topk * tokens
    return Cost(problem.useful_flops() * heads, problem.useful_flops() * heads, pairs * heads, pairs * heads,
                moved * heads, 0)


def bra_flex_cost(problem: BRAProblem) -> Cost:
    """The 'flex' backend of routing attention: regions padded to ``slots`` (a power of two >= 16) and one
    block per region, so the block mask is the routing; the padded copies of q, k, v are written and read."""
    from visionattn.ops.routing import _flex_slots
    slots = _flex_slots(problem.tokens)
    regions, topk = problem.regions, problem.topk
    size = _element_size(problem.dtype)
    qrow, vrow = problem.head_dim * size, problem.head_dim_v * size
    padded = regions * slots
    moved = (problem.height * problem.width * (2 * qrow + vrow) + padded * (2 * qrow + vrow)  # the padded copies
             + padded * (qrow + 2 * vrow + 4) + regions * topk * slots * (qrow + vrow))    # the kernel
    heads = problem.batch * problem.heads
    pairs = regions * topk * slots * slots
    useful_pairs = regions * problem.tokens * topk * problem.tokens
    flops = 2 * pairs * (_block_dim(problem.head_dim) + _block_dim(problem.head_dim_v))
    return Cost(problem.useful_flops() * heads, flops * heads, pairs * heads, useful_pairs * heads, moved * heads,
                regions * heads)


# ----------------------------------------------------------------------------------------------------
# The attention layers of a model, and the printed tables
# ----------------------------------------------------------------------------------------------------

def attention_layers(model_name: str, img_size: Optional[int] = None) -> list[tuple[Any, int]]:
    """The distinct attention calls of one forward pass of timm model ``model_name`` at batch 1, with how
    many layers make each: ``(NAProblem or BRAProblem, count)`` in order of first call. Runs on the meta
    device (the ops' fake implementations), so it computes nothing."""
    import timm
    from torch.utils._python_dispatch import TorchDispatchMode

    import visionattn  # noqa: F401  (registers the models)

    calls: Counter = Counter()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func._overloadpacket)
            if name == 'visionattn.na_forward':
                q, _, _, rpb, kernel, dilation, stride, causal = args[:8]
                calls[NAProblem(tuple(q.shape[1:4]), tuple(kernel), tuple(dilation), tuple(stride),
                                tuple(causal), 1, q.shape[4], q.shape[5], torch.float16)] += 1
            elif name == 'visionattn.bra_attention_forward':
                q, _, v, index, _, grid_h, grid_w = args[:7]
                calls[BRAProblem(q.shape[1], q.shape[2], (grid_h, grid_w), index.shape[-1], 1, q.shape[3],
                                 q.shape[4], v.shape[-1], torch.float16)] += 1
            return func(*args, **(kwargs or {}))

    cfg = timm.models.get_pretrained_cfg(model_name)
    size = (img_size, img_size) if img_size else tuple(cfg.input_size[1:])
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False).eval()
    with torch.no_grad(), Record():
        model(torch.zeros(1, 3, *size, device='meta'))
    return list(calls.items())


def _tile_name(config) -> str:
    def axes(block):
        return 'x'.join(str(b) for b in block if b > 1) or '1'
    return f'{axes(config.query)}/{axes(config.key)}'


def _na_candidates(problem: NAProblem) -> dict[str, tuple[list, list]]:
    """Per kernel: (every candidate, the pruned candidates)."""
    from visionattn.kernels import na
    kernel_problem = problem.kernel_problem()
    out = {}
    for name in KERNEL_NAMES:
        candidates = na.tile_candidates(kernel_problem, 'dkdv' if name == 'dkdv' else 'forward')
        out[name] = (candidates, prune_tiles(kernel_problem, name, candidates))
    return out


def _best(problem: NAProblem, configs: Sequence, name: str) -> tuple[Any, Cost]:
    """The config with the fewest computed FLOPs (ties: fewest bytes) and its cost."""
    costs = [(na_triton_cost(problem, c, name), c) for c in configs]
    cost, config = min(costs, key=lambda cc: (cc[0].computed_flops, cc[0].bytes))
    return config, cost


def _fmt(value: float, spec: str = '.2f') -> str:
    return format(value, spec)


def layer_table(model_names: Sequence[str], batch: int = 1) -> str:
    """Markdown tables, per attention layer of each model at its default input size (counts per image at
    ``batch`` 1, fp16): the Triton kernels' candidates (all and pruned) against FlexAttention's 128-token
    block mask, and for routing attention the Triton kernels against the gather and FlexAttention."""
    na_lines = ['| model | layers | map | heads | kernel | dil | useful fwd GFLOP | Triton fwd tile/chunk (fewest '
                'computed) | computed/useful fwd | visited/useful fwd | fwd MB | kept / candidates (fwd, dq, dkdv) '
                '| kept worst computed/useful fwd | fwd+bwd computed/useful | Flex 128 computed/useful | '
                'Flex fwd MB |', '|' + '---|' * 16]
    bra_lines = ['| model | layers | map | heads | grid | topk | tokens/region | useful fwd GFLOP | Triton fwd '
                 'computed/useful | Triton fwd MB | gather fwd MB | Flex computed/useful | Flex fwd MB | '
                 'Triton fwd+bwd computed/useful |', '|' + '---|' * 14]
    for model_name in model_names:
        for problem, count in attention_layers(model_name):
            problem = replace(problem, batch=batch)
            if isinstance(problem, NAProblem):
                candidates = _na_candidates(problem)
                config, fwd = _best(problem, candidates['forward'][1], 'forward')
                worst = max(na_triton_cost(problem, c, 'forward').ratio for c in candidates['forward'][1])
                training = na_triton_training_cost(problem, {name: _best(problem, kept, name)[0]
                                                             for name, (_, kept) in candidates.items()})
                flex = na_flex_cost(problem)
                kept = ', '.join(f'{len(k)}/{len(a)}' for a, k in candidates.values())
                na_lines.append(
                    f'| {model_name} | {count} | {problem.shape[1]}x{problem.shape[2]} | {problem.heads} | '
                    f'{problem.kernel_size[2]} | {problem.dilation[2]} | {_fmt(fwd.useful_flops / 1e9, ".3f")} | '
                    f'{_tile_name(config)} | {_fmt(fwd.ratio)} | {_fmt(fwd.visited_ratio)} | '
                    f'{_fmt(fwd.bytes / 1e6)} | {kept} | {_fmt(worst)} | {_fmt(training.ratio)} | '
                    f'{_fmt(flex.ratio)} | {_fmt(flex.bytes / 1e6)} |')
            else:
                fwd = bra_triton_cost(problem)
                training = fwd + bra_triton_cost(problem, 'dq') + bra_triton_cost(problem, 'dkdv')
                gather, flex = bra_gather_cost(problem), bra_flex_cost(problem)
                bra_lines.append(
                    f'| {model_name} | {count} | {problem.height}x{problem.width} | {problem.heads} | '
                    f'{problem.grid[0]}x{problem.grid[1]} | {problem.topk} | {problem.tokens} | '
                    f'{_fmt(fwd.useful_flops / 1e9, ".3f")} | {_fmt(fwd.ratio)} | {_fmt(fwd.bytes / 1e6)} | '
                    f'{_fmt(gather.bytes / 1e6)} | {_fmt(flex.ratio)} | {_fmt(flex.bytes / 1e6)} | '
                    f'{_fmt(training.ratio)} |')
    return '\n'.join(na_lines) + '\n\n' + '\n'.join(bra_lines)


def targets_table() -> str:
    """Issue 17's cost-model targets: NAT-T stage 1 (56x56, kernel 7) with the pruned candidates against
    FlexAttention's 128x128 blocks, and stride = kernel (blocked attention)."""
    lines = ['| problem | Triton fwd tile/chunk | computed/useful | visited/useful | Flex 128 computed/useful | '
             'target |', '|---|---|---|---|---|---|']
    stage1 = NAProblem.of((56, 56), 7, heads=2)
    flex = na_flex_cost(stage1).ratio
    kept = _na_candidates(stage1)['forward'][1]
    for config in dict.fromkeys(replace(c, num_warps=4, num_stages=2) for c in kept):  # tile shapes only
        cost = na_triton_cost(stage1, config)
        lines.append(f'| NAT-T stage 1, 56x56, k7 | {_tile_name(config)} | {_fmt(cost.ratio)} | '
                     f'{_fmt(cost.visited_ratio)} | {_fmt(flex)} | '
                     f'{"met" if cost.ratio <= flex else "MISSED"}: computed/useful <= Flex\'s |')
    for shape, kernel in (((56, 56), 7), ((64, 64), 8)):
        problem = NAProblem.of(shape, kernel, stride=kernel, heads=2)
        config, cost = _best(problem, _na_candidates(problem)['forward'][1], 'forward')
        met = cost.visited_ratio == 1.0 and (kernel & (kernel - 1) or cost.ratio == 1.0)
        lines.append(f'| stride = kernel, {shape[0]}x{shape[1]}, k{kernel} s{kernel} | {_tile_name(config)} | '
                     f'{_fmt(cost.ratio)} | {_fmt(cost.visited_ratio)} | {_fmt(na_flex_cost(problem).ratio)} | '
                     f'{"met" if met else "MISSED"}: visited/useful 1.0 (computed 1.0 where k is a power of 2) |')
    return '\n'.join(lines)
