"""Neighbourhood attention on edge inputs (issue 19): a non-finite value stays in the windows that hold it,
in the output and in every gradient, on every backend of visionattn.ops.na (interpreted Triton is covered
with the kernels); empty batches and zero heads pass through the ops, the layers and NAT/DiNAT."""
from __future__ import annotations

import math
import random

import pytest
import timm
import torch

from test_ops_na import call, dense_mask, make_inputs, random_geometry
from visionattn.layers import NeighborhoodAttention1D, NeighborhoodAttention2D, NeighborhoodAttention3D
from visionattn.ops import na1d, na2d, na3d

OPS = {1: na1d, 2: na2d, 3: na3d}
SPATIAL = {1: (7,), 2: (5, 6), 3: (3, 4, 5)}


def run(geo, q, k, v, rpb, backend, grad):
    inputs = [t for t in (q, k, v, rpb) if t is not None]
    out = call(geo, q, k, v, rpb, backend)
    return [out.detach(), *torch.autograd.grad(out, inputs, grad)]


def poisoned_case(seed: int):
    """A random geometry and inputs with one non-finite entry in q, k, v or rpb; which entry and value."""
    rng = random.Random(seed)
    geo = random_geometry(rng, rank=1 + seed % 3)
    q, k, v, rpb = make_inputs(geo, batch=2, heads=2, dim=3, dtype=torch.float32)  # flex: no float64
    name = rng.choice('qkv' + ('r' if rpb is not None else ''))
    value = rng.choice([math.nan, math.inf, -math.inf])
    target = dict(q=q, k=k, v=v, r=rpb)[name]
    index = tuple(rng.randrange(size) for size in target.shape)
    with torch.no_grad():
        target[index] = value
    return geo, (q, k, v, rpb), name, index, value


@pytest.mark.parametrize('seed', range(24))
def test_non_finite_input_stays_in_its_windows(seed):
    geo, (q, k, v, rpb), name, index, value = poisoned_case(seed)
    grad = torch.randn(q.shape, dtype=q.dtype)
    want = run(geo, q, k, v, rpb, 'reference', grad)
    # the reference itself, against the window rule: which outputs turn non-finite
    mask = dense_mask(geo['spatial'], geo['kernel_size'], geo['dilation'], geo['stride'], geo['is_causal'])
    bad = ~torch.isfinite(want[0].reshape(2, -1, 2, 3))
    expected = torch.zeros_like(bad)
    token = sum(i * math.prod(geo['spatial'][a + 1:]) for a, i in enumerate(index[1:-2]))  # q, k, v: (b, *pos, h, c)
    if name == 'q':  # the query's own row
        expected[index[0], token, index[-2], :] = True
    elif name == 'v':  # channel c of the queries whose window holds the key
        expected[index[0], mask[:, token], index[-2], index[-1]] = True
    elif name == 'k' and math.isnan(value):  # (an infinite key may give -inf logits, which leave rows finite)
        expected[index[0], mask[:, token], index[-2], :] = True
    if name in 'qv' or name == 'k' and math.isnan(value):
        assert torch.equal(bad, expected), (geo, name, index, value)
    assert bad.any() or name in 'kr'
    for backend in ('torch', 'flex'):  # flex runs such calls on the PyTorch path
        got = run(geo, q, k, v, rpb, backend, grad)
        for what, g, w in zip(('out', 'dq', 'dk', 'dv', 'drpb'), got, want):
            finite = torch.isfinite(w)
            assert torch.equal(torch.isfinite(g), finite), f'{backend} {what}: {geo} {name}{index}={value}'
            torch.testing.assert_close(g[finite], w[finite], atol=1e-5, rtol=1e-4)


def test_masking_never_makes_nan_from_finite_inputs():
    """Logits far apart (softmax probabilities underflow to 0) and huge values stay finite everywhere."""
    geo = dict(rank=2, spatial=(6, 7), kernel_size=(3, 4), dilation=(2, 1), stride=(1, 2), is_causal=(True, False),
               rpb=False)
    q, k, v, _ = make_inputs(geo, dtype=torch.float32)
    with torch.no_grad():
        q.mul_(300), k.mul_(300), v.mul_(1e30)
    for backend in ('torch', 'reference'):
        for t in run(geo, q, k, v, None, backend, torch.randn(q.shape)):
            assert torch.isfinite(t).all(), backend


def test_one_nan_pixel_reaches_only_its_inverse_neighbourhood():
    """Through NeighborhoodAttention2D (projections mix channels, not positions)."""
    attn = NeighborhoodAttention2D(8, 2, 3, dilation=2)
    x = torch.randn(1, 9, 8, 8)
    x[0, 4, 3, 5] = math.nan
    rows = dense_mask((9, 8), (3, 3), (2, 2), (1, 1), (False, False))[:, 4 * 8 + 3]
    assert torch.equal(torch.isnan(attn(x)).any(-1).reshape(-1), rows)


# ---------------------------------------------------------------------------------------------
# Empty batches and zero heads
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('backend', ['torch', 'reference', 'flex'])
@pytest.mark.parametrize('rank', [1, 2, 3])
def test_empty_batch_and_zero_heads(rank, backend):
    for batch, heads in ((0, 2), (2, 0)):
        q, k, v = (torch.randn(batch, *SPATIAL[rank], heads, 4, requires_grad=True) for _ in range(3))
        rpb = torch.randn(heads, *(3,) * rank, requires_grad=True)
        out = OPS[rank](q, k, v, 2, rpb=rpb, backend=backend)
        assert out.shape == q.shape
        grads = torch.autograd.grad(out, (q, k, v, rpb), torch.ones_like(out))
        assert [g.shape for g in grads] == [q.shape, q.shape, q.shape, rpb.shape]
        assert not grads[3].any()
        causal = OPS[rank](q, k, v, 2, stride=2, is_causal=True, backend=backend)
        assert causal.shape == q.shape and torch.autograd.grad(causal.sum(), q)[0].shape == q.shape


@pytest.mark.parametrize('layer, shape', [
    (NeighborhoodAttention1D(8, 2, 3, dilation=2), (0, 5, 8)),
    (NeighborhoodAttention2D(8, 2, 3), (0, 2, 5, 8)),
    (NeighborhoodAttention3D(8, 2, 3, kernel_size_d=5), (0, 1, 4, 3, 8)),
])
def test_layers_pass_an_empty_batch(layer, shape):
    x = torch.randn(shape, requires_grad=True)
    out = layer(x)
    assert out.shape == shape
    out.sum().backward()
    assert x.grad.shape == shape and layer.qkv.weight.grad is not None and not layer.rpb.grad.any()


@pytest.mark.parametrize('name', ['nat_mini', 'dinat_mini'])
def test_nat_models_pass_an_empty_batch(name):
    model = timm.create_model(name, num_classes=10)
    x = torch.randn(0, 3, 64, 64, requires_grad=True)
    logits = model(x)
    assert logits.shape == (0, 10)
    logits.sum().backward()
    assert x.grad.shape == x.shape
