"""ResNet and MobileNetV2 with CBAM, ELA or Triplet attention, built on timm's own networks.

The networks are timm's ``resnet18/50/101`` and ``mobilenetv2_100``; only the attention modules of
:mod:`visionattn.layers.cnn_attention` are added, where the papers put them:

- ResNet: on the residual branch after its last BatchNorm, before the addition, in every block of
  every stage (timm's ``attn_layer`` slot, attribute ``se``). CBAM, Triplet and ELA all do this.
- MobileNetV2, Triplet: after the projection's BatchNorm of every block, before the addition (the
  official release). timm's blocks have no slot there, so the module takes the activation slot of
  that norm (``bn3.act``, ``bn2.act`` in the first block), which is an identity in MobileNetV2.
- MobileNetV2, CBAM and ELA: on the expanded features after the depthwise conv (timm's ``se``
  slot) of every block with an expansion (all but the first), where Coordinate Attention, which
  ELA builds on and compares with, puts its module (houqb/CoordAttention, ``mbv2_ca.py``).

``attn_kwargs`` of every entry point goes to the module (``dict(size='L')`` for ELA,
``dict(kernel_size=3)`` for Triplet). ELA defaults to ELA-B on ResNet-18 and MobileNetV2 and ELA-S
on ResNet-50/101, following the paper's advice (T/B for light networks, B/S for deeper ones);
ELA-T cannot run on MobileNetV2's 144-channel blocks (its GroupNorm has 32 groups). timm's own ELA
variant is ``timm.create_model('resnet50', block_args=dict(attn_layer='ela'))``.

Official weights (all on Google Drive, MIT licence): ResNet-50 + CBAM (Jongchan/attention-module),
ResNet-18/50 and MobileNetV2 + Triplet with k = 7 and k = 3 (landskape-ai/triplet-attention; the
k = 3 files are the ``*_triplet_k3`` models). Google Drive answers large files with a confirmation
page that torch's downloader cannot pass, so download the file (``gdown <id>``) and pass
``pretrained_cfg_overlay=dict(file=path)``. :func:`checkpoint_filter_fn` converts the official
layouts, including the Triplet module names that differ from the repository's own module file
(upstream issues #9, #12): the block attribute is ``pcam``, ``triplet`` or ``triplet_attention``,
the branches ``ChannelGateH/ChannelGateW/SpatialGate`` or ``cw/hc/hw``, their layers under
``spatial.`` or ``conv.``.
"""
from __future__ import annotations

import contextlib
import re
from functools import partial
from typing import Any, Callable

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from visionattn.checkpoint import state_dict_from
from visionattn.convert import register_family
from visionattn.layers.cnn_attention import TripletAttention, get_cnn_attention
from visionattn.weights import GOOGLE_DRIVE, fetching

__all__ = ['checkpoint_filter_fn']



def _attention(name: str, attn_kwargs: dict[str, Any] | None) -> Callable[..., nn.Module]:
    return partial(get_cnn_attention(name), **(attn_kwargs or {}))


def _timm_network(base: str, **kwargs: Any) -> nn.Module:
    """timm's network ``base``, built by its entry point rather than ``timm.create_model``: create_model
    records its arguments as the model's reconstruction arguments (``_model_args``, which timm's hub
    export writes into ``config.json``), and those of the inner network (the attention module as a Python
    callable in ``block_args``) neither serialize nor rebuild the project's model."""
    return timm.models.model_entrypoint(base)(pretrained=False, **kwargs)


