"""NAT / DiNAT: exactness against the official code, official key layouts, timm and dense-prediction APIs.

Models here are the small fixture architectures (or built on the meta device): nothing large is run.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import timm
import timm.optim
import torch
import torch.nn.functional as F

import visionattn
from conftest import REPO_ROOT, load_upstream_fixture
from visionattn.models.nat import NAT, NATIsotropic, checkpoint_filter_fn, isotropic_from_upstream_kwargs

FIXTURES = ['nat_small_dims', 'dinat_small_dims']
NAT_VARIANTS = ['nat_mini', 'nat_tiny', 'nat_small', 'nat_base']
DINAT_VARIANTS = ['dinat_mini', 'dinat_tiny', 'dinat_small', 'dinat_base', 'dinat_large']
# Parameter counts (M) published upstream (README tables / papers, via ../shared/notes/upstream.md).
UPSTREAM_PARAMS_M = {'nat_mini': 20.0, 'nat_tiny': 27.9, 'nat_small': 50.7, 'nat_base': 89.8, 'dinat_large': 200.9}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


def fixture_model(name: str) -> tuple[NAT, dict]:
    fx = load_upstream_fixture(name)
    return visionattn.from_official(fx['family'], json.loads(fx['upstream_kwargs']), fx['state_dict']), fx


def our_kwargs(fx: dict) -> dict:
    """timm entry-point kwargs for the fixture's architecture."""
    up = json.loads(fx['upstream_kwargs'])
    return {k: up[k] for k in ('embed_dim', 'depths', 'num_heads', 'mlp_ratio', 'kernel_size', 'num_classes')} | (
        {'dilations': up['dilations']} if 'dilations' in up else {'dilations': None})


@pytest.mark.parametrize('name', FIXTURES)
def test_official_logits_pytorch_path(name):
    model, fx = fixture_model(name)
    with torch.no_grad(), visionattn.use_backend('torch'):
        logits = model(fx['input'])
    assert rel_err(logits, fx['logits']) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('name', FIXTURES)
def test_official_logits_interpreted_triton_path(name):
    """One image of each fixture through the Triton kernels on Triton's CPU interpreter (~30 s each)."""
    pytest.importorskip('triton')
    model, fx = fixture_model(name)
    with torch.no_grad(), visionattn.use_backend('triton'):  # TRITON_INTERPRET=1 (conftest): CPU interpreter
        logits = model(fx['input'][:1])  # one image keeps the interpreter's run short; eval mode: rows are independent
    assert rel_err(logits, fx['logits'][:1]) < 1e-4


@pytest.mark.parametrize('variant', NAT_VARIANTS + DINAT_VARIANTS)
def test_official_key_layout_converts_exactly(variant, upstream_manifests):
    with torch.device('meta'):
        model = timm.create_model(variant)
        official = {k: torch.empty(shape) for k, shape in upstream_manifests[variant].items()}
    converted = checkpoint_filter_fn(official, model)
    target = model.state_dict()
    assert sorted(converted) == sorted(target)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in target.items()}
    params = sum(p.numel() for p in model.parameters())
    assert params == sum(math.prod(s) for s in upstream_manifests[variant].values())
    if variant in UPSTREAM_PARAMS_M:
        assert round(params / 1e6, 1) == UPSTREAM_PARAMS_M[variant]


ISOTROPIC_VARIANTS = {  # classification/isotropic.py: (embed_dim, num_heads, dilation), 12 blocks, kernel 7
    'nat_isotropic_small': (384, 12, 1), 'dinat_isotropic_small': (384, 12, 2),
    'nat_isotropic_base': (768, 24, 1), 'dinat_isotropic_base': (768, 24, 2)}
ISOTROPIC_PARAMS_M = {'small': 22, 'base': 86}  # classification/DiNAT.md, "Isotropic variants"


