"""TimmBackbone's dense-prediction options: input padding and cropping, output norms, stage freezing
and pretrained weights for widened kernels. Small timm models stand in where the option is generic."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import visionattn  # noqa: F401
from visionattn.mm.backbones import (TimmBackbone, _grown_kernels, _meta_features_model, _shapes,
                                     required_input_multiple)


@pytest.mark.parametrize('model_name, multiple', [
    ('resnet18', 1),            # pads inside its convs: maps are ceil(side / stride) already
    ('davit_tiny', 1),          # pads before its patchify convs
    ('focalnet_tiny_srf', 32),  # unpadded stride-4/2 patchify convs floor the maps
    ('convnext_atto', 32),
    ('halonet26t', 256),        # halo block 8 at stride 32
    ('halonet_h3', 320),        # block 10
    ('haloregnetz_b', 224),     # block 7
])
def test_required_input_multiple(model_name, multiple):
    assert required_input_multiple(model_name) == multiple


def test_padding_gives_ceil_maps_and_crops_back():
    """A model that floors (ConvNeXt patchify) returns ceil(side / stride) maps of the padded input."""
    backbone = TimmBackbone('convnext_atto').eval()
    assert backbone.pad_to_multiple == 32
    x = torch.randn(1, 3, 100, 130)
    with torch.no_grad():
        out = backbone(x)
        assert [tuple(f.shape[-2:]) for f in out] == [(25, 33), (13, 17), (7, 9), (4, 5)]
        padded = backbone.model(F.pad(x, (0, 30, 0, 28)))  # the same model on the padded input
    for f, p, stride in zip(out, padded, backbone.out_strides):
        torch.testing.assert_close(f, p[..., :-(-100 // stride), :-(-130 // stride)])

    unpadded = TimmBackbone('convnext_atto', pad_to_multiple=1).eval()
    with torch.no_grad():
        assert [tuple(f.shape[-2:]) for f in unpadded(x)] == [(25, 32), (12, 16), (6, 8), (3, 4)]


def test_no_padding_when_input_is_a_multiple():
    backbone = TimmBackbone('convnext_atto').eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(backbone(x), backbone.model(x)):
            torch.testing.assert_close(a, b)


def test_halo_multiple_is_enforced_with_a_clear_error():
    with pytest.raises(ValueError, match='multiples of 256'):
        TimmBackbone('halonet26t', pad_to_multiple=32)
    with pytest.raises(ValueError, match="'auto' or an int"):
        TimmBackbone('convnext_atto', pad_to_multiple=0)


def test_feature_norms_normalise_every_output():
    backbone = TimmBackbone('convnext_atto', feature_norms=dict(type='layernorm2d', eps=1e-5)).eval()
    assert len(backbone.feature_norms) == 4 and backbone.feature_norms[0].eps == 1e-5
    with torch.no_grad():
        for f in backbone(torch.randn(2, 3, 64, 64)):
            torch.testing.assert_close(f.mean(1), torch.zeros_like(f[:, 0]), atol=1e-4, rtol=0)
            torch.testing.assert_close(f.var(1, unbiased=False), torch.ones_like(f[:, 0]), atol=1e-2, rtol=0)
    with pytest.raises(ValueError, match='timm norm layer name'):
        TimmBackbone('convnext_atto', feature_norms='no_such_norm')


def test_out_norm_is_the_deprecated_name_of_feature_norms():
    with pytest.warns(DeprecationWarning, match='use feature_norms'):
        old = TimmBackbone('convnext_atto', out_norm='layernorm2d')
    assert len(old.feature_norms) == 4
    with pytest.raises(ValueError, match='give feature_norms only'):
        TimmBackbone('convnext_atto', out_norm='layernorm2d', feature_norms='layernorm2d')
    # checkpoints saved before the rename (out_norms.* keys) load into feature_norms
    state = {k.replace('feature_norms.', 'out_norms.'): torch.full_like(v, 0.5) if 'feature_norms' in k else v
             for k, v in old.state_dict().items()}
    new = TimmBackbone('convnext_atto', feature_norms='layernorm2d')
    new.load_state_dict(state)
    assert torch.all(new.feature_norms[3].weight == 0.5)


def _trainable_top_modules(model_name: str, frozen_stages: int) -> set[str]:
    with torch.device('meta'):  # freezing needs no weights
        backbone = TimmBackbone(model_name, frozen_stages=frozen_stages)
    return {name.split('.')[0] for name, p in backbone.model.named_parameters() if p.requires_grad}


def test_frozen_stages_when_the_last_feature_module_has_no_parameters():
    """halonet26t's last feature module is ByobNet's final_conv, an Identity standing for stage 4."""
    assert _trainable_top_modules('halonet26t', 3) == {'stages_3'}
    assert _trainable_top_modules('halonet26t', 4) == set()
    assert _trainable_top_modules('halonet26t', 0) == {'stages_0', 'stages_1', 'stages_2', 'stages_3'}
    # haloregnetz_b's final_conv is a real 1x1 conv: it belongs to the last stage
    assert _trainable_top_modules('haloregnetz_b', 3) == {'stages_3', 'final_conv'}


def test_pretrained_kernels_are_zero_padded_when_model_kwargs_widen_them(tmp_path):
    """Wider depthwise kernels loaded from narrower pretrained ones compute the same function."""
    weights = tmp_path / 'convnext_atto.pth'
    torch.save(timm.create_model('convnext_atto').state_dict(), weights)
    as_published = TimmBackbone('convnext_atto', pretrained=str(weights))
    widened = TimmBackbone('convnext_atto', pretrained=str(weights), model_kwargs=dict(kernel_sizes=9))
    for backbone in (as_published, widened):
        backbone.init_weights()
        backbone.eval()
    assert widened.model.stages_0.blocks[0].conv_dw.kernel_size == (9, 9)
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        for a, b in zip(as_published(x), widened(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_focalnet_dense_recipe_kernels_are_recognised_as_grown():
    """FocalNet's detection/segmentation recipe: focal_windows 9 on the 3/5/7-kernel ImageNet weights."""
    published = _shapes(_meta_features_model('focalnet_tiny_lrf'))
    recipe = _shapes(_meta_features_model('focalnet_tiny_lrf', focal_windows=(9, 9, 9, 9)))
    grown = _grown_kernels(published, recipe)
    assert grown and all('focal_layers' in key for key in grown)
    assert recipe['layers_0.blocks.0.modulation.focal_layers.2.0.weight'][-1] == 13
    # a change that is not a kernel widening is left to timm's own loader
    assert _grown_kernels(published, _shapes(_meta_features_model('focalnet_tiny_lrf', mlp_ratio=2.0))) == []
