"""na2d at stride 1, non-causal (NAT/DiNAT) against a dense oracle written from NATTEN 0.14's CPU kernels.

The oracle builds the full (tokens x tokens) bias/mask matrix pixel by pixel with NATTEN 0.14's own
``get_window_start`` / ``get_pb_start`` (dilation branches included) and runs dense softmax attention
in float64, so every gradient comes from plain autograd. It checks the package's 'reference' backend,
the PyTorch path and today's Triton kernels (under TRITON_INTERPRET=1 on CPU) on the checkpoints'
semantics; tests/test_ops_na.py covers 1-D/3-D, stride and causal windows.
"""
from __future__ import annotations

import math
import random

import pytest
import torch

from visionattn.errors import UnsupportedBackendError
from visionattn.ops import na2d
from visionattn.ops.dispatch import triton_importable


def natten_window_start(i: int, length: int, kernel: int, dilation: int) -> int:
    ns = kernel // 2
    if dilation <= 1:
        return max(i - ns, 0) + (i + ns >= length) * (length - i - ns - 1)
    if i - ns * dilation < 0:
        return i % dilation
    if i + ns * dilation >= length:
        imodd = i % dilation
        a = (length // dilation) * dilation
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * ns * dilation
        return a + imodd - kernel * dilation
    return i - ns * dilation


def natten_pb_start(i: int, length: int, kernel: int, dilation: int) -> int:
    ns = kernel // 2
    if dilation <= 1:
        return ns + (i < ns) * (ns - i) + (i + ns >= length) * (length - i - 1 - ns)
    if i - ns * dilation < 0:
        return kernel - 1 - i // dilation
    if i + ns * dilation >= length:
        return (length - i - 1) // dilation
    return ns


def reference_na2d(q, k, v, kernel, dilation, rpb=None, scale=None):
    """Dense float64 attention with NATTEN 0.14's neighbourhood mask and bias (slow, tiny sizes only)."""
    batch, height, width, heads, dim = q.shape
    (kh, kw), (dh, dw) = kernel, dilation
    scale = dim ** -0.5 if scale is None else scale
    tokens = height * width
    bias = torch.full((heads, tokens, tokens), -math.inf, dtype=torch.float64)
    for i in range(height):
        ni, pi = natten_window_start(i, height, kh, dh), natten_pb_start(i, height, kh, dh)
        for j in range(width):
            nj, pj = natten_window_start(j, width, kw, dw), natten_pb_start(j, width, kw, dw)
            for a in range(kh):
                for b in range(kw):
                    key = (ni + a * dh) * width + nj + b * dw
                    bias[:, i * width + j, key] = 0. if rpb is None else rpb[:, pi + a, pj + b].double()
    qf, kf, vf = (t.double().permute(0, 3, 1, 2, 4).reshape(batch, heads, tokens, dim) for t in (q, k, v))
    probs = (qf * scale @ kf.transpose(-1, -2) + bias).softmax(-1)
    return (probs @ vf).view(batch, heads, height, width, dim).permute(0, 2, 3, 1, 4)


def random_case(rng: random.Random, max_side: int = 12) -> dict:
    """Kernel, dilation and a map size from kernel x dilation up to max_side per axis (L % d != 0 often)."""
    while True:
        kernel = (rng.choice([3, 5]), rng.choice([3, 5, 7]))
        dilation = (rng.choice([1, 2, 3]), rng.choice([1, 2, 4]))
        low = [kk * dd for kk, dd in zip(kernel, dilation)]
        if all(x <= max_side for x in low):
            size = [rng.randint(x, max_side) for x in low]
            return dict(kernel=kernel, dilation=dilation, height=size[0], width=size[1])


def make_inputs(case: dict, batch: int, heads: int, dim: int, dtype: torch.dtype, with_rpb: bool,
                strided: bool = False):
    """q, k, v of shape (B, H, W, heads, D); ``strided`` takes them from one qkv tensor (non-contiguous)."""
    shape = (batch, case['height'], case['width'])
    if strided:
        qkv = torch.randn(*shape, 3, heads, dim, dtype=dtype)
        q, k, v = (t.detach().requires_grad_() for t in qkv.unbind(3))
    else:
        q, k, v = (torch.randn(*shape, heads, dim, dtype=dtype, requires_grad=True) for _ in range(3))
    kh, kw = case['kernel']
    rpb = torch.randn(heads, 2 * kh - 1, 2 * kw - 1, dtype=dtype, requires_grad=True) if with_rpb else None
    return q, k, v, rpb


def check_against_reference(case, q, k, v, rpb, backend, atol, rtol, scale=None):
    out = na2d(q, k, v, case['kernel'], case['dilation'], rpb=rpb, scale=scale, backend=backend)
    assert out.shape == q.shape and out.dtype == q.dtype and out.is_contiguous()
    ref = reference_na2d(q, k, v, case['kernel'], case['dilation'], rpb, scale)
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=rtol)
    grad = torch.randn_like(out)
    inputs = [t for t in (q, k, v, rpb) if t is not None]
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad.double())
    for name, g, w in zip('qkvr', got, want):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g.double(), w.double(), atol=atol * 4, rtol=rtol, msg=lambda m: f'd{name}: {m}')


