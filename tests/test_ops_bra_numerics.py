"""Routing attention numerics and edge inputs (issue 19): a NaN stays where it belongs, batch 0 works.

Property tests over random shapes, routings, masks and positions of one non-finite entry, on the
'torch', interpreted 'triton' and 'reference' backends ('flex' in test_ops_bra_flex.py), against the
rules of the visionattn.ops.routing docstring, computed here from the routing alone.
"""
from __future__ import annotations

import random

import pytest
import timm
import torch

from visionattn.layers import BiLevelRoutingAttention
from visionattn.ops import bi_level_routing_attention, bra_attention, bra_routing, use_backend

BACKENDS = ['torch', 'triton', 'reference']


def token_regions(height: int, width: int, grid: tuple[int, int]) -> torch.Tensor:
    """The region of every token, tokens row-major: (height * width,)."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    return ((y // (height // grid[0])) * grid[1] + x // (width // grid[1])).flatten()


def attends(index: torch.Tensor, key_mask, height: int, width: int, grid: tuple[int, int]) -> torch.Tensor:
    """(batch, tokens, tokens) bool: query token i attends key token j (routed there, not masked)."""
    batch, regions, _ = index.shape
    routed = torch.zeros(batch, regions, regions, dtype=torch.bool).scatter_(2, index, True)
    region = token_regions(height, width, grid)
    relation = routed[:, region][:, :, region]
    if key_mask is not None:
        relation = relation & key_mask.expand(batch, -1, -1).flatten(1)[:, None, :]
    return relation


def nonfinite(t: torch.Tensor) -> torch.Tensor:
    """(batch, height, width, heads, c) -> (batch, tokens, heads): any channel non-finite."""
    return (~torch.isfinite(t)).any(-1).flatten(1, 2)


def expected_nonfinite(relation: torch.Tensor, where: str, b: int, token: int, head: int, heads: int):
    """Where one non-finite entry of q/k/v at (b, token, head) must show: (out and dq, dk, dv)."""
    batch, tokens, _ = relation.shape
    queries = torch.zeros(batch, tokens, heads, dtype=torch.bool)
    if where == 'q':
        queries[b, token, head] = relation[b, token].any()
    else:
        queries[b, :, head] = relation[b, :, token]
    keys = (relation.transpose(1, 2).float() @ queries.float()) > 0  # keys attended by an affected query
    return queries, keys, keys if where != 'v' else torch.zeros_like(keys)


def random_case(seed: int) -> dict:
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    grid = rng.choice([(2, 2), (1, 3), (3, 2), (2, 1)])
    region = (rng.randint(1, 2), rng.randint(1, 3))
    batch, heads = rng.randint(1, 2), 2
    height, width = grid[0] * region[0], grid[1] * region[1]
    regions = grid[0] * grid[1]
    topk = rng.randint(1, regions - 1)
    index = torch.stack([torch.randperm(regions, generator=gen)[:topk] for _ in range(batch * regions)])
    mask = None
    if rng.random() < 0.5:
        mask = torch.rand(rng.choice([1, batch]), height, width, generator=gen) > 0.3
        mask[0, :region[0], :region[1]] = False  # region 0 without keys: some queries attend nothing
    return dict(shape=(batch, height, width, heads), dims=(4, rng.choice([4, 3])), grid=grid,
                index=index.view(batch, regions, topk), mask=mask, where='qkv'[seed % 3],
                value=[float('nan'), float('inf'), float('-inf')][seed // 3 % 3],
                at=(rng.randrange(batch), rng.randrange(height), rng.randrange(width), rng.randrange(heads)),
                channel=rng.randrange(3), gen=gen)


def run(case: dict, backend: str, bad_value=None):
    """Forward and (dq, dk, dv) for a random finite grad_out, with ``bad_value`` put at case['at']."""
    batch, height, width, heads = case['shape']
    gen = case['gen']
    q, k = (torch.randn(*case['shape'], case['dims'][0], generator=gen) for _ in range(2))
    v = torch.randn(*case['shape'], case['dims'][1], generator=gen)
    if bad_value is not None:
        {'q': q, 'k': k, 'v': v}[case['where']][case['at']][case['channel']] = bad_value
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = bra_attention(q, k, v, case['index'], case['grid'], key_mask=case['mask'], backend=backend)
    grads = torch.autograd.grad(out, (q, k, v), torch.randn(out.shape, generator=gen))
    return out, *grads


@pytest.mark.filterwarnings('ignore:invalid value encountered:RuntimeWarning')  # numpy, under Triton's interpreter
@pytest.mark.parametrize('backend,seed', [(b, s) for b in ('torch', 'reference') for s in range(12)] +
                         [('triton', s) for s in range(6)])
def test_one_non_finite_entry_reaches_exactly_the_queries_that_attend_it(backend, seed):
    case = random_case(seed)
    batch, height, width, heads = case['shape']
    relation = attends(case['index'], case['mask'], height, width, case['grid'])
    b, y, x, head = case['at']
    queries, keys, value_keys = expected_nonfinite(relation, case['where'], b, y * width + x, head, heads)
    out, dq, dk, dv = run(case, backend, case['value'])
    got = [nonfinite(t) for t in (out, dq, dk, dv)]
    want = [queries, queries, keys, value_keys]
    is_nan = case['value'] != case['value']
    for name, g, w in zip(('out', 'dq', 'dk', 'dv'), got, want):
        if is_nan:  # exactly there
            assert torch.equal(g, w), f'{name}: non-finite at {g.nonzero().tolist()}, expected {w.nonzero().tolist()}'
        else:  # an infinity: there at most (a -inf logit only removes its key, etc.)
            assert not (g & ~w).any(), f'{name}: non-finite outside the attending queries: {(g & ~w).nonzero()}'


@pytest.mark.filterwarnings('ignore:invalid value encountered:RuntimeWarning')
@pytest.mark.parametrize('backend', BACKENDS)
def test_masked_keys_never_matter_and_masking_makes_no_nan(backend):
    """NaN and inf in every masked key and value: all outputs and gradients finite, masked keys' gradients
    zero; queries routed to keyless regions only attend nothing (zero output, zero gradient)."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 6, 2, 4, generator=gen) for _ in range(3))
    mask = torch.rand(1, 4, 6, generator=gen) > 0.4
    mask[:, :2, :4] = False  # regions 0 and 1 of the 2x3 grid have no keys
    k[~mask], v[~mask] = float('nan'), float('inf')
    index = torch.tensor([[[0, 1], [1, 2], [2, 4], [3, 5], [4, 0], [5, 1]]])
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = bra_attention(q, k, v, index, (2, 3), key_mask=mask, backend=backend)
    assert torch.isfinite(out).all() and out[:, :2, :2].abs().max() == 0
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), torch.randn(out.shape, generator=gen))
    assert torch.isfinite(dq).all() and torch.isfinite(dk).all() and torch.isfinite(dv).all()
    assert dq[:, :2, :2].abs().max() == 0
    assert dk[~mask].abs().max() == 0 and dv[~mask].abs().max() == 0


