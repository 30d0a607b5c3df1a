"""timm's model conventions on every family of the project, on small real tensors.

timm's own test-suite (tests/test_timm_suite.py) checks structure on the meta device; here: gradient
checkpointing really recomputes the blocks, ``reset_classifier`` / ``forward_head(pre_logits=True)``
behave as timm's models do, the usual attributes exist, and the pretrained configs' preprocessing is
the one upstream evaluated with.
"""
from __future__ import annotations

import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers.halo_attn import HaloAttn  # a public module (not re-exported by timm.layers)

from visionattn.layers import CBAM, ELA, BiLevelRoutingAttention, NeighborhoodAttention2D, TripletAttention
from visionattn.timm_suite import project_models

# family: (entry point, small kwargs, input side, the attention module every block has)
FAMILIES = {
    'biformer': ('biformer_tiny', dict(depths=(1, 1, 1, 1), embed_dims=(32, 64, 96, 128), n_win=4), 64,
                 BiLevelRoutingAttention),
    'nat': ('nat_mini', dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4)), 64, NeighborhoodAttention2D),
    'dinat': ('dinat_mini', dict(embed_dim=16, depths=(2, 1, 1, 1), num_heads=(1, 2, 2, 4),
                                 dilations=((1, 2), (1,), (1,), (1,))), 64, NeighborhoodAttention2D),
    'nat_isotropic': ('dinat_isotropic_small', dict(embed_dim=32, depth=2, num_heads=2, dilations=(1, 2)), 64,
                      NeighborhoodAttention2D),
    'halonet': ('halonet_h0', {}, 256, HaloAttn),
    'cbam_resnet': ('resnet18_cbam', {}, 64, CBAM),
    'ela_resnet': ('resnet18_ela', {}, 64, ELA),
    'triplet_mobilenetv2': ('mobilenetv2_100_triplet', {}, 64, TripletAttention),
}


def build(family: str, **kwargs) -> tuple[torch.nn.Module, torch.Tensor]:
    name, small, side, _ = FAMILIES[family]
    torch.manual_seed(0)
    batch = 1 if side > 64 else 2  # HaloNet-H0 needs 256px inputs
    return timm.create_model(name, **small, **kwargs), torch.randn(batch, 3, side, side)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_set_grad_checkpointing_recomputes_every_block_in_backward(family):
    """With checkpointing, each attention module starts twice per training step (forward, and again in
    backward) and the gradients are the same; timm's checkpoint_seq is what does it. (Pre-hooks: torch's
    checkpoint stops recomputing once the tensors backward needs exist, which can be inside the module.)"""
    attention = FAMILIES[family][3]
    model, x = build(family, num_classes=3)
    model.train()
    calls = []
    for module in model.modules():
        if isinstance(module, attention):
            module.register_forward_pre_hook(lambda *_: calls.append(1))
    modules = len([m for m in model.modules() if isinstance(m, attention)])
    grads = []
    for checkpointing in (False, True):
        model.set_grad_checkpointing(checkpointing)
        model.zero_grad()
        calls.clear()
        model(x).logsumexp(-1).sum().backward()
        assert len(calls) == modules * (2 if checkpointing else 1)
        grads.append([p.grad.clone() for p in model.parameters()])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_reset_classifier_and_pre_logits_as_timm(family):
    model, x = build(family, num_classes=5)
    model.eval()
    batch = x.shape[0]
    assert isinstance(model.in_chans, int) and model.in_chans == 3 and model.num_classes == 5
    assert model.num_features > 0 and model.head_hidden_size > 0
    assert all({'num_chs', 'reduction', 'module'} <= set(info) for info in model.feature_info)
    assert model.pretrained_cfg['architecture'] == FAMILIES[family][0]
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (batch, model.head_hidden_size)
        model.reset_classifier(7, 'max')
        assert model.num_classes == 7 and model(x).shape == (batch, 7)
        pooled_max = model.forward_head(features, pre_logits=True)
        model.reset_classifier(3)  # global_pool None keeps 'max'
        torch.testing.assert_close(model.forward_head(features, pre_logits=True), pooled_max)
        model.reset_classifier(0, '')
        assert model.num_classes == 0 and model(x).dim() == 4  # unpooled map
    model.double()
    model.reset_classifier(2)
    assert all(p.dtype == torch.float64 for p in model.get_classifier().parameters())  # the model's dtype, not float32


# What upstream evaluated with: BiFormer datasets.py (Resize(256/224 * size, bicubic), CenterCrop);
# NAT/DiNAT and the isotropic models validate with timm 0.5's defaults (no default_cfg: crop 0.875, bicubic),
# DiNAT-L at 384 with crop_pct 1.0 (classification/configs/dinat_large_384.yml); CBAM and Triplet
# train_imagenet.py (Resize(256), CenterCrop(224): torchvision's bilinear); ELA and HaloNet have no official
# code: timm's defaults for ResNet (bilinear, 0.875) and timm's halonet_h1 config (bicubic, 0.95).
EXPECTED_PREPROCESSING = {
    'biformer_*': (0.875, 'bicubic'),
    'nat_*': (0.875, 'bicubic'),
    'dinat_*': (0.875, 'bicubic'),
    'dinat_large_384.*': (1.0, 'bicubic'),
    'dinat_large_11x11.in22k_ft_in1k_384': (1.0, 'bicubic'),
    'resnet*_cbam*': (0.875, 'bilinear'),
    'mobilenetv2_100_cbam*': (0.875, 'bilinear'),
    'resnet*_triplet*': (0.875, 'bilinear'),
    'mobilenetv2_100_triplet*': (0.875, 'bilinear'),
    'resnet*_ela*': (0.875, 'bilinear'),
    'mobilenetv2_100_ela*': (0.875, 'bilinear'),
    'halonet_h*': (0.95, 'bicubic'),
}


def test_pretrained_cfgs_preprocess_as_upstream_evaluated():
    import fnmatch
    project = project_models()
    tagged = timm.list_models(filter=project, include_tags=True)
    assert {t.split('.')[0] for t in tagged} == set(project)
    for name in tagged:
        patterns = [p for p in EXPECTED_PREPROCESSING if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name, p + '.*')]
        assert patterns, f'{name}: no expected preprocessing listed'
        crop_pct, interpolation = EXPECTED_PREPROCESSING[max(patterns, key=len)]  # the most specific pattern
        cfg = timm.get_pretrained_cfg(name)
        assert (cfg.crop_pct, cfg.interpolation) == (crop_pct, interpolation), name
        assert (cfg.mean, cfg.std) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), name
