"""CBAM, ELA and Triplet attention as plug-ins of mmdet's and mmseg's ResNet.

mmdet and mmseg build the ``plugins`` of their ResNet bottlenecks with mmcv's
``build_plugin_layer``: it looks ``type`` up in the registry of the current scope (so
``'visionattn.TripletAttention'`` reaches this package's registry), calls the class with
``in_channels=`` and names the module after the class in snake case (``triplet_attention``,
``cbam``, ``ela``, ``timm_ela``). ``position='after_conv3'`` is where the papers put the modules:
after the last BatchNorm of the residual branch, before the addition::

    backbone=dict(type='ResNet', depth=50, ...,
                  plugins=[dict(cfg=dict(type='visionattn.TripletAttention'),
                                stages=(False, True, True, True), position='after_conv3')])

:func:`resnet_to_openmmlab` renames the weights of this package's ``resnet50/101_<attn>`` models
(official CBAM / Triplet checkpoints included, through their checkpoint filter) into such a
backbone, for ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from __future__ import annotations

import re
from typing import Any

import torch
from mmcv.cnn.bricks.plugin import infer_abbr
from torch import nn

from visionattn.layers.cnn_attention import CBAM, ELA, TimmELA, TripletAttention
from visionattn.models.cnn_attention import checkpoint_filter_fn
from visionattn.registry import MODELS

__all__ = ['resnet_to_openmmlab']

for _plugin in (CBAM, ELA, TimmELA, TripletAttention):
    MODELS.register_module(module=_plugin)

_BLOCK_ATTENTION = re.compile(r'(?P<block>layer\d+\.\d+)\.se\.(?P<inner>.+)')


def resnet_to_openmmlab(state_dict: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights of a timm ``resnet*_<attn>`` model, as mmdet/mmseg ``ResNet`` keys with the plug-in.

    Args:
        state_dict: the timm model's state dict, or an official CBAM / Triplet ResNet checkpoint
            (converted by :func:`visionattn.models.cnn_attention.checkpoint_filter_fn`).
        model: the timm model the weights belong to (``timm.create_model('resnet50_triplet')``);
            its attention class names the plug-in.

    The backbone must put the plug-in at ``after_conv3`` in every stage (mmdet's ResNet has
    plug-ins only in bottleneck blocks, so ResNet-50 and deeper). The classifier is dropped.
    """
    plugin_types = {type(block.se) for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
                    for block in layer if getattr(block, 'se', None) is not None}
    if len(plugin_types) != 1 or not hasattr(model.layer1[0], 'conv3'):
        raise ValueError('resnet_to_openmmlab needs a bottleneck ResNet with one attention class in every block, '
                         f"e.g. timm.create_model('resnet50_triplet'); got {type(model).__name__} with {plugin_types}")
    name = infer_abbr(plugin_types.pop())
    out = {}
    for key, value in checkpoint_filter_fn(state_dict, model).items():
        if key.startswith('fc.'):
            continue
        if m := _BLOCK_ATTENTION.fullmatch(key):
            key = f"{m['block']}.{name}.{m['inner']}"
        out[key] = value
    return out
