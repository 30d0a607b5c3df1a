"""CBAM, ELA and Triplet attention as plug-ins of mmdet's and mmseg's ResNet."""
from __future__ import annotations

import pytest
import timm
import torch
from mmengine.registry import DefaultScope

import visionattn.mm  # noqa: F401  (registers the plug-ins)
from visionattn.layers import CBAM, ELA, TimmELA, TripletAttention
from visionattn.mm.plugins import resnet_to_openmmlab

PLUGINS = {'visionattn.CBAM': (CBAM, 'cbam'), 'visionattn.ELA': (ELA, 'ela'),
           'visionattn.TimmELA': (TimmELA, 'timm_ela'), 'visionattn.TripletAttention': (TripletAttention, 'triplet_attention')}


def _build_backbone(scope: str, backbone: dict):
    registry = {'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry'}[scope]
    models = __import__(registry, fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return models.build(backbone)


@pytest.mark.parametrize('scope, backbone_type', [('mmdet', 'ResNet'), ('mmseg', 'ResNetV1c')])
@pytest.mark.parametrize('plugin_type', sorted(PLUGINS))
def test_plugin_builds_and_trains_inside_openmmlab_resnet(scope, backbone_type, plugin_type):
    cls, name = PLUGINS[plugin_type]
    backbone = _build_backbone(scope, dict(
        type=backbone_type, depth=50, out_indices=(0, 1, 2, 3), stem_channels=16, base_channels=16,
        plugins=[dict(cfg=dict(type=plugin_type), stages=(False, True, True, True), position='after_conv3')]))
    assert not hasattr(backbone.layer1[0], name)
    for layer, channels in ((backbone.layer2, 128), (backbone.layer3, 256), (backbone.layer4, 512)):
        plugin = getattr(layer[0], name)
        assert isinstance(plugin, cls)
        if cls is CBAM:
            assert plugin.channel.fc1.in_channels == channels
    backbone.train()
    outs = backbone(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512]
    sum(o.mean() for o in outs).backward()
    plugin_grads = [p.grad for n, p in backbone.named_parameters() if f'.{name}.' in n]
    assert plugin_grads and all(g is not None and torch.isfinite(g).all() for g in plugin_grads)


def test_plugin_options_reach_the_module():
    backbone = _build_backbone('mmdet', dict(
        type='ResNet', depth=50, stem_channels=16, base_channels=16,
        plugins=[dict(cfg=dict(type='visionattn.ELA', size='L'), stages=(False, False, True, True),
                      position='after_conv3'),
                 dict(cfg=dict(type='visionattn.TripletAttention', kernel_size=3), stages=(True, False, False, False),
                      position='after_conv3')]))
    assert backbone.layer3[0].ela.size == 'L' and backbone.layer1[0].triplet_attention.kernel_size == 3


def test_timm_weights_load_into_the_openmmlab_resnet():
    model = timm.create_model('resnet50_triplet').eval()
    backbone = _build_backbone('mmdet', dict(
        type='ResNet', depth=50, out_indices=(0, 1, 2, 3),
        plugins=[dict(cfg=dict(type='visionattn.TripletAttention'), stages=(True, True, True, True),
                      position='after_conv3')]))
    backbone.load_state_dict(resnet_to_openmmlab(model.state_dict(), model), strict=True)
    backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.forward_intermediates(x, intermediates_only=True)[1:]
        for ours, ref in zip(backbone(x), expected):
            torch.testing.assert_close(ours, ref)


def test_openmmlab_conversion_needs_a_bottleneck_resnet():
    model = timm.create_model('resnet18_triplet')
    with pytest.raises(ValueError, match='bottleneck ResNet'):
        resnet_to_openmmlab(model.state_dict(), model)
