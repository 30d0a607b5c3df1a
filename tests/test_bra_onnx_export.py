"""BiFormer's routing attention exports to ONNX (dynamo exporter) and matches onnxruntime (issue 20).

Each export takes seconds (torch.export, decompositions, translation), hence ``slow``. The layer
runs in 'masked' padding mode, so the padded size exports the token mask through routing and
attention; a second export in one process and an eager run after each export are checked too.
"""
from __future__ import annotations

import pytest
import timm
import torch
from torch._subclasses.fake_tensor import FakeTensor

from visionattn.layers import BiLevelRoutingAttention

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxscript')
ort = pytest.importorskip('onnxruntime')


def check_export(model: torch.nn.Module, x: torch.Tensor, path) -> None:
    """Export, run in onnxruntime against eager PyTorch, then run eagerly again."""
    with torch.no_grad():
        want = model(x)
    # optimize=False: onnxscript's graph optimizer adds seconds and nothing this test checks
    torch.onnx.export(model, (x,), dynamo=True, verbose=False, optimize=False).save(str(path))
    assert 'TopK' in {node.op_type for node in onnx.load(str(path)).graph.node}  # the routing's top-k
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        after = model(x)
    assert not isinstance(after, FakeTensor)
    torch.testing.assert_close(after, want, rtol=0, atol=0)


@pytest.mark.slow
def test_routing_attention_layer_exports_at_two_sizes(tmp_path):
    layer = BiLevelRoutingAttention(16, 2, n_win=3, topk=2, pad_mode='masked').eval()
    for size in ((7, 8), (9, 9)):  # padded to 9x9 (token mask), and a multiple of n_win
        check_export(layer, torch.randn(2, *size, 16), tmp_path / f'bra_{size[0]}x{size[1]}.onnx')


@pytest.mark.slow
def test_tiny_biformer_exports_at_two_sizes(tmp_path):
    model = timm.create_model('biformer_tiny', depths=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), head_dim=16,
                              n_win=4, topks=(2, 3, 4, -2), num_classes=3).eval()
    for size in (64, 80):  # stage maps 16/8/4 and 20/10/5 (padded to 20/12/8)
        check_export(model, torch.randn(2, 3, size, size), tmp_path / f'biformer_{size}.onnx')
