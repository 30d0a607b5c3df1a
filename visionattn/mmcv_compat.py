"""mmcv's compiled ops (``mmcv._ext``) backed by torchvision, for mmcv-lite on a current PyTorch.

mmcv 2.1 publishes no wheels for torch 2.14 and its sources need a C++20 patch and half an hour of
compiling. mmdet and mmseg import ``mmcv.ops`` at import time even where a model never runs a
compiled op, so without ``mmcv._ext`` they cannot be imported at all. This module provides a stand-in
``mmcv._ext`` that is found *only when the real one is absent*. It implements what detection and segmentation
models of this project need, with torchvision's kernels (which have CPU and CUDA implementations):

- ``nms`` (hence mmcv's ``nms`` and ``batched_nms``), with mmcv's legacy ``offset`` argument;
- ``roi_align_forward`` / ``roi_align_backward`` (``pool_mode='avg'``, mmcv's default);
- ``deform_conv_*`` and ``modulated_deform_conv_*`` (DCNv1 / DCNv2);
- ``sigmoid_focal_loss_*`` (mmdet's FocalLoss calls it on CUDA tensors; written in PyTorch here).

Every other op raises :class:`NotImplementedError` naming it and the way to get compiled mmcv.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)

__all__ = ['install', 'compiled_mmcv_available', 'stand_in_active', 'SUPPORTED_OPS']

_FULL_MMCV_ROUTE = (
    'This op needs mmcv compiled with its C++/CUDA ops: run `bash tools/build_mmcv_full.sh` '
    '(builds mmcv 2.1.0 from source, about 30 minutes on 2 cores) or install an mmcv wheel that '
    'matches your torch and CUDA versions.')


def compiled_mmcv_available() -> bool:
    """True when mmcv's own compiled extension is installed (the stand-in is then never used).

    Looks for the file without importing mmcv.
    """
    spec = importlib.util.find_spec('mmcv')
    if spec is None or not spec.submodule_search_locations:
        return False
    locations = list(spec.submodule_search_locations)
    return importlib.machinery.PathFinder.find_spec('mmcv._ext', locations) is not None


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0) -> torch.Tensor:
    if offset not in (0, 1):
        raise ValueError(f'nms offset must be 0 or 1, got {offset}')
    if offset:  # mmcv's legacy mode counts box widths as x2 - x1 + 1; shifting x2, y2 is equivalent
        boxes = torch.cat([boxes[:, :2], boxes[:, 2:4] + offset], dim=1)
    return torchvision.ops.nms(boxes.float(), scores.float(), float(iou_threshold))


def _check_avg_pool(pool_mode: int) -> None:
    if pool_mode != 1:
        raise NotImplementedError("mmcv roi_align with pool_mode='max' has no torchvision counterpart. "
                                  + _FULL_MMCV_ROUTE)


def _roi_align_forward(input: torch.Tensor, rois: torch.Tensor, output: torch.Tensor,
                       argmax_y: torch.Tensor, argmax_x: torch.Tensor, aligned_height: int,
                       aligned_width: int, spatial_scale: float, sampling_ratio: int,
                       pool_mode: int, aligned: bool) -> None:
    _check_avg_pool(pool_mode)
    output.copy_(torch.ops.torchvision.roi_align(input, rois.to(input.dtype), spatial_scale, aligned_height,
                                                 aligned_width, sampling_ratio, aligned))


def _roi_align_backward(grad_output: torch.Tensor, rois: torch.Tensor, argmax_y: torch.Tensor,
                        argmax_x: torch.Tensor, grad_input: torch.Tensor, aligned_height: int,
                        aligned_width: int, spatial_scale: float, sampling_ratio: int,
                        pool_mode: int, aligned: bool) -> None:
    _check_avg_pool(pool_mode)
    n, c, h, w = grad_input.shape
    grad_input.copy_(torch.ops.torchvision._roi_align_backward(
        grad_output, rois.to(grad_output.dtype), spatial_scale, aligned_height, aligned_width,
        n, c, h, w, sampling_ratio, aligned))


def _deform_conv(input: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor,
                 mask: torch.Tensor | None, bias: torch.Tensor | None,
                 stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
                 group: int) -> torch.Tensor:
    if input.shape[1] != weight.shape[1] * group:
        raise ValueError(f'deform conv: input has {input.shape[1]} channels, weight expects '
                         f'{weight.shape[1]} x {group} groups')
    return torchvision.ops.deform_conv2d(input, offset, weight, bias, stride=stride, padding=padding,
                                         dilation=dilation, mask=mask)


def _deform_conv_grads(input, weight, offset, mask, bias, grad_output, stride, padding, dilation, group):
    """Gradients of the torchvision deform conv, by autograd through a recomputed forward."""
    leaves = [t.detach().requires_grad_(True) if t is not None else None
              for t in (input, weight, offset, mask, bias)]
    with torch.enable_grad():
        out = _deform_conv(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4],
                           stride, padding, dilation, group)
        present = [t for t in leaves if t is not None]
        grads = torch.autograd.grad(out, present, grad_output)
    it = iter(grads)
    return [next(it) if t is not None else None for t in leaves]


def _deform_conv_forward(input, weight, offset, output, columns, ones, kW, kH, dW, dH, padW, padH,
                         dilationW, dilationH, group, deformable_group, im2col_step) -> None:
    output.copy_(_deform_conv(input, weight, offset, None, None, (dH, dW), (padH, padW),
                              (dilationH, dilationW), group))


def _deform_conv_backward_input(input, offset, gradOutput, gradInput, gradOffset, weight, columns,
                                kW, kH, dW, dH, padW, padH, dilationW, dilationH, group,
                                deformable_group, im2col_step) -> None:
    g_in, _, g_off, _, _ = _deform_conv_grads(input, weight, offset, None, None, gradOutput, (dH, dW),
                                              (padH, padW), (dilationH, dilationW), group)
    gradInput.copy_(g_in)
    gradOffset.copy_(g_off)


def _deform_conv_backward_parameters(input, offset, gradOutput, gradWeight, columns, ones, kW, kH,
                                     dW, dH, padW, padH, dilationW, dilationH, group,
                                     deformable_group, scale, im2col_step) -> None:
    _, g_w, _, _, _ = _deform_conv_grads(input, gradWeight, offset, None, None, gradOutput, (dH, dW),
                                         (padH, padW), (dilationH, dilationW), group)
    gradWeight.add_(g_w, alpha=scale)


def _modulated_deform_conv_forward(input, weight, bias, ones, offset, mask, output, columns, kernel_h,
                                   kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                                   group, deformable_group, with_bias) -> None:
    output.copy_(_deform_conv(input, weight, offset, mask, bias if with_bias else None,
                              (stride_h, stride_w), (pad_h, pad_w), (dilation_h, dilation_w), group))


def _modulated_deform_conv_backward(input, weight, bias, ones, offset, mask, columns, grad_input,
                                    grad_weight, grad_bias, grad_offset, grad_mask, grad_output,
                                    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                                    dilation_w, group, deformable_group, with_bias) -> None:
    grads = _deform_conv_grads(input, weight, offset, mask, bias if with_bias else None, grad_output,
                               (stride_h, stride_w), (pad_h, pad_w), (dilation_h, dilation_w), group)
    for dst, src in zip((grad_input, grad_weight, grad_offset, grad_mask, grad_bias),
                        (grads[0], grads[1], grads[2], grads[3], grads[4])):
        if src is not None:
            dst.copy_(src)


def _sigmoid_focal_loss(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                        gamma: float, alpha: float) -> torch.Tensor:
    """Element-wise loss as mmcv's kernel defines it: ``target == num_classes`` means background."""
    num_classes = input.shape[1]
    positive = torch.nn.functional.one_hot(target, num_classes + 1)[:, :num_classes].to(input.dtype)
    p = input.sigmoid()
    log_p = torch.nn.functional.logsigmoid(input)
    log_not_p = torch.nn.functional.logsigmoid(-input)
    loss = -(alpha * (1 - p).pow(gamma) * log_p * positive
             + (1 - alpha) * p.pow(gamma) * log_not_p * (1 - positive))
    if weight.numel():  # per-class weight of each sample's label; background samples keep weight 1
        loss = loss * torch.cat([weight, weight.new_ones(1)])[target].unsqueeze(1)
    return loss