def upstream_isotropic_layout(embed_dim: int, num_heads: int, depth: int = 12, kernel: int = 7, mlp_ratio: int = 4,
                              patch: int = 16, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of upstream's ``NATIsotropic(...).state_dict()`` (classification/isotropic.py): dinats.py's
    PatchEmbed (proj conv, norm), ``layers.{i}`` of NATransformerLayer (norm1; NATTEN 0.14's
    NeighborhoodAttention2D with qkv, rpb, proj; norm2; nat.py's Mlp fc1/fc2), norm, a Linear head; the
    average pool has no parameters. No manifest of the released files exists in the fixtures, so this
    restates the modules the upstream constructor builds."""
    d, hidden = embed_dim, embed_dim * mlp_ratio
    layout = {'patch_embed.proj.weight': (d, 3, patch, patch), 'patch_embed.proj.bias': (d,),
              'patch_embed.norm.weight': (d,), 'patch_embed.norm.bias': (d,)}
    for i in range(depth):
        layout |= {f'layers.{i}.{k}': shape for k, shape in {
            'norm1.weight': (d,), 'norm1.bias': (d,),
            'attn.rpb': (num_heads, 2 * kernel - 1, 2 * kernel - 1),
            'attn.qkv.weight': (3 * d, d), 'attn.qkv.bias': (3 * d,), 'attn.proj.weight': (d, d), 'attn.proj.bias': (d,),
            'norm2.weight': (d,), 'norm2.bias': (d,),
            'mlp.fc1.weight': (hidden, d), 'mlp.fc1.bias': (hidden,), 'mlp.fc2.weight': (d, hidden), 'mlp.fc2.bias': (d,),
        }.items()}
    return layout | {'norm.weight': (d,), 'norm.bias': (d,), 'head.weight': (num_classes, d), 'head.bias': (num_classes,)}


@pytest.mark.parametrize('variant', sorted(ISOTROPIC_VARIANTS))
def test_isotropic_official_layout_converts_exactly_through_from_official(variant):
    embed_dim, num_heads, dilation = ISOTROPIC_VARIANTS[variant]
    layout = upstream_isotropic_layout(embed_dim, num_heads)
    upstream_kwargs = dict(embed_dim=embed_dim, num_heads=num_heads, dilation=dilation)  # the rest: upstream defaults
    with torch.device('meta'):
        official = {k: torch.empty(shape) for k, shape in layout.items()}
        model = isotropic_from_upstream_kwargs(**upstream_kwargs)
        entry_point = timm.create_model(variant)
    converted = checkpoint_filter_fn(official, model)
    result = model.load_state_dict(converted, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in entry_point.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in model.state_dict().items()}  # the timm entry point is upstream's model
    assert [b.attn.dilation for b in entry_point.blocks] == [1 if i % 2 == 0 else dilation for i in range(12)]
    params = sum(p.numel() for p in entry_point.parameters())
    assert params == sum(math.prod(s) for s in layout.values())
    assert round(params / 1e6) == ISOTROPIC_PARAMS_M[variant.split('_')[-1]]


def test_isotropic_from_official_loads_values_and_pools_like_upstream():
    layout = upstream_isotropic_layout(embed_dim=32, num_heads=2, depth=2, kernel=3, num_classes=5)
    official = {k: torch.randn(shape) for k, shape in layout.items()}
    model = visionattn.from_official('dinat_isotropic', dict(embed_dim=32, num_heads=2, depth=2, kernel_size=3,
                                                             num_classes=5), official)
    torch.testing.assert_close(model.blocks[1].attn.rpb, official['layers.1.attn.rpb'])
    assert [b.attn.dilation for b in model.blocks] == [1, 2]
    x = torch.randn(1, 3, 72, 90)  # not multiples of 16: zero-padded at the right/bottom to 80x96, as upstream
    with torch.no_grad():
        tokens = model.patch_embed.norm(model.patch_embed.proj(F.pad(x, (0, 6, 0, 8))).permute(0, 2, 3, 1))
        expected = model.head.fc(model.norm(model.blocks(tokens)).mean((1, 2)))  # norm, then average pool, head
        torch.testing.assert_close(model(x), expected)
    with pytest.raises(ValueError, match='VisionTransformerLayer'):
        visionattn.from_official('nat_isotropic', dict(layer='VisionTransformerLayer'))
    with pytest.raises(TypeError, match="unknown \\['depths'\\]"):
        visionattn.from_official('nat_isotropic', dict(depths=[2, 2]))


def test_isotropic_features_and_intermediates():
    kwargs = dict(embed_dim=32, depth=4, num_heads=2, dilations=(1, 2, 1, 2))
    model = timm.create_model('dinat_isotropic_small', features_only=True, **kwargs).eval()
    assert model.feature_info.channels() == [32] * 3 and model.feature_info.reduction() == [16] * 3
    with torch.no_grad():
        assert [tuple(f.shape) for f in model(torch.randn(1, 3, 64, 80))] == [(1, 32, 4, 5)] * 3
        classifier = timm.create_model('dinat_isotropic_small', **kwargs).eval()
        x = torch.randn(1, 3, 64, 64)
        final, intermediates = classifier.forward_intermediates(x, indices=2)  # the last two blocks
        torch.testing.assert_close(final, classifier.forward_features(x))
        torch.testing.assert_close(intermediates[-1].permute(0, 2, 3, 1), classifier.blocks(classifier.patch_embed(x)))
        torch.testing.assert_close(intermediates[0].permute(0, 2, 3, 1), classifier.blocks[:3](classifier.patch_embed(x)))


def test_stage_norms_keyword_and_keys_still_load():
    fx = load_upstream_fixture('nat_small_dims')
    with pytest.warns(DeprecationWarning, match='feature_norms'):
        old = NAT(stage_norms=True, **our_kwargs(fx))
    assert old.feature_norms is not None and not hasattr(old, 'stage_norms')
    renamed = {k.replace('feature_norms.', 'stage_norms.'): v for k, v in old.state_dict().items()}  # a pre-rename file
    new = NAT(feature_norms=True, **our_kwargs(fx))
    result = new.load_state_dict(checkpoint_filter_fn(renamed, new))
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(new.feature_norms[2].weight, old.feature_norms[2].weight)


def test_dilations_and_kernels_of_the_official_variants():
    def attn(variant):
        with torch.device('meta'):
            model = timm.create_model(variant)
        return [[(b.attn.kernel_size, b.attn.dilation) for b in stage.blocks] for stage in model.stages]

    # classification/dinat.py upstream
    tiny = [[1, 8, 1], [1, 4, 1, 4], [1, 2] * 9, [1] * 5]
    assert attn('dinat_tiny') == [[(7, d) for d in stage] for stage in tiny]
    assert attn('dinat_mini') == [[(7, d) for d in stage] for stage in [[1, 8, 1], [1, 4, 1, 4], [1, 2] * 3, [1] * 5]]
    assert attn('dinat_large_384') == [[(7, d) for d in stage] for stage in [[1, 13, 1], [1, 6, 1, 6], [1, 3] * 9, [1] * 5]]
    assert attn('dinat_large_11x11') == [[(11, d) for d in stage] for stage in tiny]
    assert {d for stage in attn('nat_base') for _, d in stage} == {1}


def test_pretrained_cfgs_name_the_official_files():
    cfg = timm.get_pretrained_cfg('dinat_large_11x11.in22k_ft_in1k_384')
    assert cfg.url.endswith('imagenet1k/dinat_large_in22k_in1k_384_11x11.pth') and cfg.input_size == (3, 384, 384)
    cfg = timm.get_pretrained_cfg('nat_tiny.in1k')
    assert cfg.url == 'https://shi-labs.com/projects/nat/checkpoints/CLS/nat_tiny.pth'
    assert cfg.license == 'mit' and cfg.paper_ids == 'arXiv:2204.07143' and cfg.first_conv == 'patch_embed.proj.0'
    assert set(timm.list_models('*nat*', pretrained=True)) >= {f'{v}.in1k' for v in NAT_VARIANTS + DINAT_VARIANTS[:-1]}


def test_features_only_any_input_size():
    fx = load_upstream_fixture('dinat_small_dims')
    model = timm.create_model('dinat_mini', features_only=True, out_indices=(1, 2, 3), **our_kwargs(fx)).eval()
    assert model.feature_info.channels() == [64, 128, 256] and model.feature_info.reduction() == [8, 16, 32]
    with torch.no_grad():
        # 100x130: odd maps (25x33 ... 4x5); 32x32: every map smaller than kernel x dilation (zero-padded inside)
        for size, sides in (((100, 130), [(13, 17), (7, 9), (4, 5)]), ((32, 32), [(4, 4), (2, 2), (1, 1)])):
            features = model(torch.randn(1, 3, *size))
            assert [tuple(f.shape) for f in features] == [(1, c, *s) for c, s in zip((64, 128, 256), sides)]
            assert all(torch.isfinite(f).all() for f in features)


def test_forward_intermediates_agree_with_forward():
    model, fx = fixture_model('nat_small_dims')
    x = fx['input'][:1, :, :64, :64]
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        assert [f.shape[1] for f in intermediates] == [32, 64, 128, 256]
        torch.testing.assert_close(final, model.forward_features(x))
        torch.testing.assert_close(model.forward_head(final), model(x))
        torch.testing.assert_close(intermediates[-1].permute(0, 2, 3, 1), model.stages(model.patch_embed(x)))
        reached, last = model.forward_intermediates(x, indices=[1], stop_early=True, output_fmt='NHWC')
        torch.testing.assert_close(last[0], intermediates[1].permute(0, 2, 3, 1))
        torch.testing.assert_close(reached, last[0])  # stopped at stage 1: no final norm (sized for stage 3)
        normed = model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)
        torch.testing.assert_close(normed[0], final.permute(0, 3, 1, 2))


def _dense_prediction_checkpoint(fx: dict, dims: list[int]) -> dict:
    """The layout of an official mmdet/mmseg NAT model: backbone.* without norm/head, norm0..3, neck, heads."""
    backbone = {f'backbone.{k}': v for k, v in fx['state_dict'].items() if not k.startswith(('norm.', 'head.'))}
    for i, dim in enumerate(dims):
        backbone[f'backbone.norm{i}.weight'] = torch.rand(dim) + 0.5
        backbone[f'backbone.norm{i}.bias'] = torch.randn(dim)
    backbone['neck.lateral_convs.0.conv.weight'] = torch.randn(8, dims[0], 1, 1)
    backbone['rpn_head.rpn_conv.weight'] = torch.randn(8, 8, 3, 3)
    return {'meta': {'epoch': 36, 'CLASSES': ('person',)}, 'state_dict': backbone}


def test_official_dense_prediction_checkpoints_load_with_their_output_norms(tmp_path):
    model, fx = fixture_model('nat_small_dims')
    dims = [32, 64, 128, 256]
    checkpoint = _dense_prediction_checkpoint(fx, dims)
    x = fx['input'][:1, :, :64, :64]
    with torch.no_grad():
        raw = model.forward_intermediates(x, intermediates_only=True)
        expected = [F.layer_norm(f.permute(0, 2, 3, 1), (d,), checkpoint['state_dict'][f'backbone.norm{i}.weight'],
                                 checkpoint['state_dict'][f'backbone.norm{i}.bias']).permute(0, 3, 1, 2)
                    for i, (f, d) in enumerate(zip(raw, dims))]

        # from_official with the upstream backbone config (its out_indices): exactly the upstream backbone
        upstream = json.loads(fx['upstream_kwargs']) | dict(out_indices=(0, 1, 2, 3), frozen_stages=-1)
        upstream.pop('num_classes')
        backbone = visionattn.from_official('nat', upstream, checkpoint)
        for ours, ref in zip(backbone.forward_intermediates(x, intermediates_only=True), expected):
            torch.testing.assert_close(ours, ref)

        # timm features_only (what visionattn.TimmBackbone builds), loading the whole mmdet file
        path = tmp_path / 'mask_rcnn_nat.pth'
        torch.save(checkpoint, path)
        features = timm.create_model('nat_mini', features_only=True, feature_norms=True, pretrained=True,
                                     pretrained_cfg_overlay=dict(file=str(path)), **our_kwargs(fx)).eval()
        for ours, ref in zip(features(x), expected):
            torch.testing.assert_close(ours, ref)

    with pytest.raises(ValueError, match='feature_norms=True'):
        timm.create_model('nat_mini', features_only=True, pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path)), **our_kwargs(fx))


def test_imagenet_weights_in_a_model_with_feature_norms_start_them_at_identity():
    model, fx = fixture_model('nat_small_dims')
    with_norms = NAT(feature_norms=True, **our_kwargs(fx))
    result = with_norms.load_state_dict(checkpoint_filter_fn(fx['state_dict'], with_norms))
    assert not result.missing_keys and not result.unexpected_keys
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in with_norms.feature_norms)


def test_in_chans_adapts_the_pretrained_first_conv(tmp_path):
    fx = load_upstream_fixture('nat_small_dims')
    path = tmp_path / 'nat.pth'
    torch.save(fx['state_dict'], path)
    official = fx['state_dict']['patch_embed.proj.0.weight']
    for in_chans in (1, 13):
        model = timm.create_model('nat_mini', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                  in_chans=in_chans, **our_kwargs(fx))
        weight = model.patch_embed.proj[0].weight
        assert weight.shape == (official.shape[0], in_chans, 3, 3)
        if in_chans == 1:
            torch.testing.assert_close(weight, official.sum(1, keepdim=True))
        assert model(torch.randn(1, in_chans, 32, 32)).shape == (1, 10)


def test_other_kernel_size_resizes_the_relative_positional_bias():
    fx = load_upstream_fixture('nat_small_dims')
    model = NAT(**(our_kwargs(fx) | dict(kernel_size=11)))
    result = model.load_state_dict(checkpoint_filter_fn(fx['state_dict'], model))
    assert not result.missing_keys and not result.unexpected_keys
    assert model.stages[0].blocks[0].attn.rpb.shape == (1, 21, 21)
    with pytest.raises(ValueError, match='number of heads must match'):
        checkpoint_filter_fn(fx['state_dict'], NAT(**(our_kwargs(fx) | dict(num_heads=[2, 2, 4, 8]))))


def test_gradient_checkpointing_and_drop_path():
    fx = load_upstream_fixture('dinat_small_dims')
    x = torch.randn(1, 3, 32, 32)
    grads = []
    for checkpointing in (False, True):
        model = NAT(**our_kwargs(fx))
        model.load_state_dict(checkpoint_filter_fn(fx['state_dict'], model))
        model.set_grad_checkpointing(checkpointing)
        model.train()
        model(x).logsumexp(-1).sum().backward()
        grads.append(model.stages[0].blocks[0].attn.rpb.grad)
    torch.testing.assert_close(grads[0], grads[1])

    model = timm.create_model('dinat_mini', drop_path_rate=0.3, **our_kwargs(fx))
    rates = [b.drop_path1.drop_prob if hasattr(b.drop_path1, 'drop_prob') else 0.
             for stage in model.stages for b in stage.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.3, len(rates)).tolist())


def test_optimizer_groups_exclude_relative_positional_bias_from_weight_decay():
    fx = load_upstream_fixture('nat_small_dims')
    model = timm.create_model('nat_mini', **our_kwargs(fx))
    assert model.no_weight_decay() == {n for n, _ in model.named_parameters() if n.endswith('attn.rpb')}
    optimizer = timm.optim.create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.05, layer_decay=0.9)
    no_decay = {id(p) for g in optimizer.param_groups if g['weight_decay'] == 0 for p in g['params']}
    assert id(model.stages[1].blocks[0].attn.rpb) in no_decay
    assert id(model.stages[1].blocks[0].attn.qkv.weight) not in no_decay


def test_from_official_reports_bad_arguments_and_mismatched_checkpoints():
    fx = load_upstream_fixture('dinat_small_dims')
    kwargs = json.loads(fx['upstream_kwargs'])
    with pytest.raises(TypeError, match="unknown \\['window_size'\\]"):
        visionattn.from_official('dinat', kwargs | dict(window_size=7))
    with pytest.raises(ValueError, match='one dilation per block'):
        visionattn.from_official('dinat', kwargs | dict(dilations=[[8], [1], [1, 2], [1]]))
    with pytest.raises(RuntimeError, match='missing keys'):
        visionattn.from_official('dinat', kwargs | dict(depths=[1, 2, 3, 1], dilations=None), fx['state_dict'])


# ----------------------------------------------------------------------------------------------------
# OpenMMLab configs (configs/nat, configs/dinat)
# ----------------------------------------------------------------------------------------------------

CONFIGS = {name: REPO_ROOT / 'configs' / name for name in (
    'nat/nat_tiny_imagenet.py', 'dinat/dinat_tiny_imagenet.py',
    'nat/nat_isotropic_small_imagenet.py', 'dinat/dinat_isotropic_small_imagenet.py',
    'nat/nat_isotropic_base_imagenet.py', 'dinat/dinat_isotropic_base_imagenet.py',
    'nat/mask_rcnn_nat_tiny_fpn_3x_coco.py', 'dinat/mask_rcnn_dinat_tiny_fpn_3x_coco.py',
    'nat/upernet_nat_tiny_ade20k.py', 'dinat/upernet_dinat_tiny_ade20k.py')}


@pytest.mark.parametrize('name', CONFIGS)
def test_configs_carry_the_upstream_recipes(name):
    from visionattn.mm.config import check_neck_channels, load_config
    cfg = load_config(str(CONFIGS[name]))
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['.rpb'] == dict(decay_mult=0.0)
    if 'imagenet' in name:
        assert (cfg.model.model_name, optimizer.lr, optimizer.weight_decay) == (name.split('/')[1][:-len('_imagenet.py')], 1e-3, 0.05)
        assert cfg.train_cfg.max_epochs == 310 and cfg.param_scheduler[1].eta_min == 5e-6
        if 'isotropic' in name:  # classification/isotropic.py's stochastic depth; EMA and 50 warm-up epochs for base
            base = 'base' in name
            assert cfg.model.drop_path_rate == (0.4 if base else 0.1)
            assert cfg.param_scheduler[0].end == (50 if base else 20)
            assert any(h.type == 'EMAHook' and h.momentum == 2e-4 for h in cfg.custom_hooks) == base
        return
    check_neck_channels(cfg)
    backbone = cfg.model.backbone
    assert backbone.model_kwargs.feature_norms and backbone.pretrained is True
    if 'mask_rcnn' in name:
        assert (optimizer.lr, optimizer.weight_decay, backbone.drop_path_rate) == (1e-4, 0.05, 0.2)
        assert cfg.train_cfg.max_epochs == 36 and cfg.param_scheduler[1].milestones == [27, 33]
    else:
        assert (optimizer.lr, optimizer.weight_decay, backbone.drop_path_rate) == (6e-5, 0.01, 0.3)
        assert cfg.param_scheduler[1].end == 160000 and cfg.crop_size == (512, 512)
    if name.startswith('dinat'):  # the official dense-prediction dilations fit the model's depths
        with torch.device('meta'):
            model = timm.create_model(backbone.model_name, features_only=True, **backbone.model_kwargs)
        assert any(b.attn.dilation > 8 for b in model.model.stages[0].blocks)


@pytest.mark.slow
def test_dinat_segmentation_config_trains_on_the_demo_data(tmp_path):
    """tools/train.py on configs/dinat/upernet_dinat_tiny_ade20k.py, with the fixture's small DiNAT as the
    backbone (loaded from an official-layout file through the config's pretrained path), 128px demo data."""
    from mmengine.config import Config
    fx = load_upstream_fixture('dinat_small_dims')
    weights = tmp_path / 'dinat_small_dims.pth'
    torch.save(fx['state_dict'], weights)
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(tmp_path / 'demo'), '--tasks', 'ade20k',
                    '--num-train', '4', '--num-val', '2'], cwd=REPO_ROOT, check=True, capture_output=True)
    cfg = Config.fromfile(CONFIGS['dinat/upernet_dinat_tiny_ade20k.py'])
    demo = Config.fromfile(REPO_ROOT / 'configs/demo/upernet_resnet18_ade20k_demo.py')
    for key in ('data_root', 'train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key] = demo[key]
    cfg.model.data_preprocessor = demo.model.data_preprocessor
    cfg.model.backbone.update(model_name='dinat_mini', pretrained=str(weights),
                              model_kwargs=dict(feature_norms=True, **our_kwargs(fx)))
    cfg.model.decode_head.update(in_channels=[32, 64, 128, 256], channels=16, norm_cfg=dict(type='BN'))
    cfg.model.auxiliary_head.update(in_channels=128, channels=16, norm_cfg=dict(type='BN'))
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    config = tmp_path / 'upernet_dinat_small_dims_demo.py'
    cfg.dump(config)
    proc = subprocess.run([sys.executable, 'tools/train.py', str(config), '--work-dir', str(tmp_path / 'work'),
                           '--data-root', str(tmp_path / 'demo/ade/ADEChallengeData2016')],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='2'))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert 'mIoU' in json.loads((tmp_path / 'work/metrics_val.json').read_text())['metrics']
    # the official-layout weights reached the backbone (two steps at the warm-up's ~1e-10 lr leave them as loaded)
    state = torch.load(tmp_path / 'work/iter_2.pth', map_location='cpu', weights_only=False)['state_dict']
    torch.testing.assert_close(state['backbone.model.model.stages.1.blocks.1.attn.rpb'],
                               fx['state_dict']['levels.1.blocks.1.attn.rpb'], atol=1e-6, rtol=0)


@pytest.mark.parametrize('side', [20, 10])  # 10 < kernel x dilation = 14: the padded 14x14 map is what runs
def test_flop_counter_counts_neighbourhood_attention(side):
    from torch.utils.flop_counter import FlopCounterMode
    attn = visionattn.layers.NeighborhoodAttention2D(32, 2, 7, dilation=2)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        attn(torch.randn(1, side, side, 32))
    padded = max(side, 14) ** 2
    assert counter.get_total_flops() == 2 * padded * 32 * 96 + 4 * padded * 49 * 32 + 2 * side ** 2 * 32 * 32