TOLERANCE = {torch.float64: (1e-10, 1e-10), torch.float32: (2e-5, 1e-4),
             torch.float16: (2e-2, 2e-2), torch.bfloat16: (6e-2, 5e-2)}


# ---------------------------------------------------------------------------------------------
# 'reference' backend and PyTorch path
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', range(3))
def test_reference_backend_matches_natten014(seed):
    rng = random.Random(50 + seed)
    case = random_case(rng)
    q, k, v, rpb = make_inputs(case, batch=1, heads=2, dim=4, dtype=torch.float64, with_rpb=seed != 0)
    check_against_reference(case, q, k, v, rpb, 'reference', *TOLERANCE[torch.float64])


@pytest.mark.parametrize('seed', range(6))
def test_torch_path_matches_reference(seed):
    rng = random.Random(seed)
    case = random_case(rng)
    q, k, v, rpb = make_inputs(case, batch=2, heads=2, dim=rng.choice([4, 8]), dtype=torch.float64,
                               with_rpb=seed % 3 != 0, strided=seed % 2 == 0)
    check_against_reference(case, q, k, v, rpb, 'torch', *TOLERANCE[torch.float64],
                            scale=None if seed % 2 else 0.3)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_torch_path_low_precision(dtype):
    case = dict(kernel=(5, 3), dilation=(1, 3), height=11, width=10)
    q, k, v, rpb = make_inputs(case, batch=1, heads=2, dim=8, dtype=dtype, with_rpb=True)
    check_against_reference(case, q, k, v, rpb, 'torch', *TOLERANCE[dtype])


def test_torch_path_gradcheck():
    case = dict(kernel=(3, 3), dilation=(2, 1), height=7, width=5)
    q, k, v, rpb = make_inputs(case, batch=1, heads=2, dim=3, dtype=torch.float64, with_rpb=True, strided=True)
    fn = lambda q, k, v, rpb: na2d(q, k, v, 3, (2, 1), rpb=rpb, backend='torch')  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v, rpb), fast_mode=True)


def test_float32_rpb_with_half_inputs():
    """Mixed precision keeps the bias parameter in float32; its gradient comes back in float32."""
    case = dict(kernel=(3, 3), dilation=(1, 1), height=6, width=6)
    q, k, v, _ = make_inputs(case, batch=1, heads=2, dim=8, dtype=torch.bfloat16, with_rpb=False)
    rpb = torch.randn(2, 5, 5, requires_grad=True)
    check_against_reference(case, q, k, v, rpb, 'torch', *TOLERANCE[torch.bfloat16])
    na2d(q, k, v, 3, rpb=rpb, backend='torch').sum().backward()
    assert rpb.grad.dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# Triton kernels (TRITON_INTERPRET=1 on CPU, set by conftest.py): tiny sizes, the interpreter is slow
# ---------------------------------------------------------------------------------------------

needs_triton = pytest.mark.skipif(not triton_importable(), reason='Triton is not installed')


@needs_triton
@pytest.mark.parametrize('seed, dtype', [(0, torch.float32), (1, torch.float16), (2, torch.bfloat16),
                                         (3, torch.float32), (4, torch.float16), (5, torch.bfloat16)])
def test_triton_matches_reference(seed, dtype):
    rng = random.Random(100 + seed)
    case = random_case(rng, max_side=10)
    q, k, v, rpb = make_inputs(case, batch=1 + seed % 2, heads=2 - seed % 2, dim=rng.choice([8, 12, 16]),
                               dtype=dtype, with_rpb=seed % 3 != 2, strided=seed % 2 == 0)
    check_against_reference(case, q, k, v, rpb, 'triton', *TOLERANCE[dtype])


@needs_triton
def test_triton_float32_rpb_with_half_inputs():
    case = dict(kernel=(3, 3), dilation=(2, 3), height=7, width=11)  # L % d != 0 on both axes
    q, k, v, _ = make_inputs(case, batch=2, heads=1, dim=8, dtype=torch.float16, with_rpb=False)
    rpb = torch.randn(1, 5, 5, requires_grad=True)
    check_against_reference(case, q, k, v, rpb, 'triton', *TOLERANCE[torch.float16])


@needs_triton
def test_triton_rejects_float64():
    q = torch.randn(1, 6, 6, 1, 8, dtype=torch.float64)
    with pytest.raises(UnsupportedBackendError, match="'triton' cannot run na here: it supports .*not float64"):
        na2d(q, q, q, 3, backend='triton')