# --------------------------------------------------------------------------------------------------
# routing
# --------------------------------------------------------------------------------------------------
def test_routing_leaves_non_finite_tokens_out_of_the_means_like_masked_ones():
    """A bad pixel (non-finite q and k) routes as if masked; a region without finite tokens is never picked
    (it is ranked last) instead of attracting every query region as a NaN affinity would."""
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 6, 6, 2, 4, generator=gen) for _ in range(2))
    token_mask = torch.ones(2, 6, 6, dtype=torch.bool)
    q[0, 1, 4, 0, 1], k[0, 1, 4, 1, 2] = float('nan'), float('inf')
    token_mask[0, 1, 4] = False
    q[1, 2:4, 2:4, 1], k[1, 2:4, 2:4] = float('-inf'), float('nan')  # region 4 (the centre) entirely
    token_mask[1, 2:4, 2:4] = False
    index = bra_routing(q, k, 3, 4)
    keep = token_mask[..., None, None]
    masked = bra_routing(q.where(keep, 0), k.where(keep, 0), 3, 4, token_mask=token_mask)
    torch.testing.assert_close(index, masked, rtol=0, atol=0)
    assert (index[1] != 4).all()
    assert (bra_routing(q, k, 3, 9)[1, :, -1] == 4).all()


@pytest.mark.parametrize('backend', ['torch', 'reference'])
def test_a_nan_pixel_stays_in_the_queries_routed_to_it(backend):
    """End to end (routing, then attention): q, k and v NaN at one token, as a NaN pixel through the qkv
    projection makes them."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 6, 6, 2, 4, generator=gen) for _ in range(3))
    for t in (q, k, v):
        t[0, 1, 4] = float('nan')
    out = bi_level_routing_attention(q, k, v, 3, 2, backend=backend)
    relation = attends(bra_routing(q, k, 3, 2), None, 6, 6, (3, 3))
    expected = relation[0, :, 1 * 6 + 4].clone()
    expected[1 * 6 + 4] = True
    assert torch.equal(nonfinite(out)[0], expected[:, None].expand(-1, 2))
    assert 0 < int(expected.sum()) < 36


def test_a_nan_pixel_in_the_layer_reaches_its_routed_queries_and_its_lepe_window_only():
    layer = BiLevelRoutingAttention(8, 2, n_win=3, topk=2, side_dwconv=3).eval()
    x = torch.randn(1, 6, 9, 8)
    x[0, 4, 1] = float('nan')
    with torch.no_grad():
        out = layer(x)
        q, k, _ = layer.qkv(x).split([8, 8, 8], dim=-1)
        index = bra_routing(q.unflatten(-1, (2, 4)), k.unflatten(-1, (2, 4)), 3, 2, layer.scale)
    expected = attends(index, None, 6, 9, (3, 3))[0, :, 4 * 9 + 1].view(6, 9)
    expected[3:6, 0:3] = True  # the 3x3 LePE window around (4, 1)
    assert torch.equal((~torch.isfinite(out[0])).any(-1), expected)


# --------------------------------------------------------------------------------------------------
# empty inputs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('shape', [(0, 4, 4, 2), (2, 4, 4, 0)], ids=['batch0', 'heads0'])
def test_empty_batch_and_zero_heads_give_empty_outputs_and_gradients(backend, shape):
    q, k, v = (torch.randn(*shape, 4, requires_grad=True) for _ in range(3))
    index = bra_routing(q, k, 2, 3)
    assert index.shape == (shape[0], 4, 3) and index.dtype == torch.int64
    token_mask = torch.rand(1, 4, 4) > 0.5
    for out in (bra_attention(q, k, v, index, 2, backend=backend),
                bi_level_routing_attention(q, k, v, 2, 3, token_mask=token_mask, backend=backend)):
        assert out.shape == (*shape, 4)
        grads = torch.autograd.grad(out.sum(), (q, k, v))
        assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('pad_mode', ['upstream', 'masked'])
def test_layer_runs_an_empty_batch(backend, pad_mode):
    layer = BiLevelRoutingAttention(16, 2, n_win=2, topk=2, pad_mode=pad_mode)
    x = torch.randn(0, 5, 6, 16, requires_grad=True)  # padded to 6x6
    with use_backend(backend):
        out = layer(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad.shape == x.shape and layer.qkv.weight.grad.abs().max() == 0


def test_biformer_tiny_runs_an_empty_batch():
    model = timm.create_model('biformer_tiny', num_classes=5)
    x = torch.randn(0, 3, 64, 64, requires_grad=True)
    out = model(x)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape


# --------------------------------------------------------------------------------------------------
# 'flex' backend: the compiled FlexAttention forward (CPU has no backward)
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compiled_flex_forward_matches_the_torch_path_and_keeps_non_finite_entries_local():
    """One compiled kernel (a C++ build of FlexAttention for CPU) serves every call: same shapes and mask."""
    gen = torch.Generator().manual_seed(3)
    grid, shape = (2, 3), (2, 4, 6, 2)
    index = torch.stack([torch.randperm(6, generator=gen)[:2] for _ in range(12)]).view(2, 6, 2)
    mask = torch.rand(2, 4, 6, generator=gen) > 0.3
    mask[:, :2, :2] = False  # region 0 has no keys
    relation = attends(index, mask, 4, 6, grid)
    q, k, v = (torch.randn(*shape, dim, generator=gen) for dim in (4, 4, 3))
    with torch.no_grad():
        out = bra_attention(q, k, v, index, grid, key_mask=mask, backend='flex')
        torch.testing.assert_close(out, bra_attention(q, k, v, index, grid, key_mask=mask, backend='torch'),
                                   atol=1e-5, rtol=1e-5)
        for where, value, at in (('v', float('nan'), (1, 2, 3, 0)), ('k', float('nan'), (0, 3, 5, 1)),
                                 ('q', float('inf'), (1, 1, 4, 1)), ('v', float('nan'), (0, 0, 0, 1))):
            bad = {'q': q.clone(), 'k': k.clone(), 'v': v.clone()}
            bad[where][at][0] = value
            out = bra_attention(bad['q'], bad['k'], bad['v'], index, grid, key_mask=mask, backend='flex')
            queries, _, _ = expected_nonfinite(relation, where, at[0], at[1] * 6 + at[2], at[3], 2)
            assert torch.equal(nonfinite(out), queries), (where, at)
