"""NeighborhoodAttention1D/2D/3D: NATTEN 0.14-0.15 parameter layout, padding of small maps, forward
semantics, and export before any eager call (issue 20)."""
from __future__ import annotations

import re

import pytest
import torch
from torch.nn import functional as F

import visionattn.ops.na as na
from test_ops_na import oracle
from test_ops_na2d import reference_na2d
from visionattn.layers import NeighborhoodAttention1D, NeighborhoodAttention2D, NeighborhoodAttention3D
from visionattn.ops import use_backend


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


@pytest.mark.slow
def test_onnx_export_before_any_eager_call_then_eager_then_again(tmp_path):
    """Issue 20: exported before the model ever ran, the next eager forward returned the exporter's
    FakeTensor and a second export failed (a shape cache kept the tracer's tensors). Two exports, ~1 min."""
    pytest.importorskip('onnxscript')
    ort = pytest.importorskip('onnxruntime')
    na._PLANS.clear()  # as in a fresh process
    module = NeighborhoodAttention2D(16, 2, 3, dilation=2).eval()
    x = torch.randn(1, 9, 8, 16)
    torch.onnx.export(module, (x,), dynamo=True).save(str(tmp_path / 'first.onnx'))
    assert len(na._PLANS) == 0  # nothing cached under the exporter
    with torch.no_grad():
        eager = module(x)
        with use_backend('reference'):
            want = module(x)
    assert type(eager) is torch.Tensor
    torch.testing.assert_close(eager, want, atol=1e-5, rtol=1e-5)
    torch.onnx.export(module, (x,), dynamo=True).save(str(tmp_path / 'second.onnx'))
    for name in ('first', 'second'):
        session = ort.InferenceSession(str(tmp_path / f'{name}.onnx'))
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert abs(got - want.numpy()).max() < 1e-5, name


def test_torch_export_and_compile_before_any_eager_call():
    na._PLANS.clear()
    module = NeighborhoodAttention3D(8, 2, 3, kernel_size_d=3, dilation_d=2).eval()
    x = torch.randn(2, 6, 4, 3, 8)
    exported = torch.export.export(module, (x,))
    with torch.no_grad():
        compiled = torch.compile(module, backend='aot_eager', fullgraph=True)(x)
        eager = module(x)
        with use_backend('reference'):
            want = module(x)
    assert type(eager) is torch.Tensor
    for got in (eager, compiled, exported.module()(x)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def natten_forward(module, x: torch.Tensor) -> torch.Tensor:
    """NATTEN 0.14-0.15's module forward (pad every axis at its end, crop after) on the dense oracle."""
    kernel, dilation = module._kernels, module._dilations
    spatial = x.shape[1:-1]
    pads = [max(0, k * d - size) for k, d, size in zip(kernel, dilation, spatial)]
    x = F.pad(x, [0, 0] + [p for pad in reversed(pads) for p in (0, pad)])
    q, k, v = module.qkv(x).reshape(*x.shape[:-1], 3, module.num_heads, module.head_dim).unbind(-3)
    rank = len(kernel)
    out = oracle(q * module.scale, k, v, kernel, dilation, (1,) * rank, (False,) * rank, module.rpb, 1.0)
    out = out.reshape(x.shape)[(slice(None), *(slice(0, size) for size in spatial))]
    return module.proj(out.to(x.dtype))


@pytest.mark.parametrize('module, size', [
    (NeighborhoodAttention1D(16, 2, 5, dilation=2), (13,)),
    (NeighborhoodAttention1D(16, 2, 3, bias=False), (2,)),  # padded
    (NeighborhoodAttention3D(16, 2, 3, kernel_size_d=5, dilation_d=1, dilation=2), (6, 7, 6)),
    (NeighborhoodAttention3D(16, 2, 3), (2, 3, 4)),  # every axis padded
])
def test_1d_and_3d_match_natten(module, size):
    module = module.double()
    if module.rpb is not None:
        torch.nn.init.normal_(module.rpb)
    x = torch.randn(2, *size, 16, dtype=torch.float64, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, natten_forward(module, x))
    out.square().sum().backward()
    assert x.grad is not None


def test_1d_and_3d_parameter_layout():
    assert {n: tuple(p.shape) for n, p in NeighborhoodAttention1D(8, 2, 5).named_parameters()} == {
        'qkv.weight': (24, 8), 'qkv.bias': (24,), 'rpb': (2, 9), 'proj.weight': (8, 8), 'proj.bias': (8,)}
    module = NeighborhoodAttention3D(8, 2, 3, kernel_size_d=5, dilation=2)
    assert module.rpb.shape == (2, 9, 5, 5) and (module.dilation_d, module.window_size_d) == (2, 10)
    assert 'kernel_size_d=5, dilation_d=2, kernel_size=3, dilation=2' in repr(module)


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


@pytest.mark.parametrize('module, size', [
    (NeighborhoodAttention1D(8, 2, 3, dilation=2), (5,)),  # padded
    (NeighborhoodAttention2D(8, 2, 3, dilation=2), (5, 9)),  # height padded
    (NeighborhoodAttention3D(8, 2, 3, bias=False), (2, 4, 3)),  # depth and width padded
])
def test_torchscript_and_fx_as_timm_uses_them(module, size):
    """timm scripts whole models (the layers' forward is scripted, the op called as Python) and traces
    them with FX (the layers are leaves), also FX then TorchScript; every way computes the eager output."""
    from timm.models import create_feature_extractor, get_notrace_modules

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), module).eval()
    x = torch.randn(2, *size, 8)
    expected = model(x)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), expected)
    assert type(module) in get_notrace_modules()
    traced = create_feature_extractor(model, return_nodes=['1'])  # timm's tracer, with its leaf modules
    assert any(n.op == 'call_module' and n.target == '1' for n in traced.graph.nodes)  # a leaf, not traced through
    torch.testing.assert_close(traced(x)['1'], expected)
    torch.testing.assert_close(torch.jit.script(traced)(x)['1'], expected)
    with pytest.raises(Exception, match=r'expects \(batch, '):
        scripted(torch.randn(2, 8))


def test_onnx_graph_with_dynamic_sizes_pads_maps_smaller_than_the_window(tmp_path):
    """Exported at a size that needs no padding, the graph still pads smaller maps (no branch on the size)."""
    import numpy as np
    import onnxruntime

    torch.manual_seed(0)
    layer = NeighborhoodAttention2D(16, 2, kernel_size=7).eval()
    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC}
    torch.onnx.export(layer, (torch.randn(1, 12, 12, 16),), tmp_path / 'na.onnx', dynamo=True,
                      dynamic_shapes=(dims,))
    session = onnxruntime.InferenceSession(str(tmp_path / 'na.onnx'))
    for height, width in [(12, 12), (5, 9), (20, 6)]:
        x = torch.randn(1, height, width, 16)
        with torch.no_grad():
            expected = layer(x).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert np.abs(got - expected).max() < 1e-5, (height, width)
