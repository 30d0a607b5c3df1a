"""na1d / na2d / na3d with dilation, stride (GNA) and causal axes: the 'reference' backend against a dense
oracle written from NATTEN >= 0.20's reference mask, then the PyTorch path against the 'reference'
backend over random geometries, and the custom-op machinery (opcheck, autocast, compile, export, FLOPs).

The oracle is independent of the package: NATTEN's C++ rule (``csrc/include/natten/cuda/reference/
mask.hpp``: ``get_win_start``, ``qkv_fix_dilation``) transcribed per axis, a dense (tokens x tokens) mask
and bias, softmax attention in float64, gradients from autograd.
"""
from __future__ import annotations

import math
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import visionattn.ops.na as na
from visionattn.errors import UnsupportedBackendError
from visionattn.ops import na1d, na2d, na3d
from visionattn.ops.dispatch import select_backend

OPS = {1: na1d, 2: na2d, 3: na3d}


def natten_keys(i: int, length: int, kernel: int, dilation: int, stride: int, causal: bool) -> list[int]:
    """Map positions of the keys of query ``i`` along one axis, NATTEN >= 0.20's reference mask."""
    group = i % dilation
    group_len = length // dilation + 1 - ((group + (dilation - (length % dilation))) // dilation)
    ip = i // dilation
    left, right = kernel // 2, kernel // 2 + (kernel % 2) - 1
    if causal:
        leader = min((ip // stride) * stride + stride - 1, group_len - 1)
        start, end = max(leader - left - right, 0), min(ip + 1, group_len)
    else:
        leader = min((ip // stride) * stride + stride // 2, group_len - 1)
        start = max(leader - left, 0) + (leader + right >= group_len) * (group_len - right - leader - 1)
        end = start + kernel
    return [kp * dilation + group for kp in range(start, end)]


def dense_mask(spatial, kernel, dilation, stride, causal) -> torch.Tensor:
    """(tokens, tokens) bool: key j is in the window of query i."""
    mask = torch.ones(1, 1, dtype=torch.bool)
    for length, kk, dd, ss, cc in zip(spatial, kernel, dilation, stride, causal):
        axis = torch.zeros(length, length, dtype=torch.bool)
        for i in range(length):
            axis[i, natten_keys(i, length, kk, dd, ss, cc)] = True
        mask = (mask[:, None, :, None] & axis[None, :, None, :]).reshape(mask.shape[0] * length, -1)
    return mask


def oracle(q, k, v, kernel, dilation, stride, causal, rpb=None, scale=None):
    """Dense float64 attention under the NATTEN mask; rpb index kp - ip + k - 1 per axis (group coordinates)."""
    batch, *spatial, heads, dim = q.shape
    scale = dim ** -0.5 if scale is None else scale
    mask = dense_mask(spatial, kernel, dilation, stride, causal)
    bias = torch.zeros(heads, *mask.shape, dtype=torch.float64)
    if rpb is not None:
        index = torch.zeros(1, 1, dtype=torch.long)
        for length, kk, dd in zip(spatial, kernel, dilation):
            pos = torch.arange(length)
            axis = (pos[None, :] // dd - pos[:, None] // dd + kk - 1).clamp(0, 2 * kk - 2)
            index = (index[:, None, :, None] * (2 * kk - 1) + axis[None, :, None, :]).reshape(
                index.shape[0] * length, -1)
        bias = rpb.double().reshape(heads, -1)[:, index]
    bias = bias.masked_fill(~mask, -math.inf)
    qf, kf, vf = (t.double().reshape(batch, -1, heads, dim).transpose(1, 2) for t in (q, k, v))
    out = ((qf * scale) @ kf.transpose(-1, -2) + bias).softmax(-1) @ vf
    return out.transpose(1, 2).reshape(q.shape)


def random_geometry(rng: random.Random, rank: int, rpb_allowed: bool = True) -> dict:
    """kernel (even sizes too), dilation, stride <= kernel, causal axes and a map of at least kernel x dilation."""
    kernel = tuple(rng.choice([2, 3, 3, 4, 5]) for _ in range(rank))
    dilation = tuple(rng.choice([1, 1, 2, 3]) if rank < 3 else rng.choice([1, 2]) for _ in range(rank))
    use_rpb = rpb_allowed and rng.random() < 0.35
    stride = tuple(1 if use_rpb else rng.randint(1, kk) for kk in kernel)
    causal = tuple(not use_rpb and rng.random() < 0.3 for _ in range(rank))
    extra = {1: 6, 2: 4, 3: 2}[rank]
    spatial = tuple(kk * dd + rng.randint(0, extra) for kk, dd in zip(kernel, dilation))
    return dict(rank=rank, spatial=spatial, kernel_size=kernel, dilation=dilation, stride=stride, is_causal=causal,
                rpb=use_rpb)


def make_inputs(geo: dict, batch: int = 2, heads: int = 2, dim: int = 4, dtype=torch.float64, strided=False):
    shape = (batch, *geo['spatial'])
    if strided:  # views of one qkv tensor, like the layers pass
        q, k, v = (t.detach().requires_grad_() for t in torch.randn(*shape, 3, heads, dim, dtype=dtype).unbind(-3))
    else:
        q, k, v = (torch.randn(*shape, heads, dim, dtype=dtype, requires_grad=True) for _ in range(3))
    rpb = (torch.randn(heads, *(2 * kk - 1 for kk in geo['kernel_size']), dtype=dtype, requires_grad=True)
           if geo['rpb'] else None)
    return q, k, v, rpb


def call(geo: dict, q, k, v, rpb, backend: str, **kwargs):
    return OPS[geo['rank']](q, k, v, geo['kernel_size'], geo['dilation'], geo['stride'], geo['is_causal'], rpb=rpb,
                            backend=backend, **kwargs)


def outputs_and_grads(fn, q, k, v, rpb, grad=None):
    out = fn(q, k, v, rpb)
    grad = torch.randn_like(out) if grad is None else grad
    inputs = [t for t in (q, k, v, rpb) if t is not None]
    return out, grad, torch.autograd.grad(out, inputs, grad.to(out.dtype))


def assert_same(got, want, atol, rtol):
    (out, _, grads), (ref, _, ref_grads) = got, want
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out.double(), ref.double(), atol=atol, rtol=rtol)
    for name, g, w in zip(('dq', 'dk', 'dv', 'drpb'), grads, ref_grads):
        assert g.dtype == w.dtype or w.dtype == torch.float64, name
        torch.testing.assert_close(g.double(), w.double(), atol=4 * atol, rtol=rtol, msg=lambda m: f'{name}: {m}')


# ---------------------------------------------------------------------------------------------
# The 'reference' backend against NATTEN's rule; the PyTorch path against the 'reference' backend
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', range(9))
def test_reference_backend_matches_natten_rule(seed):
    rng = random.Random(seed)
    geo = random_geometry(rng, rank=1 + seed % 3)
    q, k, v, rpb = make_inputs(geo, batch=1)
    scale = None if seed % 2 else 0.4
    got = outputs_and_grads(lambda *a: call(geo, *a, 'reference', scale=scale), q, k, v, rpb)
    want = outputs_and_grads(lambda q, k, v, rpb: oracle(q, k, v, geo['kernel_size'], geo['dilation'], geo['stride'],
                                                         geo['is_causal'], rpb, scale), q, k, v, rpb, got[1])
    assert_same(got, want, 1e-12, 1e-10)


@pytest.mark.parametrize('seed', range(6))
def test_triton_backend_matches_reference(seed, monkeypatch):
    """The op front-end on the N-D Triton kernels (interpreted): every rank, stride, causal and rpb case."""
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    rng = random.Random(100 + seed)
    geo = random_geometry(rng, rank=1 + seed % 3)
    q, k, v, rpb = make_inputs(geo, batch=1, dtype=torch.float32, strided=seed % 2 == 0)
    got = outputs_and_grads(lambda *a: call(geo, *a, 'triton'), q, k, v, rpb)
    want = outputs_and_grads(lambda *a: call(geo, *a, 'reference'), q, k, v, rpb, got[1])
    assert_same(got, want, 2e-5, 1e-4)


@pytest.mark.parametrize('seed', range(18))
def test_torch_path_matches_reference(seed):
    """Random 1-D/2-D/3-D geometries: kernel (odd and even), dilation, stride, causal axes, rpb."""
    rng = random.Random(1000 + seed)
    geo = random_geometry(rng, rank=1 + seed % 3)
    q, k, v, rpb = make_inputs(geo, batch=rng.choice([1, 3]), heads=rng.choice([1, 2]), strided=seed % 2 == 0)
    got = outputs_and_grads(lambda *a: call(geo, *a, 'torch'), q, k, v, rpb)
    want = outputs_and_grads(lambda *a: call(geo, *a, 'reference'), q, k, v, rpb, got[1])
    assert_same(got, want, 1e-12, 1e-10)


def test_stride_equal_to_kernel_is_blocked_attention():
    """stride = kernel: non-overlapping k x k blocks, each attending to itself only."""
    q, k, v = (torch.randn(1, 6, 9, 2, 4, dtype=torch.float64) for _ in range(3))
    out = na2d(q, k, v, 3, stride=3, backend='torch')
    blocks = [t.reshape(1, 2, 3, 3, 3, 2, 4).permute(0, 1, 3, 5, 2, 4, 6).reshape(1, 2, 3, 2, 9, 4) for t in (q, k, v)]
    dense = torch.softmax(blocks[0] @ blocks[1].transpose(-1, -2) * 0.5, -1) @ blocks[2]
    torch.testing.assert_close(out, dense.reshape(1, 2, 3, 2, 3, 3, 4).permute(0, 1, 4, 2, 5, 3, 6).reshape(q.shape))


def test_causal_1d_with_full_kernel_is_causal_attention():
    q, k, v = (torch.randn(2, 7, 2, 4, dtype=torch.float64) for _ in range(3))
    out = na1d(q, k, v, 7, is_causal=True, backend='torch')
    dense = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=True)
    torch.testing.assert_close(out, dense.transpose(1, 2))


def test_torch_path_batch_chunks(monkeypatch):
    """The PyTorch path splits the batch into chunks to bound its temporaries; results must not change."""
    geo = dict(rank=3, spatial=(4, 5, 6), kernel_size=(2, 3, 3), dilation=(1, 1, 2), stride=(1, 2, 1),
               is_causal=(True, False, False), rpb=False)
    q, k, v, rpb = make_inputs(geo, batch=3)
    want = outputs_and_grads(lambda *a: call(geo, *a, 'reference'), q, k, v, rpb)
    monkeypatch.setattr(na, '_CHUNK_ELEMENTS', 1)
    assert_same(outputs_and_grads(lambda *a: call(geo, *a, 'torch'), q, k, v, rpb, want[1]), want, 1e-12, 1e-10)


@pytest.mark.parametrize('rank, dtype', [(1, torch.float16), (3, torch.bfloat16), (2, torch.float32)])
def test_torch_path_low_precision(rank, dtype):
    geo = random_geometry(random.Random(7 + rank), rank)
    q, k, v, rpb = make_inputs(geo, batch=1, dim=8, dtype=dtype)
    got = outputs_and_grads(lambda *a: call(geo, *a, 'torch'), q, k, v, rpb)
    want = outputs_and_grads(lambda *a: call(geo, *a, 'reference'), q, k, v, rpb, got[1])
    assert got[0].dtype == dtype and all(g.dtype == dtype for g in got[2])
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5}[dtype]
    assert_same(got, want, tol, tol)


@pytest.mark.parametrize('rank', [1, 3])
def test_torch_path_gradcheck(rank):
    geo = dict(rank=rank, spatial=(7,) if rank == 1 else (3, 4, 6), kernel_size=(3,) * rank,
               dilation=(1,) * (rank - 1) + (2,),
               stride=(1,) * rank, is_causal=(False,) * rank, rpb=True)
    q, k, v, rpb = make_inputs(geo, batch=1, heads=1, dim=2, strided=True)
    assert torch.autograd.gradcheck(lambda *a: call(geo, *a, 'torch'), (q, k, v, rpb), fast_mode=True)
    geo.update(stride=(2,) * rank, is_causal=(True,) + (False,) * (rank - 1), rpb=False)
    assert torch.autograd.gradcheck(lambda q, k, v: call(geo, q, k, v, None, 'torch'), (q, k, v), fast_mode=True)


# ---------------------------------------------------------------------------------------------
# Custom op machinery: opcheck, autocast, torch.compile, torch.export, FLOP formulas
# ---------------------------------------------------------------------------------------------

def test_custom_op_opcheck():
    q, k, v = (torch.randn(1, 1, 5, 6, 2, 4, requires_grad=True) for _ in range(3))
    rpb = torch.randn(2, 1, 5, 5, requires_grad=True)
    geometry = ([1, 3, 3], [1, 1, 2], [1, 1, 1], [False, False, False])
    torch.library.opcheck(torch.ops.visionattn.na_forward.default, (q, k, v, rpb, *geometry, 0.5, 'torch'))


def test_autocast_runs_in_autocast_dtype():
    q, k, v = (torch.randn(1, 4, 5, 4, 2, 8, requires_grad=True) for _ in range(3))
    rpb = torch.randn(2, 3, 5, 3, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = na3d(q, k, v, (2, 3, 2), rpb=rpb, backend='torch')
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), na3d(q, k, v, (2, 3, 2), rpb=rpb, backend='torch'), atol=5e-2, rtol=5e-2)
    out.float().sum().backward()
    assert q.grad.dtype == torch.float32 and rpb.grad.dtype == torch.float32


def test_torch_compile_fullgraph():
    q, k, v = (torch.randn(2, 9, 2, 4, requires_grad=True) for _ in range(3))

    def fn(q, k, v):
        return na1d(q * 2, k, v, 4, 2, stride=2, is_causal=True, backend='torch').relu()

    compiled = torch.compile(fn, fullgraph=True, backend='aot_eager')
    out = compiled(q, k, v)
    torch.testing.assert_close(out, fn(q, k, v))
    for g, w in zip(torch.autograd.grad(out.sum(), (q, k, v)), torch.autograd.grad(fn(q, k, v).sum(), (q, k, v))):
        torch.testing.assert_close(g, w)


def test_torch_export():
    class Attention(torch.nn.Module):
        def forward(self, q, k, v):
            return na3d(q, k, v, (2, 3, 3), (1, 2, 1), (2, 1, 3), (True, False, False), backend='torch')

    q, k, v = (torch.randn(1, 3, 7, 4, 2, 4) for _ in range(3))
    exported = torch.export.export(Attention(), (q, k, v))
    assert any('na_forward' in str(node.target) for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(q, k, v), Attention()(q, k, v))


def test_flop_formula_counts_each_querys_window():
    """Useful FLOPs: 4 * batch * heads * head_dim * sum over queries of their window's keys (fewer keys at
    the start of a causal axis), against the windows the reference gathers."""
    for seed in range(6):
        geo = random_geometry(random.Random(seed), rank=1 + seed % 3, rpb_allowed=False)
        mask = dense_mask(geo['spatial'], geo['kernel_size'], geo['dilation'], geo['stride'], geo['is_causal'])
        q = torch.randn(2, *geo['spatial'], 3, 4)
        counter = FlopCounterMode(display=False)
        with counter:
            call(geo, q, q, q, None, 'torch')
        assert counter.get_total_flops() == 4 * 2 * 3 * 4 * int(mask.sum()), geo
        q.requires_grad_()
        counter = FlopCounterMode(display=False)
        with counter:
            call(geo, q, q, q, None, 'torch').sum().backward()
        assert counter.get_total_flops() == (4 + 10) * 2 * 3 * 4 * int(mask.sum()), geo  # backward: 2.5x


# ---------------------------------------------------------------------------------------------
# Backend limits and bad arguments
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('op, kwargs, error, match', [
    (na2d, dict(kernel_size=1), ValueError, 'kernel_size must be >= 2'),
    (na2d, dict(kernel_size=3, dilation=0), ValueError, 'dilation must be >= 1'),
    (na2d, dict(kernel_size=3, stride=4), ValueError, 'stride must be between 1 and kernel_size'),
    (na2d, dict(kernel_size=3, stride=0), ValueError, 'stride must be between 1 and kernel_size'),
    (na2d, dict(kernel_size=5, dilation=2), ValueError, 'pad the input'),
    (na2d, dict(kernel_size=(3, 3, 3)), ValueError, 'kernel_size must be an int or 2 of them'),
    (na2d, dict(kernel_size=True), ValueError, 'kernel_size must be an int'),
    (na2d, dict(kernel_size=3, is_causal=1), ValueError, 'is_causal must be a bool or 2 of them'),
    (na2d, dict(kernel_size=3, rpb=torch.zeros(2, 3, 3)), ValueError, 'rpb must have shape'),
    (na2d, dict(kernel_size=3, stride=2, rpb=torch.zeros(2, 5, 5)), ValueError, 'rpb is defined only for stride 1'),
    (na2d, dict(kernel_size=3, is_causal=(True, False), rpb=torch.zeros(2, 5, 5)), ValueError, 'non-causal'),
    (na2d, dict(kernel_size=3, rpb=torch.zeros(2, 5, 5, dtype=torch.float64)), TypeError, 'rpb must be float32'),
    (na2d, dict(kernel_size=3, backend='cuda'), ValueError, 'unknown attention backend'),
    (na1d, dict(kernel_size=3), ValueError, r'\(batch, length, heads, head_dim\)'),
    (na3d, dict(kernel_size=3), ValueError, r'\(batch, depth, height, width, heads, head_dim\)'),
])
def test_bad_arguments(op, kwargs, error, match):
    q = torch.randn(1, 6, 6, 2, 4)
    with pytest.raises(error, match=match):
        op(q, q, q, **kwargs)


def test_mismatched_inputs():
    q = torch.randn(1, 6, 6, 2, 4)
    with pytest.raises(ValueError, match='same shape'):
        na2d(q, q, torch.randn(1, 6, 6, 2, 5), 3)
    with pytest.raises(TypeError, match='same dtype'):
        na2d(q, q.double(), q, 3)
    with pytest.raises(TypeError, match='floating point'):
        na2d(*(torch.ones(1, 6, 6, 2, 4, dtype=torch.long),) * 3, 3)
    with pytest.raises(ValueError, match='head_dim must be >= 1'):
        na2d(*(torch.ones(1, 6, 6, 2, 0),) * 3, 3)
