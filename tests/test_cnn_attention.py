"""CBAM, ELA and Triplet attention: modules, timm models and the official checkpoint layouts.

The official checkpoints cannot be downloaded here, so the tests write state dicts in their layout:
torchvision's ResNet / MobileNetV2 (the official code's network layout) with reference modules
written below from the papers and the official code's semantics, under the official key names
(Triplet: upstream issues #9 and #12). Loading such a file into our model must reproduce the
reference network's output.
"""
from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
import torchvision
import pytest
from torch import nn

import visionattn
from visionattn.layers import CBAM, ELA, TimmELA, TripletAttention, create_cnn_attention
from visionattn.layers.cnn_attention import CNN_ATTENTION_LAYERS, ELA_SIZES
from visionattn.models.cnn_attention import checkpoint_filter_fn


# --------------------------------------------------------------------------------------------
# Reference modules: official semantics and key names, written from the papers and upstream code
# --------------------------------------------------------------------------------------------
class RefConvBN(nn.Module):
    def __init__(self, in_ch: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)


class RefZPoolGate(nn.Module):
    """x * sigmoid(BN(conv([max_c x, mean_c x]))) over dim 1, the conv under ``inner`` (spatial / conv)."""

    def __init__(self, kernel_size: int, inner: str) -> None:
        super().__init__()
        self.inner = inner
        setattr(self, inner, RefConvBN(2, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = getattr(self, self.inner)
        pooled = torch.cat([x.max(dim=1, keepdim=True)[0], x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(layer.bn(layer.conv(pooled)))


class RefTriplet(nn.Module):
    """Triplet attention computed as the official code does: rotate, gate, rotate back, average."""

    def __init__(self, kernel_size: int, branches: tuple[str, str, str], inner: str) -> None:
        super().__init__()
        self.branches = branches
        for name in branches:
            setattr(self, name, RefZPoolGate(kernel_size, inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cw, hc, hw = (getattr(self, n) for n in self.branches)
        out_cw = cw(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        out_hc = hc(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
        return (hw(x) + out_cw + out_hc) / 3


class RefChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, channels // reduction), nn.ReLU(),
                                 nn.Linear(channels // reduction, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))
        return x * torch.sigmoid(logits)[:, :, None, None]


class RefCBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.ChannelGate = RefChannelGate(channels, reduction)
        self.SpatialGate = RefZPoolGate(7, 'spatial')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


# Key layouts of the Triplet releases: module names of MODELS/triplet_attention.py (issue #12: the
# block attribute is `pcam`), of the repository code (`triplet_attention`) and of issue #9 (`triplet`,
# refactored branch names, the conv under `conv`).
TRIPLET_LAYOUTS = {
    'pcam': (('ChannelGateH', 'ChannelGateW', 'SpatialGate'), 'spatial'),
    'triplet_attention': (('ChannelGateH', 'ChannelGateW', 'SpatialGate'), 'spatial'),
    'triplet': (('cw', 'hc', 'hw'), 'conv'),
}


def _randomize(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and affine parameters, so that loading errors show."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def _official_resnet(depth: int, attr: str, make_attn) -> nn.Module:
    """torchvision's ResNet with ``block.<attr>`` applied after the block's last BN (official layout)."""
    model = getattr(torchvision.models, f'resnet{depth}')()
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            last_bn = block.bn3 if hasattr(block, 'bn3') else block.bn2
            setattr(block, attr, make_attn(last_bn.num_features))
            last_bn.register_forward_hook(lambda _m, _i, out, blk=block: getattr(blk, attr)(out))
    return model


def _official_triplet_mobilenetv2(kernel_size: int) -> nn.Module:
    """The official Triplet MobileNetV2: torchvision's, with the module closing every block's conv."""
    model = torchvision.models.mobilenet_v2()
    names, inner = TRIPLET_LAYOUTS['pcam']
    for block in model.features[1:-1]:
        block.conv.append(RefTriplet(kernel_size, names, inner))
    return model


def _save_official_checkpoint(model: nn.Module, path) -> str:
    """Save as the official training scripts do: DataParallel keys inside a training checkpoint."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save({'epoch': 90, 'arch': 'resnet', 'best_prec1': 77.0, 'optimizer': optimizer.state_dict(),
                'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()}}, path)
    return str(path)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', sorted(CNN_ATTENTION_LAYERS))
def test_module_shape_and_gradients(name):
    module = create_cnn_attention(name, 32)
    x = torch.randn(2, 32, 9, 13, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f'{name}: no gradient reaches {pname}'


@pytest.mark.parametrize('module', [
    CBAM(16, reduction=4), ELA(32, 'T'), ELA(16, 'S'), TimmELA(16),
    TripletAttention(16, kernel_size=3), TripletAttention(16), TripletAttention(16, no_spatial=True),
], ids=['cbam', 'ela_t', 'ela_s', 'ela_timm', 'triplet_k3', 'triplet_k7', 'triplet_no_spatial'])
def test_module_float64_gradcheck(module):
    channels = module.conv.in_channels if isinstance(module, ELA) else 16
    x = torch.randn(2, channels, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module.double(), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_channels_from_timm_or_openmmlab_style():
    assert sum(p.numel() for p in TripletAttention(in_channels=64).parameters()) == 3 * (2 * 49 + 2)
    assert ELA(in_channels=64).conv.in_channels == ELA(64).conv.in_channels == 64
    assert CBAM(in_channels=64).channel.fc1.out_channels == 4
    with pytest.raises(TypeError, match='channels=C .* in_channels=C'):
        ELA()
    with pytest.raises(ValueError, match='pass only one'):
        CBAM(64, in_channels=32)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match=r"channels=144 is not divisible by its 32 GroupNorm groups.*\['B', 'S', 'L'\]"):
        ELA(144, 'T')
    with pytest.raises(ValueError, match='channels=36 is not divisible by its 16 GroupNorm groups'):
        ELA(36, 'B')
    with pytest.raises(ValueError, match='unknown size'):
        ELA(64, 'XL')
    with pytest.raises(ValueError, match='no hidden units'):
        CBAM(8, reduction=16)
    with pytest.raises(ValueError, match='positive odd'):
        TripletAttention(16, kernel_size=4)
    with pytest.raises(ValueError, match=r"unknown CNN attention module 'tripplet'.*Did you mean \['triplet'\]"):
        create_cnn_attention('tripplet', 16)


def test_ela_sizes_follow_the_paper():
    c = 256
    for size, hp in ELA_SIZES.items():
        ela = ELA(c, size=f'ELA-{size}')
        assert ela.conv.kernel_size == (hp['kernel_size'],) and ela.conv.groups == c // hp['channels_per_group']
        assert ela.norm.num_groups == hp['norm_groups']
        assert sum(p.numel() for p in ela.parameters()) == c * hp['channels_per_group'] * hp['kernel_size'] + 2 * c
    assert [ELA_SIZES[s]['kernel_size'] for s in 'TBSL'] == [5, 7, 5, 7]


def test_ela_matches_the_papers_formula():
    ela = ELA(32, 'S').eval()
    with torch.no_grad():
        ela.norm.weight.uniform_(0.5, 1.5), ela.norm.bias.uniform_(-0.2, 0.2)
    x = torch.randn(2, 32, 7, 10)

    def gate(profile: torch.Tensor) -> torch.Tensor:  # profile (B, C, L): 1-D conv, GroupNorm, sigmoid
        y = F.conv1d(profile, ela.conv.weight, padding=2, groups=4)
        groups = y.reshape(2, 16, -1)
        y = ((groups - groups.mean(-1, keepdim=True)) / torch.sqrt(groups.var(-1, unbiased=False, keepdim=True) + 1e-5)).reshape(y.shape)
        return torch.sigmoid(y * ela.norm.weight[:, None] + ela.norm.bias[:, None])

    expected = x * gate(x.mean(3))[:, :, :, None] * gate(x.mean(2))[:, :, None, :]
    torch.testing.assert_close(ela(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('layout', sorted(TRIPLET_LAYOUTS))
@pytest.mark.parametrize('kernel_size', [3, 7])
def test_triplet_matches_the_official_rotations(layout, kernel_size):
    names, inner = TRIPLET_LAYOUTS[layout]
    ref = _randomize(RefTriplet(kernel_size, names, inner))
    for p in ref.parameters():
        if p.dim() == 4:
            nn.init.normal_(p, std=0.3)
    official = {f'layer1.0.{layout}.{k}': v for k, v in ref.state_dict().items()}
    converted = checkpoint_filter_fn(official, nn.Identity())
    ours = TripletAttention(24, kernel_size=kernel_size).eval()
    ours.load_state_dict({k.removeprefix('layer1.0.se.'): v for k, v in converted.items()})
    x = torch.randn(2, 24, 6, 9)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_cbam_matches_the_official_module():
    ref = _randomize(RefCBAM(64))
    official = {f'layer1.0.cbam.{k}': v for k, v in ref.state_dict().items()}
    ours = CBAM(64).eval()
    ours.load_state_dict({k.removeprefix('layer1.0.se.'): v for k, v in checkpoint_filter_fn(official, nn.Identity()).items()})
    x = torch.randn(2, 64, 5, 7)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# timm models
# --------------------------------------------------------------------------------------------
MODELS = ['resnet18_cbam', 'resnet50_cbam', 'resnet101_cbam', 'mobilenetv2_100_cbam',
          'resnet18_ela', 'resnet50_ela', 'resnet101_ela', 'mobilenetv2_100_ela',
          'resnet18_triplet', 'resnet18_triplet_k3', 'resnet50_triplet', 'resnet50_triplet_k3',
          'resnet101_triplet', 'mobilenetv2_100_triplet', 'mobilenetv2_100_triplet_k3']


def _params(name: str, **kwargs) -> int:
    with torch.device('meta'):
        return sum(p.numel() for p in timm.create_model(name, **kwargs).parameters())


def test_every_entry_point_is_registered():
    assert sorted(timm.list_models(['*_cbam', '*_ela', '*_triplet*'])) == sorted(MODELS)


@pytest.mark.parametrize('name', ['resnet18_cbam', 'resnet18_ela', 'resnet18_triplet',
                                  'mobilenetv2_100_cbam', 'mobilenetv2_100_ela', 'mobilenetv2_100_triplet'])
def test_small_models_train_step(name):
    model = timm.create_model(name, num_classes=5, in_chans=4)
    out = model(torch.randn(2, 4, 32, 48))
    assert out.shape == (2, 5)
    F.cross_entropy(out, torch.tensor([0, 3])).backward()
    attn = [m for m in model.modules() if isinstance(m, (CBAM, ELA, TripletAttention))]
    assert attn and all(p.grad is not None for m in attn for p in m.parameters())


@pytest.mark.parametrize('name, reported', [
    ('resnet50_triplet', 25.56e6), ('resnet50_cbam', 28.09e6), ('resnet18_triplet', 11.69e6),
    ('mobilenetv2_100_triplet', 3.51e6), ('mobilenetv2_100_triplet_k3', 3.506e6)])
def test_parameter_counts_match_the_papers(name, reported):
    assert abs(_params(name) - reported) / reported < 0.001


def test_modules_sit_where_the_papers_put_them():
    resnet = timm.create_model('resnet50_triplet')
    blocks = [b for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4) for b in layer]
    assert all(isinstance(b.se, TripletAttention) for b in blocks) and len(blocks) == 16
    ela = timm.create_model('resnet50_ela')
    assert {b.se.size for layer in (ela.layer1, ela.layer4) for b in layer} == {'S'}
    assert timm.create_model('resnet50_ela', attn_kwargs=dict(size='L')).layer1[0].se.size == 'L'
    mbv2 = timm.create_model('mobilenetv2_100_triplet')
    for block in (b for stage in mbv2.blocks for b in stage):
        norm = block.bn3 if hasattr(block, 'bn3') else block.bn2
        assert isinstance(norm.act, TripletAttention) and isinstance(block.se, nn.Identity)
    mbv2 = timm.create_model('mobilenetv2_100_cbam')
    first, *expanding = (b for stage in mbv2.blocks for b in stage)
    assert isinstance(first.se, nn.Identity)  # no expansion, no module (as Coordinate Attention's MobileNetV2)
    assert all(isinstance(b.se, CBAM) and b.se.channel.fc1.in_channels == b.conv_dw.out_channels for b in expanding)
    assert mbv2.blocks[1][0].se.channel.fc1.in_channels == 96  # expanded width of the first 24-channel block


def test_features_only_and_timm_backbone():
    from visionattn.mm.backbones import TimmBackbone
    feats = timm.create_model('mobilenetv2_100_triplet', features_only=True)(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [16, 24, 32, 96, 320]
    backbone = TimmBackbone('resnet18_ela', out_indices=(0, 1, 2, 3))
    assert [f.shape[1:] for f in backbone(torch.randn(1, 3, 64, 64))] == [
        (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


@pytest.mark.parametrize('layout', sorted(TRIPLET_LAYOUTS))
def test_official_triplet_resnet_checkpoint_loads(layout, tmp_path):
    names, inner = TRIPLET_LAYOUTS[layout]
    ref = _randomize(_official_resnet(18, layout, lambda c: RefTriplet(7, names, inner)))
    path = _save_official_checkpoint(ref, tmp_path / 'model_best.pth.tar')
    model = timm.create_model('resnet18_triplet', pretrained=True, pretrained_cfg_overlay=dict(file=path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)


def test_official_cbam_resnet_checkpoint_loads(tmp_path):
    ref = _randomize(_official_resnet(18, 'cbam', RefCBAM))
    path = _save_official_checkpoint(ref, tmp_path / 'RESNET18_CBAM_model_best.pth.tar')
    model = timm.create_model('resnet18_cbam', pretrained=True, pretrained_cfg_overlay=dict(file=path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kernel_size', [3, 7])
def test_official_triplet_mobilenetv2_checkpoint_loads(kernel_size, tmp_path):
    ref = _randomize(_official_triplet_mobilenetv2(kernel_size))
    path = _save_official_checkpoint(ref, tmp_path / 'mbv2_triplet.pth.tar')
    name = 'mobilenetv2_100_triplet' + ('_k3' if kernel_size == 3 else '')
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('family, depth, attn, make_ref', [
    ('triplet_resnet', 50, 'pcam', lambda c: RefTriplet(7, *TRIPLET_LAYOUTS['pcam'])),
    ('triplet_resnet', 101, 'triplet', lambda c: RefTriplet(7, *TRIPLET_LAYOUTS['triplet'])),
    ('cbam_resnet', 50, 'cbam', RefCBAM)])
def test_official_deep_resnet_layouts_convert(family, depth, attn, make_ref):
    with torch.device('meta'):
        official = _official_resnet(depth, attn, make_ref).state_dict()
        model = timm.create_model(f"resnet{depth}_{family.split('_')[0]}")
    converted = checkpoint_filter_fn({f'module.{k}': v for k, v in official.items()}, model)
    expected = model.state_dict()
    assert converted.keys() == expected.keys()
    assert all(converted[k].shape == expected[k].shape for k in expected)


def test_from_official_builds_from_upstream_kwargs():
    ref = _randomize(_official_resnet(18, 'pcam', lambda c: RefTriplet(7, *TRIPLET_LAYOUTS['pcam'])))
    model = visionattn.from_official('triplet_resnet', dict(network_type='ImageNet', depth=18, num_classes=1000,
                                                            att_type='TripletAttention'),
                                     {'state_dict': ref.state_dict()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='available depths: \\[18, 50, 101\\]'):
        visionattn.from_official('triplet_resnet', dict(depth=34))
    with pytest.raises(ValueError, match="expected 'CBAM'"):
        visionattn.from_official('cbam_resnet', dict(att_type='BAM'))


def test_kernel_size_mismatch_is_explained(tmp_path):
    ref = _official_resnet(18, 'pcam', lambda c: RefTriplet(3, *TRIPLET_LAYOUTS['pcam']))
    path = _save_official_checkpoint(ref, tmp_path / 'k3.pth.tar')
    with pytest.raises(ValueError, match=r'kernels of size \[3\].*resnet18_triplet_k3|kernel_size=3'):
        timm.create_model('resnet18_triplet', pretrained=True, pretrained_cfg_overlay=dict(file=path))


def test_pretrained_without_a_local_file_is_explained():
    with pytest.raises(RuntimeError, match=r'Google Drive.*gdown 1ptKswHzVmULGbE3DuX6vMCjEbqwUvGiG.*pretrained_cfg_overlay'):
        timm.create_model('resnet50_triplet', pretrained=True)
    with pytest.raises(RuntimeError, match='No pretrained weights'):
        timm.create_model('resnet18_ela', pretrained=True)


def test_triplet_attention_keeps_every_branch_through_fx():
    """timm's FX feature extraction removes graph nodes whose result is unused: an in-place sum of the
    gates dropped the spatial branch (and its parameters' gradients) from traced ResNet-Triplet models."""
    module = TripletAttention(8).eval()
    graph_module = torch.fx.symbolic_trace(module)
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    graph_module.delete_all_unused_submodules()
    assert {n for n, _ in graph_module.named_parameters()} == {n for n, _ in module.named_parameters()}
    x = torch.randn(2, 8, 6, 5)
    torch.testing.assert_close(graph_module(x), module(x))
