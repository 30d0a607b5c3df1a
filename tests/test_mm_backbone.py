"""visionattn.TimmBackbone: any timm model as an mmdet / mmseg / mmpretrain backbone."""
from __future__ import annotations

import pytest
import timm
import torch
from mmengine.registry import init_default_scope

from visionattn.errors import ConfigError, UnknownNameError
from visionattn.mm.backbones import TimmBackbone, stage_feature_info


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_builds_from_every_openmmlab_registry(scope):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    init_default_scope(scope)
    backbone = registry.build(dict(type='visionattn.TimmBackbone', model_name='resnet18'))
    outs = backbone(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == backbone.out_channels == [64, 128, 256, 512]
    assert [64 // o.shape[-1] for o in outs] == backbone.out_strides == [4, 8, 16, 32]


def test_out_indices_count_stages_and_outputs_are_nchw():
    # Swin's timm features are NHWC and start at stride 4; ResNet's start at the stride-2 stem.
    swin = TimmBackbone('swin_tiny_patch4_window7_224', out_indices=(1, -1), model_kwargs=dict(img_size=64))
    outs = swin(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 192, 8, 8), (1, 768, 2, 2)]
    assert all(o.is_contiguous() for o in outs)
    resnet = TimmBackbone('resnet18', out_indices=(0,))
    assert resnet(torch.rand(1, 3, 64, 64))[0].shape == (1, 64, 16, 16)


def test_frozen_stages_freeze_stem_and_leading_stages():
    backbone = TimmBackbone('resnet18', frozen_stages=1)
    frozen = {n for n, p in backbone.model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in backbone.model.named_parameters() if n.startswith(('conv1.', 'bn1.', 'layer1.'))}
    backbone.train()
    assert not backbone.model.bn1.training and not backbone.model.layer1[0].bn1.training
    assert backbone.model.layer2[0].bn1.training
    stem_only = TimmBackbone('convnext_atto', frozen_stages=0)
    assert {n.split('.')[0] for n, p in stem_only.model.named_parameters() if not p.requires_grad} == {'stem_0', 'stem_1'}
    everything = TimmBackbone('resnet18', frozen_stages=4)
    assert not any(p.requires_grad for p in everything.parameters())


def test_frozen_stage_weights_do_not_move_in_training():
    backbone = TimmBackbone('resnet18', frozen_stages=2)
    before = {n: p.clone() for n, p in backbone.model.named_parameters()}
    running_mean = backbone.model.layer2[0].bn1.running_mean.clone()
    opt = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    backbone.train()
    sum(o.mean() for o in backbone(torch.rand(2, 3, 64, 64))).backward()
    opt.step()
    after = dict(backbone.model.named_parameters())
    assert torch.equal(before['layer2.0.conv1.weight'], after['layer2.0.conv1.weight'])
    assert not torch.equal(before['layer3.0.downsample.0.weight'], after['layer3.0.downsample.0.weight'])
    assert torch.equal(running_mean, backbone.model.layer2[0].bn1.running_mean)


def test_norm_eval_keeps_batchnorm_statistics_fixed():
    backbone = TimmBackbone('resnet18', norm_eval=True)
    backbone.train()
    stats = backbone.model.layer4[1].bn2.running_var.clone()
    backbone(torch.rand(2, 3, 64, 64) * 5)
    assert torch.equal(stats, backbone.model.layer4[1].bn2.running_var)
    assert all(p.requires_grad for p in backbone.parameters())


def test_in_chans_and_drop_path_rate_reach_the_model():
    backbone = TimmBackbone('resnet18', in_chans=13, drop_path_rate=0.2)
    assert backbone.model.conv1.in_channels == 13
    assert backbone.model.layer4[1].drop_path.drop_prob == pytest.approx(0.2)
    assert backbone(torch.rand(1, 13, 64, 64))[-1].shape == (1, 512, 2, 2)


def test_pretrained_local_file_loads_and_adapts_input_channels(tmp_path):
    source = timm.create_model('resnet18')
    path = tmp_path / 'resnet18.pth'
    torch.save(source.state_dict(), path)
    backbone = TimmBackbone('resnet18', pretrained=str(path))
    backbone.init_weights()  # OpenMMLab's convention: pretrained weights load here, never at construction
    torch.testing.assert_close(backbone.model.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    # timm repeats / scales RGB filters for other channel counts; a single channel gets their sum
    gray = TimmBackbone('resnet18', pretrained=str(path), in_chans=1)
    gray.init_weights()
    torch.testing.assert_close(gray.model.conv1.weight, source.conv1.weight.sum(1, keepdim=True))


def test_runner_init_weights_keeps_pretrained_weights(tmp_path):
    source = timm.create_model('resnet18')
    path = tmp_path / 'resnet18.pth'
    torch.save(source.state_dict(), path)
    backbone = TimmBackbone('resnet18', pretrained=str(path))
    backbone.init_weights()
    torch.testing.assert_close(backbone.model.conv1.weight, source.conv1.weight)


def test_clear_errors():
    with pytest.raises(UnknownNameError, match=r"unknown timm model 'resnet_18'.*resnet18"):
        TimmBackbone('resnet_18')
    with pytest.raises(ConfigError, match=r'\[4\] out of range; resnet18 has 4 stages, so out_indices are in 0..3'):
        TimmBackbone('resnet18', out_indices=(4,))
    with pytest.raises(ConfigError, match=r'out_indices must be a non-empty list or tuple.*got 5'):
        TimmBackbone('resnet18', out_indices=5)
    with pytest.raises(ConfigError, match='names a stage twice'):
        TimmBackbone('resnet18', out_indices=(3, -1))
    with pytest.raises(ConfigError, match=r'frozen_stages must be an int in -1..4 for resnet18'):
        TimmBackbone('resnet18', frozen_stages=5)
    with pytest.raises(FileNotFoundError):
        TimmBackbone('resnet18', pretrained='/nonexistent/weights.pth').init_weights()


def test_stage_feature_info_allocates_nothing():
    stages = stage_feature_info('resnet50')
    assert [s['num_chs'] for s in stages] == [256, 512, 1024, 2048]
    assert [s['reduction'] for s in stages] == [4, 8, 16, 32]


def test_timm_classifier_keeps_pretrained_weights_through_init_weights(tmp_path):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    source = timm.create_model('resnet18')
    path = tmp_path / 'cls.pth'
    torch.save(source.state_dict(), path)
    model = MODELS.build(dict(type='visionattn.TimmClassifier', model_name='resnet18', pretrained=str(path)))
    model.init_weights()
    torch.testing.assert_close(model.model.fc.weight, source.fc.weight)
    torch.testing.assert_close(model.model.conv1.weight, source.conv1.weight)
