"""The torchvision-backed stand-in for mmcv's compiled ops, checked against independent references."""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision

import visionattn  # noqa: F401  (arms the stand-in)
from visionattn import mmcv_compat

pytestmark = pytest.mark.skipif(mmcv_compat.compiled_mmcv_available(),
                                reason='compiled mmcv is installed: the stand-in is not used')


def _boxes(n: int, size: float = 50.0) -> torch.Tensor:
    xy = torch.rand(n, 2) * size
    wh = torch.rand(n, 2) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_stand_in_serves_mmcv_ext():
    import mmcv.ops  # noqa: F401  (would raise ModuleNotFoundError without the stand-in)
    assert mmcv_compat.stand_in_active()


@pytest.mark.parametrize('offset', [0, 1])
def test_nms_matches_torchvision(offset):
    from mmcv.ops import nms
    boxes, scores = _boxes(60), torch.rand(60)
    dets, keep = nms(boxes, scores, iou_threshold=0.4, offset=offset)
    shifted = boxes.clone()
    shifted[:, 2:] += offset  # legacy mmcv boxes are inclusive of the last pixel
    expected = torchvision.ops.nms(shifted, scores, 0.4)
    assert torch.equal(keep, expected)
    assert torch.allclose(dets[:, 4], scores[expected])


def test_batched_nms_keeps_classes_apart():
    from mmcv.ops import batched_nms
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    dets, keep = batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=0.5))
    assert sorted(keep.tolist()) == [0, 2]


def test_roi_align_forward_and_backward_match_torchvision():
    from mmcv.ops import RoIAlign
    feats = torch.randn(2, 3, 16, 16, requires_grad=True)
    rois = torch.cat([torch.tensor([[0.], [1.], [1.]]), _boxes(3, 12)], dim=1)
    out = RoIAlign((4, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)(feats, rois)
    grad = torch.randn_like(out)
    (g_ours,) = torch.autograd.grad(out, feats, grad)
    ref = torchvision.ops.roi_align(feats, rois, (4, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    (g_ref,) = torch.autograd.grad(ref, feats, grad)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g_ours, g_ref)


def test_roi_align_max_pool_mode_says_what_to_do():
    from mmcv.ops import roi_align
    with pytest.raises(NotImplementedError, match='build_mmcv_full.sh'):
        roi_align(torch.randn(1, 2, 8, 8), torch.tensor([[0., 0, 0, 4, 4]]), (2, 2), 1.0, 0, 'max', True)


def _bilinear(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Value of img (C, H, W) at a real position (0-d tensors, differentiable), zero outside, as DCN defines it."""
    h, w = img.shape[1:]
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return img.new_zeros(img.shape[0])
    y0, x0 = math.floor(y.item()), math.floor(x.item())
    total = img.new_zeros(img.shape[0])
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                total = total + wy * wx * img[:, yy, xx]
    return total


def _reference_deform_conv(x, offset, weight, mask, stride, pad, dil, deform_groups):
    """mmcv's DCN definition, pixel by pixel: offset channels are (dy, dx) pairs per kernel tap and group."""
    n, c, h, w = x.shape
    out_c, _, kh, kw = weight.shape
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    cpg = c // deform_groups
    out = x.new_zeros(n, out_c, oh, ow)
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                cols = []
                for g in range(deform_groups):
                    taps = []
                    for ki in range(kh):
                        for kj in range(kw):
                            k = ki * kw + kj
                            dy = offset[b, g * 2 * kh * kw + 2 * k, i, j]
                            dx = offset[b, g * 2 * kh * kw + 2 * k + 1, i, j]
                            y = dy + (i * stride - pad + ki * dil)
                            xx = dx + (j * stride - pad + kj * dil)
                            v = _bilinear(x[b, g * cpg:(g + 1) * cpg], y, xx)
                            if mask is not None:
                                v = v * mask[b, g * kh * kw + k, i, j]
                            taps.append(v)
                    cols.append(torch.stack(taps, dim=1))  # (cpg, kh*kw)
                col = torch.cat(cols, dim=0)  # (c, kh*kw)
                out[b, :, i, j] = (weight.reshape(out_c, c, kh * kw) * col).sum((1, 2))
    return out


def test_deform_conv_follows_mmcv_offset_layout():
    from mmcv.ops import deform_conv2d
    x = torch.randn(1, 4, 6, 6)
    weight = torch.randn(3, 4, 3, 3)
    offset = torch.randn(1, 2 * 2 * 9, 6, 6) * 0.7
    out = deform_conv2d(x, offset, weight, 1, 1, 1, 1, 2)
    ref = _reference_deform_conv(x, offset, weight, None, 1, 1, 1, 2)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_modulated_deform_conv_forward_and_gradients():
    from mmcv.ops import modulated_deform_conv2d
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(1, 18, 5, 5, dtype=torch.float64) * 0.6).requires_grad_()
    mask = torch.rand(1, 9, 5, 5, dtype=torch.float64, requires_grad=True)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 1, 1)
    ref = _reference_deform_conv(x, offset, weight, mask, 1, 1, 1, 1) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    inputs = (x, offset, mask, weight, bias)
    torch.testing.assert_close(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(ref, inputs, grad))


def test_sigmoid_focal_loss_matches_mmdet_python_version():
    from mmcv.ops import sigmoid_focal_loss
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
    logits = torch.randn(12, 5, requires_grad=True)
    labels = torch.randint(0, 6, (12,))  # 5 == background
    ours = sigmoid_focal_loss(logits, labels, 2.0, 0.25, None, 'none')
    one_hot = torch.nn.functional.one_hot(labels, 6)[:, :5].float()
    ref = py_sigmoid_focal_loss(logits, one_hot, None, 2.0, 0.25, 'none')
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), logits)[0], torch.autograd.grad(ref.sum(), logits)[0])


def test_unsupported_op_names_itself_and_the_full_mmcv_route():
    from mmcv.ops import box_iou_rotated
    with pytest.raises(NotImplementedError, match=r"'box_iou_rotated'.*build_mmcv_full\.sh"):
        box_iou_rotated(torch.rand(2, 5), torch.rand(3, 5))


def test_compiled_mmcv_wins_over_the_stand_in(tmp_path):
    """With an ``mmcv._ext`` on the path, the stand-in is never consulted."""
    fake = tmp_path / 'mmcv'
    fake.mkdir()
    (fake / '__init__.py').write_text('')
    (fake / '_ext.py').write_text('COMPILED = True\n')
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import visionattn.mmcv_compat as c
        c.install()
        import mmcv._ext
        assert getattr(mmcv._ext, 'COMPILED', False) and c.compiled_mmcv_available() and not c.stand_in_active()
    """)
    subprocess.run([sys.executable, '-c', code], check=True)


def test_mmdet_and_mmseg_models_import():
    assert importlib.util.find_spec('mmdet') and importlib.util.find_spec('mmseg')
    import mmdet.models  # noqa: F401
    import mmseg.models  # noqa: F401
