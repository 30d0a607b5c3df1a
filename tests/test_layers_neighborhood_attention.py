"""NeighborhoodAttention2D: NATTEN 0.14 parameter layout, padding of small maps, forward semantics."""
from __future__ import annotations

import re

import pytest
import torch
from torch.nn import functional as F

from test_ops_na2d import reference_na2d
from visionattn.layers import NeighborhoodAttention2D


def natten014_forward(module: NeighborhoodAttention2D, x: torch.Tensor) -> torch.Tensor:
    """NATTEN 0.14's module forward, step by step, on the dense reference attention (float64)."""
    batch, height, width, channels = x.shape
    window = module.kernel_size * module.dilation
    pad_r, pad_b = max(0, window - width), max(0, window - height)
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    hp, wp = x.shape[1:3]
    q, k, v = module.qkv(x).reshape(batch, hp, wp, 3, module.num_heads, module.head_dim).unbind(3)
    out = reference_na2d(q * module.scale, k, v, (module.kernel_size,) * 2, (module.dilation,) * 2,
                         module.rpb, scale=1.0)
    out = out.reshape(batch, hp, wp, channels)[:, :height, :width]
    return module.proj(out.to(x.dtype))


@pytest.mark.parametrize('size, kernel, dilation, bias', [
    ((9, 11), 3, 2, True),   # L % d != 0
    ((5, 8), 3, 2, True),    # height smaller than kernel * dilation: padded
    ((4, 3), 5, 1, False),   # both axes padded, no rpb
    ((7, 7), 7, 1, True),
])
def test_matches_natten014_module(size, kernel, dilation, bias):
    module = NeighborhoodAttention2D(16, 2, kernel, dilation, bias=bias).double()
    if bias:
        torch.nn.init.normal_(module.rpb)  # larger than the trunc-normal init, so a wrong index shows
    x = torch.randn(2, *size, 16, dtype=torch.float64, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, natten014_forward(module, x))
    out.square().sum().backward()
    assert x.grad is not None and (not bias or module.rpb.grad.abs().sum() > 0)


def test_parameters_match_official_checkpoints(upstream_manifests):
    """Every attention layer of every official NAT/DiNAT checkpoint loads into our module by shape."""
    pattern = re.compile(r'(.*\.attn)\.rpb$')
    checked = 0
    for variant, keys in upstream_manifests.items():
        if not variant.startswith(('nat', 'dinat')):
            continue
        for key, shape in keys.items():
            match = pattern.match(key)
            if not match:
                continue
            prefix = match.group(1)
            heads, size, _ = shape
            dim = keys[f'{prefix}.qkv.weight'][1]
            module = NeighborhoodAttention2D(dim, heads, kernel_size=(size + 1) // 2)
            expected = {name[len(prefix) + 1:]: tuple(s) for name, s in keys.items()
                        if name.startswith(prefix + '.')}
            assert {n: tuple(p.shape) for n, p in module.state_dict().items()} == expected, key
            checked += 1
    assert checked > 0


def test_onnx_export_matches_eager(tmp_path):
    pytest.importorskip('onnxscript')
    ort = pytest.importorskip('onnxruntime')
    module = NeighborhoodAttention2D(16, 2, 3, dilation=2).eval()
    x = torch.randn(1, 9, 8, 16)
    with torch.no_grad():
        want = module(x).numpy()
    torch.onnx.export(module, (x,), dynamo=True).save(str(tmp_path / 'na.onnx'))
    session = ort.InferenceSession(str(tmp_path / 'na.onnx'))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert abs(got - want).max() < 1e-5


def test_qk_scale_and_repr():
    module = NeighborhoodAttention2D(32, 4, 5, dilation=None, qk_scale=0.1)
    assert module.scale == 0.1 and module.dilation == 1
    assert 'rel_pos_bias=True' in repr(module)
    assert NeighborhoodAttention2D(32, 4, 5).scale == 8 ** -0.5


@pytest.mark.parametrize('kwargs, match', [
    (dict(kernel_size=4), 'odd'),
    (dict(kernel_size=3, dilation=0), 'dilation'),
    (dict(kernel_size=3, attn_drop=0.1), 'attention dropout'),
    (dict(kernel_size=3, num_heads=3), 'divisible'),
])
def test_bad_arguments(kwargs, match):
    kwargs = dict(dict(dim=16, num_heads=2), **kwargs)
    with pytest.raises(ValueError, match=match):
        NeighborhoodAttention2D(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match=r'\(batch, height, width, channels\)'):
        NeighborhoodAttention2D(16, 2, 3)(torch.randn(2, 16, 8, 8, 1))