def _resnet_with_attention(base: str, attn_layer: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    block_args = dict(kwargs.pop('block_args', None) or {}, attn_layer=attn_layer)
    return _timm_network(base, block_args=block_args, **kwargs)


def _mobilenetv2_with_attention(attn_layer: Callable[..., nn.Module], after_projection: bool,
                                **kwargs: Any) -> nn.Module:
    model = _timm_network('mobilenetv2_100', **kwargs)
    for stage in model.blocks:
        for block in stage:
            ref = block.conv_dw.weight
            dd = dict(device=ref.device, dtype=ref.dtype)
            expanded = hasattr(block, 'conv_pwl')  # InvertedResidual; the first block has no expansion
            if after_projection:
                norm = block.bn3 if expanded else block.bn2
                norm.act = attn_layer(norm.num_features, **dd)
            elif expanded:
                block.se = attn_layer(block.conv_dw.out_channels, **dd)
    return model


def _with_attn_default(kwargs: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``kwargs`` with ``attn_kwargs[key]`` defaulting to ``value``."""
    return dict(kwargs, attn_kwargs={key: value, **(kwargs.get('attn_kwargs') or {})})


def _create(variant: str, pretrained: bool, model_fn: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    # Google Drive downloads are refused up front, with the way to load the file instead (visionattn.weights)
    with fetching(variant, kwargs.get('pretrained_cfg_overlay'), kwargs.get('pretrained_cfg')) if pretrained \
            else contextlib.nullcontext():
        return build_model_with_cfg(model_fn, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                    **kwargs)


def _create_resnet(variant: str, pretrained: bool, attn: str, attn_kwargs: dict | None = None,
                   **kwargs: Any) -> nn.Module:
    base = variant.split('_')[0]
    return _create(variant, pretrained, partial(_resnet_with_attention, base, _attention(attn, attn_kwargs)), **kwargs)


def _create_mobilenetv2(variant: str, pretrained: bool, attn: str, attn_kwargs: dict | None = None,
                        **kwargs: Any) -> nn.Module:
    model_fn = partial(_mobilenetv2_with_attention, _attention(attn, attn_kwargs), attn == 'triplet')
    return _create(variant, pretrained, model_fn, feature_cfg=dict(flatten_sequential=True), **kwargs)


# ---------------------------------------------------------------------------------------------
# Official checkpoint layouts
# ---------------------------------------------------------------------------------------------
_TRIPLET_BRANCH = {'ChannelGateH': 'cw', 'ChannelGateW': 'hc', 'SpatialGate': 'hw', 'cw': 'cw', 'hc': 'hc', 'hw': 'hw'}
_TRIPLET_KEY = re.compile(r'(?P<branch>ChannelGateH|ChannelGateW|SpatialGate|cw|hc|hw)\.(?:spatial|conv)\.'
                          r'(?P<layer>conv|bn)\.(?P<param>\w+)')
_CBAM_MLP_KEY = re.compile(r'ChannelGate\.mlp\.(?P<index>[13])\.(?P<param>weight|bias)')
_CBAM_SPATIAL_KEY = re.compile(r'SpatialGate\.spatial\.(?P<layer>conv|bn)\.(?P<param>\w+)')
# Block attribute names of the official ResNets: Triplet's releases used pcam or triplet, its code
# triplet_attention; CBAM's code cbam.
_RESNET_ATTN_KEY = re.compile(r'(?P<block>layer\d+\.\d+)\.(?P<attr>pcam|triplet_attention|triplet|cbam)\.(?P<inner>.+)')


def _convert_attention_key(kind: str, inner: str, value: torch.Tensor, source_key: str) -> tuple[str, torch.Tensor]:
    """One key inside an official ``'triplet'`` or ``'cbam'`` module -> its name and value in ours."""
    if kind == 'triplet' and (m := _TRIPLET_KEY.fullmatch(inner)):
        return f"{_TRIPLET_BRANCH[m['branch']]}.{m['layer']}.{m['param']}", value
    if kind == 'cbam' and (m := _CBAM_MLP_KEY.fullmatch(inner)):  # nn.Linear -> 1x1 conv
        fc = 'fc1' if m['index'] == '1' else 'fc2'
        return f"channel.{fc}.{m['param']}", value[..., None, None] if m['param'] == 'weight' else value
    if kind == 'cbam' and (m := _CBAM_SPATIAL_KEY.fullmatch(inner)):
        if m['layer'] == 'conv':  # official input order [max, mean]; timm's [mean, max]
            return f"spatial.conv.conv.{m['param']}", value.flip(1)
        return f"spatial.conv.bn.{m['param']}", value
    raise KeyError(f'{source_key!r} is not a key of the official {kind} attention module')


_MBV2_LAYERS = {  # torchvision / official Triplet MobileNetV2 block layout -> timm's
    'ds': {'conv.0.0': 'conv_dw', 'conv.0.1': 'bn1', 'conv.1': 'conv_pw', 'conv.2': 'bn2', 'conv.3': 'bn2.act'},
    'ir': {'conv.0.0': 'conv_pw', 'conv.0.1': 'bn1', 'conv.1.0': 'conv_dw', 'conv.1.1': 'bn2', 'conv.2': 'conv_pwl',
           'conv.3': 'bn3', 'conv.4': 'bn3.act'},
}


def _mobilenetv2_from_official(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official Triplet MobileNetV2 (torchvision's layout plus the module at conv.3 / conv.4) -> timm."""
    blocks = [(f'blocks.{s}.{i}', 'ir' if hasattr(block, 'conv_pwl') else 'ds')
              for s, stage in enumerate(model.blocks) for i, block in enumerate(stage)]
    head_index = len(blocks) + 1
    out = {}
    for key, value in state_dict.items():
        parts = key.split('.')
        if parts[0] == 'classifier' and len(parts) == 3:
            out[f'classifier.{parts[2]}'] = value
            continue
        if parts[0] != 'features' or len(parts) < 4:
            raise KeyError(f'{key!r} is not a key of the official MobileNetV2 layout')
        index, rest = int(parts[1]), '.'.join(parts[2:])
        if index in (0, head_index):
            conv, norm = ('conv_stem', 'bn1') if index == 0 else ('conv_head', 'bn2')
            out[f"{conv if parts[2] == '0' else norm}.{'.'.join(parts[3:])}"] = value
            continue
        prefix, kind = blocks[index - 1]
        layer = next((k for k in _MBV2_LAYERS[kind] if rest.startswith(k + '.')), None)
        if layer is None:
            raise KeyError(f'{key!r} is not a key of the official MobileNetV2 layout')
        inner = rest[len(layer) + 1:]
        target = _MBV2_LAYERS[kind][layer]
        if target.endswith('.act'):
            inner, value = _convert_attention_key('triplet', inner, value, key)
        out[f'{prefix}.{target}.{inner}'] = value
    return out


def _check_triplet_kernels(state_dict: dict[str, torch.Tensor], model: nn.Module) -> None:
    expected = {m.kernel_size for m in model.modules() if isinstance(m, TripletAttention)}
    found = {v.shape[-1] for k, v in state_dict.items() if k.endswith('cw.conv.weight')}
    if expected and found and found != expected:
        raise ValueError(f'the checkpoint has Triplet attention kernels of size {sorted(found)} but the model was '
                         f'built with kernel_size={sorted(expected)}: use the *_triplet_k{min(found)} model or '
                         f'attn_kwargs=dict(kernel_size={min(found)})')


def checkpoint_filter_fn(state_dict: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """Convert an official CBAM / Triplet checkpoint (ResNet or MobileNetV2) to these models.

    Accepts the released training checkpoints as they are (``{'state_dict': ..., 'optimizer': ...}``,
    ``module.`` prefixes from DataParallel: :func:`visionattn.checkpoint.state_dict_from`); state dicts
    already in this layout pass unchanged.
    """
    state_dict = state_dict_from(state_dict)
    if 'features.0.0.weight' in state_dict:
        out = _mobilenetv2_from_official(state_dict, model)
    else:
        out = {}
        for key, value in state_dict.items():
            if m := _RESNET_ATTN_KEY.fullmatch(key):
                kind = 'cbam' if m['attr'] == 'cbam' else 'triplet'
                inner, value = _convert_attention_key(kind, m['inner'], value, key)
                key = f"{m['block']}.se.{inner}"
            out[key] = value
    _check_triplet_kernels(out, model)
    return out


# ---------------------------------------------------------------------------------------------
# Official constructors, for visionattn.from_official
# ---------------------------------------------------------------------------------------------
def _official_resnet_builder(attn: str, official_att_type: str) -> Callable[..., nn.Module]:
    def build(network_type: str = 'ImageNet', depth: int = 50, num_classes: int = 1000,
              att_type: str = official_att_type, **attn_kwargs: Any) -> nn.Module:
        """``ResidualNet(network_type, depth, num_classes, att_type)`` of the official repository."""
        if network_type != 'ImageNet':
            raise ValueError(f"only network_type='ImageNet' is supported, got {network_type!r} (the CIFAR "
                             "variants use a different stem that timm's ResNet does not build)")
        if att_type != official_att_type:
            raise ValueError(f'att_type={att_type!r} does not belong to this family; expected {official_att_type!r}')
        name = f'resnet{depth}_{attn}'
        if not timm.is_model(name):
            depths = sorted(int(n.split('_')[0].removeprefix('resnet')) for n in timm.list_models(f'resnet*_{attn}'))
            raise ValueError(f'depth={depth} has no {attn} entry point; available depths: {depths}')
        return timm.create_model(name, num_classes=num_classes, attn_kwargs=attn_kwargs)
    return build


def _official_triplet_mobilenetv2(num_classes: int = 1000, width_mult: float = 1.0,
                                  **attn_kwargs: Any) -> nn.Module:
    """``TripletAttention_MobileNetV2(num_classes, width_mult)`` of the official repository."""
    if width_mult != 1.0:
        raise ValueError(f'only width_mult=1.0 (mobilenetv2_100) is available, got {width_mult}')
    return timm.create_model('mobilenetv2_100_triplet', num_classes=num_classes, attn_kwargs=attn_kwargs)


register_family('cbam_resnet', _official_resnet_builder('cbam', 'CBAM'), checkpoint_filter_fn)
register_family('triplet_resnet', _official_resnet_builder('triplet', 'TripletAttention'), checkpoint_filter_fn)
register_family('triplet_mobilenetv2', _official_triplet_mobilenetv2, checkpoint_filter_fn)


# ---------------------------------------------------------------------------------------------
# Pretrained configs and entry points
# ---------------------------------------------------------------------------------------------
_PAPERS = {
    'cbam': dict(paper_ids='arXiv:1807.06521', paper_name='CBAM: Convolutional Block Attention Module',
                 origin_url='https://github.com/Jongchan/attention-module'),
    'ela': dict(paper_ids='arXiv:2403.01123',
                paper_name='ELA: Efficient Local Attention for Deep Convolutional Neural Networks'),
    'triplet': dict(paper_ids='arXiv:2010.03045',
                    paper_name='Rotate to Attend: Convolutional Triplet Attention Module',
                    origin_url='https://github.com/landskape-ai/triplet-attention'),
}


def _cfg(attn: str, arch: str, drive_id: str = '', **kwargs: Any) -> dict[str, Any]:
    head = dict(first_conv='conv1', classifier='fc') if arch == 'resnet' else \
        dict(first_conv='conv_stem', classifier='classifier')
    return {
        'url': GOOGLE_DRIVE + drive_id if drive_id else '', 'license': 'mit' if drive_id else 'apache-2.0',
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7), 'crop_pct': 0.875,
        'interpolation': 'bilinear', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        **head, **_PAPERS[attn], **kwargs}


default_cfgs = generate_default_cfgs({
    'resnet18_cbam': _cfg('cbam', 'resnet'),
    'resnet50_cbam.in1k': _cfg('cbam', 'resnet', '1mvAVvhLR_2XY_bPYxh-SEz4vDmGzSArO'),
    'resnet101_cbam': _cfg('cbam', 'resnet'),
    'mobilenetv2_100_cbam': _cfg('cbam', 'mbv2'),
    'resnet18_ela': _cfg('ela', 'resnet'),
    'resnet50_ela': _cfg('ela', 'resnet'),
    'resnet101_ela': _cfg('ela', 'resnet'),
    'mobilenetv2_100_ela': _cfg('ela', 'mbv2'),
    'resnet18_triplet.in1k': _cfg('triplet', 'resnet', '1jIDfA0Psce10L06hU0Rtz8t7s2U1oqLH'),
    'resnet18_triplet_k3.in1k': _cfg('triplet', 'resnet', '1p3_s2kA5NFWqCtp4zvZdc91_2kEQhbGD'),
    'resnet50_triplet.in1k': _cfg('triplet', 'resnet', '1ptKswHzVmULGbE3DuX6vMCjEbqwUvGiG'),
    'resnet50_triplet_k3.in1k': _cfg('triplet', 'resnet', '1W6aDE6wVNY9NwgcM7WMx_vRhG2-ZiMur'),
    'resnet101_triplet': _cfg('triplet', 'resnet'),
    'mobilenetv2_100_triplet.in1k': _cfg('triplet', 'mbv2', '14iNMa7ygtTwsULsAydKoQuTkJ288hfKs'),
    'mobilenetv2_100_triplet_k3.in1k': _cfg('triplet', 'mbv2', '1KIlqPBNLHh4qkdxyojb5gQhM5iB9b61_'),
})


@register_model
def resnet18_cbam(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 with CBAM in every block."""
    return _create_resnet('resnet18_cbam', pretrained, 'cbam', **kwargs)


@register_model
def resnet50_cbam(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 with CBAM in every block (official ImageNet weights: 77.62 top-1)."""
    return _create_resnet('resnet50_cbam', pretrained, 'cbam', **kwargs)


@register_model
def resnet101_cbam(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-101 with CBAM in every block."""
    return _create_resnet('resnet101_cbam', pretrained, 'cbam', **kwargs)


@register_model
def mobilenetv2_100_cbam(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 with CBAM on the expanded features of every expanding block."""
    return _create_mobilenetv2('mobilenetv2_100_cbam', pretrained, 'cbam', **kwargs)


@register_model
def resnet18_ela(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 with ELA (ELA-B unless ``attn_kwargs=dict(size=...)``) in every block."""
    return _create_resnet('resnet18_ela', pretrained, 'ela', **_with_attn_default(kwargs, 'size', 'B'))


@register_model
def resnet50_ela(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 with ELA (ELA-S unless ``attn_kwargs=dict(size=...)``) in every block."""
    return _create_resnet('resnet50_ela', pretrained, 'ela', **_with_attn_default(kwargs, 'size', 'S'))


@register_model
def resnet101_ela(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-101 with ELA (ELA-S unless ``attn_kwargs=dict(size=...)``) in every block."""
    return _create_resnet('resnet101_ela', pretrained, 'ela', **_with_attn_default(kwargs, 'size', 'S'))


@register_model
def mobilenetv2_100_ela(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 with ELA (ELA-B unless ``attn_kwargs=dict(size=...)``) on the expanded features."""
    return _create_mobilenetv2('mobilenetv2_100_ela', pretrained, 'ela', **_with_attn_default(kwargs, 'size', 'B'))


@register_model
def resnet18_triplet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 with Triplet attention (k = 7) in every block."""
    return _create_resnet('resnet18_triplet', pretrained, 'triplet', **kwargs)


@register_model
def resnet18_triplet_k3(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 with Triplet attention (k = 3) in every block."""
    return _create_resnet('resnet18_triplet_k3', pretrained, 'triplet', **_with_attn_default(kwargs, 'kernel_size', 3))


@register_model
def resnet50_triplet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 with Triplet attention (k = 7) in every block (official weights: 77.48 top-1)."""
    return _create_resnet('resnet50_triplet', pretrained, 'triplet', **kwargs)


@register_model
def resnet50_triplet_k3(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 with Triplet attention (k = 3) in every block."""
    return _create_resnet('resnet50_triplet_k3', pretrained, 'triplet', **_with_attn_default(kwargs, 'kernel_size', 3))


@register_model
def resnet101_triplet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-101 with Triplet attention (k = 7) in every block."""
    return _create_resnet('resnet101_triplet', pretrained, 'triplet', **kwargs)


@register_model
def mobilenetv2_100_triplet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 with Triplet attention (k = 7) after every block's projection."""
    return _create_mobilenetv2('mobilenetv2_100_triplet', pretrained, 'triplet', **kwargs)


@register_model
def mobilenetv2_100_triplet_k3(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 with Triplet attention (k = 3) after every block's projection."""
    return _create_mobilenetv2('mobilenetv2_100_triplet_k3', pretrained, 'triplet', **_with_attn_default(kwargs, 'kernel_size', 3))
