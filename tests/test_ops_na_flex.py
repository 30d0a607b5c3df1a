"""The 'flex' backend of neighbourhood attention (FlexAttention with a block mask from the window rule).

Its mask_mod / score_mod are checked against the 'reference' backend through FlexAttention's eager
(uncompiled) path over random geometries; one end-to-end call runs the compiled backend as users run it
(the CPU compile takes tens of seconds cold, so there is only one). Backward on CUDA is left to the GPU
check; on CPU a backward must raise.
"""
from __future__ import annotations

import random
import warnings

import pytest
import torch
from torch.nn.attention.flex_attention import flex_attention

import visionattn.ops.na as na
from test_ops_na import call, make_inputs, random_geometry
from visionattn.errors import UnsupportedBackendError
from visionattn.ops import na2d


@pytest.mark.parametrize('seed', range(3))
def test_mask_and_score_mods_match_the_reference(seed):
    """FlexAttention's eager path (dense math) with our block mask and rpb score_mod, random geometries."""
    rng = random.Random(seed)
    geo = random_geometry(rng, rank=1 + seed % 3)
    q, k, v, rpb = make_inputs(geo, batch=1, dtype=torch.float32)
    pad = 3 - geo['rank']
    geometry = na._Geometry(*((1,) * pad + tuple(geo[name]) for name in ('kernel_size', 'dilation', 'stride')),
                            (False,) * pad + geo['is_causal'])
    spatial = (1,) * pad + geo['spatial']
    qf, kf, vf = (t.detach().reshape(1, -1, 2, 4).transpose(1, 2) for t in (q, k, v))
    score_mod = None
    if rpb is not None:
        score_mod = na._flex_score_mod(spatial, geometry, rpb.detach().reshape(2, *(1,) * pad, *rpb.shape[1:]))
    block_mask = na._flex_block_mask(spatial, geometry, q.device)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "flex_attention called without torch.compile()": intended here
        out = flex_attention(qf, kf, vf, score_mod=score_mod, block_mask=block_mask)
    want = call(geo, q.detach(), k.detach(), v.detach(), None if rpb is None else rpb.detach(), 'reference')
    torch.testing.assert_close(out.transpose(1, 2).reshape(q.shape), want, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_flex_backend_forward_on_cpu():
    """The backend as users run it (compiled; ~30 s of CPU compile cold). A backward on CPU raises."""
    q, k, v = (torch.randn(2, 7, 9, 2, 16) for _ in range(3))
    rpb = torch.randn(2, 5, 5)
    want = na2d(q, k, v, 3, (2, 1), rpb=rpb, backend='torch')
    torch.testing.assert_close(na2d(q, k, v, 3, (2, 1), rpb=rpb, backend='flex'), want, atol=1e-5, rtol=1e-5)
    q.requires_grad_()
    out = na2d(q, k, v, 3, (2, 1), rpb=rpb, backend='flex')  # e.g. a model in eval mode, no torch.no_grad()
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(UnsupportedBackendError, match="'flex' has no backward on CPU.*backend='torch'"):
        out.sum().backward()


def test_flex_backend_limits():
    q = torch.randn(1, 6, 6, 2, 16, dtype=torch.float64)
    with pytest.raises(UnsupportedBackendError, match="'flex' cannot run na here: .*not float64"):
        na2d(q, q, q, 3, backend='flex')