def _sigmoid_focal_loss_forward(input, target, weight, output, gamma, alpha) -> None:
    output.copy_(_sigmoid_focal_loss(input, target, weight, gamma, alpha))


def _sigmoid_focal_loss_backward(input, target, weight, grad_input, gamma, alpha) -> None:
    leaf = input.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = _sigmoid_focal_loss(leaf, target, weight, gamma, alpha)
        grad_input.copy_(torch.autograd.grad(loss.sum(), leaf)[0])


SUPPORTED_OPS = {
    'nms': _nms,
    'roi_align_forward': _roi_align_forward,
    'roi_align_backward': _roi_align_backward,
    'deform_conv_forward': _deform_conv_forward,
    'deform_conv_backward_input': _deform_conv_backward_input,
    'deform_conv_backward_parameters': _deform_conv_backward_parameters,
    'modulated_deform_conv_forward': _modulated_deform_conv_forward,
    'modulated_deform_conv_backward': _modulated_deform_conv_backward,
    'sigmoid_focal_loss_forward': _sigmoid_focal_loss_forward,
    'sigmoid_focal_loss_backward': _sigmoid_focal_loss_backward,
}


class _TorchvisionExt(types.ModuleType):
    """Stands in for ``mmcv._ext``: known ops run on torchvision, the rest raise when called.

    Every attribute exists (mmcv checks ``hasattr`` for each op when ``mmcv.ops`` is imported), but
    only the ops in :data:`SUPPORTED_OPS` do anything.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith('__'):
            raise AttributeError(name)

        def unsupported(*args: Any, **kwargs: Any) -> None:
            raise NotImplementedError(
                f"mmcv op '{name}' is not available: mmcv-lite has no compiled ops and visionattn backs "
                f"only {sorted(SUPPORTED_OPS)} with torchvision. " + _FULL_MMCV_ROUTE)

        unsupported.__name__ = name
        return unsupported


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of ``mmcv._ext`` only after every other finder failed to find the real one."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'mmcv._ext':
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin='visionattn.mmcv_compat')

    def create_module(self, spec):
        ext = _TorchvisionExt(spec.name, __doc__)
        for name, fn in SUPPORTED_OPS.items():
            setattr(ext, name, fn)
        return ext

    def exec_module(self, module):
        pass


def install() -> None:
    """Serve the stand-in ``mmcv._ext`` whenever mmcv's compiled one cannot be found.

    The finder goes last on ``sys.meta_path``, so a compiled mmcv always wins. ``import visionattn``
    calls this, so the order in which visionattn and mmdet/mmseg are imported does not matter.
    """
    if not any(isinstance(f, _StandInFinder) for f in sys.meta_path):
        sys.meta_path.append(_StandInFinder())


def stand_in_active() -> bool:
    """True when ``mmcv._ext`` has been imported and is the torchvision stand-in."""
    return isinstance(sys.modules.get('mmcv._ext'), _TorchvisionExt)
