"""The tile-level cost model (visionattn.analysis.cost_model) against brute-force counts on small problems.

The Triton NA kernels' walk is re-enacted here program by program from the kernel source (``_tile_origin``,
``_query_tile``, ``_query_range``'s closed forms, the chunk loop), in 3-D, without the model's per-axis
factorisation; FlexAttention's non-empty blocks come from the actual block mask built on CPU.
"""
from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from visionattn.analysis import cost_model as cm
from visionattn.cli import cost_model as cli
from visionattn.ops.dispatch import triton_importable

pytestmark = pytest.mark.skipif(not triton_importable(), reason='Triton is not installed')

if triton_importable():
    from visionattn.kernels import na


# ---------------------------------------------------------------------------------------------
# The kernels' walk, program by program (a transcription of kernels/na.py)
# ---------------------------------------------------------------------------------------------

def window(pos, group_len, kernel, stride, causal):
    if causal:
        leader = min(pos // stride * stride + stride - 1, group_len - 1)
        return max(leader - kernel + 1, 0), pos + 1
    leader = min(pos // stride * stride + stride // 2, group_len - 1)
    start = min(max(leader - kernel // 2, 0), group_len - kernel)
    return start, start + kernel


def query_range(first_key, last_key, group_len, kernel, stride, causal):
    """``_query_range``'s closed form: queries [lo, hi] whose windows can hold a key of the range."""
    if causal:
        lo = first_key
        hi = min((last_key + kernel - stride) // stride * stride + stride - 1, group_len - 1)
    else:
        reach = first_key - kernel + 1
        lo = 0 if reach <= 0 else (max(reach, 1) + kernel // 2 - stride // 2 + stride - 1) // stride * stride
        hi = min((last_key + kernel // 2 - stride // 2) // stride * stride + stride - 1, group_len - 1)
    return lo, group_len - 1 if last_key >= group_len - kernel else hi


def programs(problem, tile):
    """Per program (as ``_tile_origin`` enumerates them): per axis (group, group length, first, step)."""
    per_axis = []
    for length, dil, stride, block in zip(problem.shape, problem.dilation, problem.stride, tile):
        step = block - block % stride if stride <= block else block
        per_group = -(-(-(-length // dil)) // step)
        per_axis.append([(g, (length - g + dil - 1) // dil, t * step, step) for g in range(dil)
                         for t in range(per_group)])
    return itertools.product(*per_axis)


def walk(problem, config, kernel):
    """Lane pairs the dots compute, real (owned, box) pairs, bytes, and how often each in-window
    (query, key) pair (map coordinates) is met inside a window, over one batch element and head."""
    kind = 'dkdv' if kernel == 'dkdv' else 'forward'
    tile, chunk = (config.key, config.query) if kind == 'dkdv' else (config.query, config.key)
    params = list(zip(problem.kernel_size, problem.stride, problem.is_causal, problem.dilation))
    row, lane_pairs, visited, moved, met = problem.head_dim * 2, 0, 0, 0, {}
    for program in programs(problem, tile):
        owned_axes, boxes = [], []
        for (group, group_len, first, step), (kernel_size, stride, causal, _) in zip(program, params):
            owned = [first + i for i in range(tile[len(owned_axes)]) if first + i < min(first + step, group_len)]
            owned_axes.append(owned)
            if not owned:
                boxes.append((0, 0))
            elif kind == 'forward':  # from the smallest start to the largest end of the owned queries' windows
                bounds = [window(p, group_len, kernel_size, stride, causal) for p in owned]
                boxes.append((min(b[0] for b in bounds), max(b[1] for b in bounds)))
            else:
                lo, hi = query_range(owned[0], owned[-1], group_len, kernel_size, stride, causal)
                boxes.append((lo, max(hi + 1, lo)))
        chunks = [range(lo, hi, c) for (lo, hi), c in zip(boxes, chunk)]
        n_owned = math.prod(len(o) for o in owned_axes)
        for starts in itertools.product(*chunks):
            lane_pairs += math.prod(tile) * math.prod(chunk)
            inside = [[p for p in range(s, s + c) if p < hi] for s, c, (_, hi) in zip(starts, chunk, boxes)]
            n_inside = math.prod(len(p) for p in inside)
            visited += n_owned * n_inside
            moved += n_inside * {'forward': 2 * row, 'dq': 4 * row, 'dkdv': 2 * row + 8}[kernel]  # dQ: two passes
            for own in itertools.product(*owned_axes):
                for other in itertools.product(*inside):
                    query, key = (own, other) if kind == 'forward' else (other, own)
                    in_window = True
                    for q_pos, k_pos, (group, group_len, _, _), (kernel_size, stride, causal, _) in zip(
                            query, key, program, params):
                        start, end = window(q_pos, group_len, kernel_size, stride, causal)
                        in_window &= start <= k_pos < end
                    if in_window:
                        where = tuple((p * d + g, k * d + g) for p, k, (g, *_), (*_, d) in zip(query, key, program,
                                                                                              params))
                        met[where] = met.get(where, 0) + 1
        moved += n_owned * {'forward': 2 * row + 4, 'dq': 3 * row + 8, 'dkdv': 4 * row}[kernel]
    return lane_pairs, visited, moved, met


def random_problem(rng: random.Random) -> 'cm.NAProblem':
    """1-3 active axes with kernel, dilation, stride and causal flags; at most 120 positions (the walk's
    pair enumeration is slow)."""
    while True:
        problem = _random_problem(rng)
        if math.prod(problem.shape) <= 120:
            return problem


def _random_problem(rng: random.Random) -> 'cm.NAProblem':
    axes = []
    for active in (rng.random() < 0.4, rng.random() < 0.8, True):
        if not active:
            axes.append((1, 1, 1, 1, False))
            continue
        kernel = rng.randint(2, 5)
        dil = rng.choice([1, 1, 2, 3])
        stride = rng.choice([1, rng.randint(1, kernel), kernel])
        axes.append((kernel * dil + rng.randint(0, 4), kernel, dil, stride, rng.random() < 0.3))
    shape, kernel, dil, stride, causal = (tuple(a) for a in zip(*axes))
    return cm.NAProblem(shape, kernel, dil, stride, causal, batch=1, heads=1, head_dim=8, dtype=torch.float16)


@pytest.mark.parametrize('seed', range(12))
def test_na_kernel_costs_match_a_walk_of_the_programs(seed):
    rng = random.Random(seed)
    problem = random_problem(rng)
    block = lambda: tuple(rng.choice([1, 2, 4, 8]) if n > 1 else 1 for n in problem.shape)  # noqa: E731
    config = na.TileConfig(block(), block())
    useful = cm.na_useful_pairs(problem)
    for kernel in cm.KERNEL_NAMES:
        cost = cm.na_triton_cost(problem, config, kernel)
        lane_pairs, visited, moved, met = walk(problem, config, kernel)
        context = f'{problem}, {config}, {kernel}'
        assert cost.computed_flops == 2 * cm._DOTS[kernel] * 16 * lane_pairs, context  # head_dim 8 -> 16 lanes
        assert cost.visited_pairs == visited and cost.bytes == moved, context
        # the walk meets every in-window pair exactly once: the useful count is the windows' size
        assert set(met.values()) <= {1} and len(met) == useful == cost.useful_pairs, context
        assert cost.useful_flops == (4 if kernel == 'forward' else 5) * 8 * useful


def test_flex_blocks_match_the_block_mask():
    """Non-empty blocks of the 'flex' backend's actual block mask (create_block_mask on CPU)."""
    from torch.nn.attention.flex_attention import create_block_mask

    import visionattn.ops.na as ops_na
    rng = random.Random(3)
    for block in (16, 32, 128):
        for _ in range(4):
            problem = random_problem(rng)
            geometry = ops_na._Geometry(problem.kernel_size, problem.dilation, problem.stride, problem.is_causal)
            tokens = math.prod(problem.shape)
            mask = create_block_mask(ops_na._flex_mask_mod(problem.shape, geometry), None, None, tokens, tokens,
                                     device='cpu', BLOCK_SIZE=block)
            blocks = int(mask.kv_num_blocks.sum()) + int(mask.full_kv_num_blocks.sum())
            assert cm.na_flex_blocks(problem, block) == blocks, (problem, block)


def test_routing_costs():
    """The routing kernels walk exactly the routed keys (in 16-lane and 64-lane blocks); the gather wastes
    no FLOP but copies K and V; FlexAttention's block mask holds one block per routed region."""
    from visionattn.ops.routing import _flex_block_mask
    stage3 = cm.BRAProblem(14, 14, (7, 7), 16, heads=8)  # BiFormer stage 3: 2x2 regions, 4 tokens
    forward = cm.bra_triton_cost(stage3)
    assert forward.ratio == pytest.approx(4.0)  # a region's 4 queries in a 16-lane tile; 64 keys in one block
    assert cm.bra_gather_cost(stage3).ratio == 1.0 and cm.bra_flex_cost(stage3).ratio == pytest.approx(16.0)
    assert cm.bra_gather_cost(stage3).bytes > 2 * forward.bytes
    stage1 = cm.BRAProblem(56, 56, (7, 7), 1, heads=2)
    assert cm.bra_triton_cost(stage1).ratio == 1.0 and cm.bra_flex_cost(stage1).ratio == 1.0
    # dK/dV walks the queries of the regions routed to each key region
    index = torch.tensor([[[0, 1], [0, 2], [0, 1], [3, 0]]])
    routed = torch.bincount(index.flatten(), minlength=4).tolist()  # [4, 2, 1, 1]
    small = cm.BRAProblem(4, 8, (2, 2), 2, head_dim=8, head_dim_v=8)  # 8 tokens: 16-lane tiles, 64-lane chunks
    assert cm.bra_triton_cost(small, 'dkdv', routed).computed_flops == 4 * 32 * sum(
        16 * math.ceil(n * 8 / 64) * 64 for n in routed)
    # the flex block mask: one (query region, routed region) block each
    key_valid = torch.ones(1, 4, 16, dtype=torch.bool)
    mask = _flex_block_mask(index, key_valid)
    assert int(mask.kv_num_blocks.sum() + mask.full_kv_num_blocks.sum()) == 4 * 2
    assert cm.bra_flex_cost(small).computed_flops == 2 * 8 * 16 * 16 * (16 + 16)


def test_pruning_keeps_the_candidates_near_the_best():
    problem = na.Problem((1, 56, 56), (1, 7, 7), (1, 1, 1), (1, 1, 1), (False,) * 3, 32, torch.float16)
    for name in cm.KERNEL_NAMES:
        candidates = na.tile_candidates(problem, 'dkdv' if name == 'dkdv' else 'forward')
        kept = cm.prune_tiles(problem, name, candidates)
        assert kept and set(kept) <= set(candidates) and na.tuning_candidates(problem, name) == tuple(kept)
        model = cm.NAProblem(problem.shape, problem.kernel_size)
        costs = {c: cm.na_triton_cost(model, c, name) for c in candidates}
        best_flops = min(c.computed_flops for c in costs.values())
        best_bytes = min(c.bytes for c in costs.values())
        for config, cost in costs.items():
            near = cost.computed_flops <= cm.PRUNE_SLACK * best_flops and cost.bytes <= cm.PRUNE_SLACK * best_bytes
            assert (config in kept) == near, (name, config)
    # at NAT-T stage 1 the 16-lane tiles re-read too many keys: 6 of 10 forward candidates stay
    assert len(na.tuning_candidates(problem, 'forward')) == 6
    assert cm.prune_tiles(problem, 'forward', candidates[:1]) == candidates[:1]


def test_targets():
    """Issue 17: at NAT-T stage 1 every kept tile computes no more per useful FLOP than FlexAttention's
    128x128 block mask; stride = kernel visits only window pairs (and computes only them for k = 8)."""
    stage1 = cm.NAProblem.of((56, 56), 7, heads=2)
    flex = cm.na_flex_cost(stage1).ratio
    for config in na.tuning_candidates(stage1.kernel_problem(), 'forward'):
        assert cm.na_triton_cost(stage1, config).ratio <= flex
    blocked = cm.NAProblem.of((64, 64), 8, stride=8)
    best = min(cm.na_triton_cost(blocked, c).ratio for c in na.tuning_candidates(blocked.kernel_problem(), 'forward'))
    assert best == 1.0
    assert 'MISSED' not in cm.targets_table()


def test_layers_of_a_model_and_the_program(tmp_path, capsys):
    layers = cm.attention_layers('dinat_mini')
    assert [(p.shape[1:], p.heads, p.dilation[1], n) for p, n in layers][:3] == [
        ((56, 56), 2, 1, 2), ((56, 56), 2, 8, 1), ((28, 28), 4, 1, 2)]
    out = tmp_path / 'cost.md'
    cli.main(['--models', 'biformer_tiny', '--out', str(out)])
    printed = capsys.readouterr().out
    assert 'python tools/cost_model.py --models biformer_tiny' in printed
    assert '| biformer_tiny | 8 | 14x14 | 8 | 7x7 | 16 | 4 |' in out.read_text()
