"""Any model in timm's registry as an mmdet / mmseg / mmpretrain backbone.

mmseg and mmpretrain ship a ``TIMMBackbone``, but it only forwards ``features_only``: it has no
``frozen_stages`` or ``norm_eval`` (which detection recipes rely on), counts ``out_indices`` in timm's
feature list (so ResNet's stride-2 stem is index 0 while Swin's stride-4 stage is), returns NHWC
maps for some models, and mmdet has no such backbone at all. This adapter gives every timm model the
interface of an OpenMMLab backbone:

- ``out_indices`` and ``frozen_stages`` count *stages*, the entries of the model's ``feature_info``
  with stride >= 4, as mmdet's ResNet does: ``out_indices=(0, 1, 2, 3)`` are strides 4-32 when the
  model has them; ``frozen_stages=0`` freezes the stem, ``k`` also the first ``k`` stages.
- ``pretrained``: ``False``, ``True`` (the weights named by the model's ``pretrained_cfg``: a hub id
  or URL) or a local file path (loaded through the model's checkpoint filter, like timm's
  ``pretrained_cfg_overlay=dict(file=...)``, and checked strictly unless ``pretrained_strict=False``).
  They load in :meth:`TimmBackbone.init_weights`, OpenMMLab's ``init_cfg`` convention, never at
  construction: testing, inference and resuming from a full checkpoint need neither the network nor the file.
- ``in_chans``: timm adapts pretrained first-layer weights to any channel count.
- Outputs are always NCHW; :attr:`out_channels` and :attr:`out_strides` list them for the neck.

What timm's features lack as dense-prediction backbones, and the options that supply it (any timm
model can use them):

- ``feature_norms``: timm returns raw stage outputs; the detection/segmentation backbones of Swin, DaViT
  and FocalNet add a fresh norm to every output (``norm{i}``, ``nn.LayerNorm``). (The same name as the
  models' own per-stage output norms, e.g. BiFormer's ``feature_norms=True``; the old keyword
  ``out_norm`` still works, with a DeprecationWarning, and checkpoints with ``out_norms.*`` keys load.)
- ``pad_to_multiple``: timm's FocalNet patchifies with unpadded stride-4/2 convs, so a side that is
  not a multiple of 32 loses its last pixels at every stage (100x130 gives 3x4 at stride 32 where the
  upstream detection code, which pads, gives 4x5); timm's halo attention asserts, without a message,
  that every map it sees is a multiple of its block size (halonet26t: inputs divisible by 256).
  The input is zero-padded at the right/bottom to the multiple and every output is cropped back to
  ``ceil(side / stride)``: the map the unpadded image has in the upstream dense-prediction code.
- pretrained weights for widened depthwise kernels: FocalNet's upstream detection and segmentation
  recipes use focal kernels 9/11/13 (``focal_windows=9``) initialised from the 3/5/7 ImageNet
  checkpoints by zero-padding; timm's loader refuses the shapes. When ``model_kwargs`` only grow
  convolution kernels, the weights are loaded into the entry point's own architecture and the kernels
  zero-padded around the centre, which keeps the pretrained function of 'same'-padded convs.
- ``frozen_stages`` counts stages by where their parameters end, so a stage whose ``feature_info``
  module holds no parameters (ByobNet's ``final_conv`` is an ``Identity`` in halonet26t and
  halonet_h1, and stands for the whole last stage) is frozen correctly.
"""
from __future__ import annotations

import difflib
import math
import os
import warnings
from typing import Any, Sequence

import timm
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from timm.layers import create_norm_layer
from timm.layers.halo_attn import HaloAttn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import visionattn  # noqa: F401  (registers the project's models in timm)
from visionattn.errors import ConfigError, MissingFileError, UnknownNameError
from visionattn.registry import MODELS
from visionattn.weights import create_model_with_weights, feature_key_forms

__all__ = ['TimmBackbone', 'stage_feature_info', 'required_input_multiple', 'check_model_name',
           'check_stage_options']


def check_model_name(model_name: Any) -> None:
    """Raise :class:`UnknownNameError` (with the closest names) unless ``model_name`` is in timm's registry."""
    if not isinstance(model_name, str):
        raise ConfigError(f'model_name must be the name of a timm model (a string), got {model_name!r}')
    if timm.is_model(model_name):
        return
    close = difflib.get_close_matches(model_name, timm.list_models(), n=5)
    hint = f' Did you mean {close}?' if close else ''
    raise UnknownNameError(f"unknown timm model {model_name!r}.{hint} List the names with "
                           f"timm.list_models('<pattern>') after `import visionattn`.")


def _meta_features_model(model_name: str, **kwargs: Any) -> nn.Module:
    """``features_only`` model built on the meta device: nothing is allocated or downloaded."""
    check_model_name(model_name)
    with torch.device('meta'):
        return timm.create_model(model_name, pretrained=False, features_only=True, **kwargs)


def _stages(model: nn.Module) -> list[dict[str, Any]]:
    infos = [dict(info, feature_index=i) for i, info in enumerate(model.feature_info.info)]
    stages = [info for info in infos if info['reduction'] >= 4]
    return stages or infos


def stage_feature_info(model_name: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The ``feature_info`` entries of ``model_name`` that count as stages (stride >= 4).

    Built on the meta device, so nothing is allocated or downloaded.
    """
    return _stages(_meta_features_model(model_name, **kwargs))


def _channels_last(model: nn.Module) -> bool:
    return str(getattr(model, 'output_fmt', 'NCHW')).endswith('NHWC')


def _output_sides(model: nn.Module, in_chans: int, side: int) -> list[int] | None:
    """Heights of the feature maps for a ``side`` x ``side`` input, or None if the model fails there."""
    try:
        features = model(torch.empty(1, in_chans, side, side, device='meta'))
    except (RuntimeError, AssertionError, ValueError, NotImplementedError):
        return None
    return [f.shape[1] if _channels_last(model) else f.shape[2] for f in features]


def _halo_multiple(model: nn.Module, in_chans: int, max_stride: int) -> int:
    """Input multiple that timm's halo attention needs: lcm of block size x input stride per layer."""
    halos = [m for m in model.modules() if isinstance(m, HaloAttn)]
    if not halos:
        return 1
    size = max_stride * math.lcm(*(m.block_size for m in halos))
    input_side: dict[nn.Module, int] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: input_side.__setitem__(mod, args[0].shape[-1]))
             for m in halos]
    try:
        if _output_sides(model, in_chans, size) is None:  # e.g. a fixed-size model: assume the worst
            return size
    finally:
        for hook in hooks:
            hook.remove()
    return math.lcm(*(m.block_size * (size // input_side[m]) for m in halos))


def _required_multiple(model: nn.Module, in_chans: int, multiple: int) -> int:
    """``multiple`` (what the model needs to run), widened to the largest stride if its maps floor."""
    strides = [info['reduction'] for info in model.feature_info.info]
    max_stride = max(strides)
    if multiple % max_stride == 0:
        return multiple
    # A side that is a multiple of `multiple` but not of the largest stride: do all maps come out at
    # ceil(side / stride), as the padded upstream dense-prediction code has them?
    odd_side = multiple * (2 * max_stride + 1)
    sides = _output_sides(model, in_chans, odd_side)
    if sides is not None:
        exact = all(s == -(-odd_side // r) for s, r in zip(sides, strides))
        return multiple if exact else math.lcm(multiple, max_stride)
    # It fails there: pad to the largest stride if that makes it run, else padding does not help.
    padded = math.lcm(multiple, max_stride)
    return padded if _output_sides(model, in_chans, 2 * padded) is not None else multiple


def required_input_multiple(model_name: str, in_chans: int = 3, **kwargs: Any) -> int:
    """Smallest input multiple at which every stage map of ``model_name`` is ``ceil(side / stride)``.

    1 for models that pad internally (DaViT, ResNets); the largest stride for models that patchify
    without padding (FocalNet); block size x input stride of every halo attention layer (HaloNets).
    Found with meta-device forwards, so nothing is allocated.
    """
    model = _meta_features_model(model_name, in_chans=in_chans, **kwargs)
    max_stride = max(info['reduction'] for info in model.feature_info.info)
    return _required_multiple(model, in_chans, _halo_multiple(model, in_chans, max_stride))


def _grown_kernels(source: dict[str, torch.Size], target: dict[str, torch.Size]) -> list[str]:
    """Keys where ``target`` differs from ``source`` only by larger, centred conv kernels, else []."""
    if source.keys() != target.keys():
        return []
    grown = []
    for key, shape in target.items():
        old = source[key]
        if old == shape:
            continue
        if not (len(shape) == 4 and shape[:2] == old[:2]
                and all(new >= was and (new - was) % 2 == 0 for new, was in zip(shape[2:], old[2:]))):
            return []
        grown.append(key)
    return grown


def _zero_pad_kernel(weight: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Centre ``weight`` in a zero kernel of ``shape``: the same function for a 'same'-padded conv."""
    pad_h, pad_w = (shape[2] - weight.shape[2]) // 2, (shape[3] - weight.shape[3]) // 2
    return F.pad(weight, (pad_w, pad_w, pad_h, pad_h))


def _shapes(model: nn.Module) -> dict[str, torch.Size]:
    return {key: value.shape for key, value in model.state_dict().items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_stage_options(model_name: str, num_stages: int, out_indices: Any, frozen_stages: Any) -> list[int]:
    """``out_indices`` resolved to stage numbers (negatives count from the end), after checking both options.

    Raises :class:`ConfigError` naming the valid range when ``out_indices`` is not a list/tuple of distinct
    stage numbers in ``-num_stages..num_stages - 1`` or ``frozen_stages`` is not an int in ``-1..num_stages``.
    """
    valid = f'{model_name} has {num_stages} stages, so out_indices are in 0..{num_stages - 1} (or -{num_stages}..-1)'
    if not isinstance(out_indices, (list, tuple)) or not out_indices or not all(_is_int(i) for i in out_indices):
        raise ConfigError(f'out_indices must be a non-empty list or tuple of stage numbers, e.g. (0, 1, 2, 3), '
                          f'got {out_indices!r}: {valid}')
    outside = [i for i in out_indices if not -num_stages <= i < num_stages]
    if outside:
        raise ConfigError(f'out_indices {tuple(out_indices)}: {outside} out of range; {valid}')
    resolved = [i % num_stages for i in out_indices]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f'out_indices {tuple(out_indices)} names a stage twice; {valid}')
    if not _is_int(frozen_stages) or not -1 <= frozen_stages <= num_stages:
        raise ConfigError(f'frozen_stages must be an int in -1..{num_stages} for {model_name} (-1: train everything, '
                          f'0: freeze the stem, k: the stem and the first k stages), got {frozen_stages!r}')
    return resolved


def _build_feature_norms(norm: str | dict | None, channels: list[int]) -> nn.ModuleList | None:
    if norm is None:
        return None
    cfg = dict(type=norm) if isinstance(norm, str) else dict(norm)
    name = cfg.pop('type', None)
    try:
        return nn.ModuleList(create_norm_layer(name, num_chs, **cfg) for num_chs in channels)
    except (KeyError, AttributeError) as err:
        raise ConfigError(f"feature_norms={norm!r}: give a timm norm layer name ('layernorm2d', 'batchnorm2d', "
                          f"'groupnorm', ...), optionally as dict(type=name, **kwargs) (e.g. eps=1e-5)") from err


def _renamed_feature_norm_keys(state_dict: dict, prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: checkpoints written before the rename hold ``out_norms.*`` keys."""
    old = prefix + 'out_norms.'
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + 'feature_norms.' + key[len(old):]] = state_dict.pop(key)


@MODELS.register_module()
class TimmBackbone(BaseModule):
    """A timm model's multi-scale features, with the usual OpenMMLab backbone options.

    Args:
        model_name: any name in timm's registry (the project's own models included).
        out_indices: stages to return (stride >= 4 entries of ``feature_info``; negatives count
            from the end).
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and the first
            k stages (parameters and, for BatchNorm, running statistics). ``feature_norms`` layers are
            never frozen.
        norm_eval: keep BatchNorm layers in eval mode while training (fine-tuning with small batches).
        in_chans: input channels; pretrained first-layer weights are adapted by timm.
        drop_path_rate: stochastic depth rate, for models that have it.
        pretrained: ``False``, ``True`` (weights from the model's pretrained_cfg) or a local file;
            loaded by :meth:`init_weights`. If ``model_kwargs`` only widen conv kernels (FocalNet
            ``focal_windows``), the pretrained kernels are zero-padded to the new size.
        pretrained_strict: a local ``pretrained`` file must supply every tensor of the backbone (except
            modules that ``model_kwargs`` add to the published architecture) and nothing else, with the
            same shapes; ``False`` loads what fits and logs the rest.
        model_kwargs: further keyword arguments of the timm model (e.g. ``n_win`` for BiFormer).
        feature_norms: a norm added to every output, as the upstream detection backbones of Swin,
            DaViT and FocalNet do: a timm norm name (``'layernorm2d'``) or ``dict(type=name, **kwargs)``
            (``dict(type='layernorm2d', eps=1e-5)`` is their ``nn.LayerNorm``). None adds nothing.
        pad_to_multiple: zero-pad the input at the right/bottom to a multiple of this and crop every
            output back to ``ceil(side / stride)``. ``'auto'`` (default) pads only as much as the model
            needs (:func:`required_input_multiple`); an int must be a multiple of what halo attention
            layers need; 1 never pads.
        out_norm: the former name of ``feature_norms`` (DeprecationWarning).
    """

    def __init__(self, model_name: str, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False, in_chans: int = 3,
                 drop_path_rate: float = 0.0, pretrained: bool | str = False, pretrained_strict: bool = True,
                 model_kwargs: dict[str, Any] | None = None, feature_norms: str | dict | None = None,
                 pad_to_multiple: int | str = 'auto', init_cfg: dict | None = None,
                 out_norm: str | dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if out_norm is not None:
            if feature_norms is not None:
                raise ConfigError('TimmBackbone: give feature_norms only (out_norm is its former name)')
            warnings.warn('TimmBackbone(out_norm=...) is deprecated: use feature_norms=... (same values)',
                          DeprecationWarning, stacklevel=2)
            feature_norms = out_norm
        model_kwargs = dict(model_kwargs or {})
        if drop_path_rate:
            model_kwargs['drop_path_rate'] = drop_path_rate
        meta_model = _meta_features_model(model_name, in_chans=in_chans, **model_kwargs)
        stages = _stages(meta_model)
        self.out_indices = check_stage_options(model_name, len(stages), out_indices, frozen_stages)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.model_name = model_name
        self.pad_to_multiple = self._resolve_pad_multiple(pad_to_multiple, meta_model, in_chans)

        self.pretrained = pretrained
        self.pretrained_strict = pretrained_strict
        self._build_kwargs = dict(features_only=True, in_chans=in_chans,
                                  out_indices=[stages[i]['feature_index'] for i in self.out_indices])
        self._model_kwargs = model_kwargs
        self.model = timm.create_model(model_name, pretrained=False, **self._build_kwargs, **model_kwargs)
        self.channels_last_output = _channels_last(self.model)
        self.out_channels = [stages[i]['num_chs'] for i in self.out_indices]
        self.out_strides = [stages[i]['reduction'] for i in self.out_indices]
        self.feature_norms = _build_feature_norms(feature_norms, self.out_channels)
        self._register_load_state_dict_pre_hook(_renamed_feature_norm_keys)
        self._stage_modules = [stages[i]['module'] for i in range(len(stages))]
        self._freeze_stages()

    def _resolve_pad_multiple(self, pad_to_multiple: int | str, meta_model: nn.Module, in_chans: int) -> int:
        max_stride = max(info['reduction'] for info in meta_model.feature_info.info)
        needed = _halo_multiple(meta_model, in_chans, max_stride)
        if pad_to_multiple == 'auto':
            return _required_multiple(meta_model, in_chans, needed)
        if not isinstance(pad_to_multiple, int) or isinstance(pad_to_multiple, bool) or pad_to_multiple < 1:
            raise ConfigError(f"pad_to_multiple must be 'auto' or an int >= 1, got {pad_to_multiple!r}")
        if pad_to_multiple % needed:
            raise ConfigError(f'{self.model_name}: pad_to_multiple={pad_to_multiple} leaves maps its halo attention '
                              f'cannot block; inputs must be multiples of {needed} (block size x stride of each '
                              f"halo layer): use pad_to_multiple='auto' or a multiple of {needed}")
        return pad_to_multiple

    def _pretrained_state(self) -> dict[str, torch.Tensor]:
        """The state dict of :attr:`model` with the ``pretrained`` weights."""
        if isinstance(self.pretrained, str) and not os.path.isfile(self.pretrained):
            raise MissingFileError(f'{self.model_name}: pretrained weights file {self.pretrained} does not exist; '
                                   'fix model.backbone.pretrained, or set it to True (published weights) or False')
        published = _meta_features_model(self.model_name, in_chans=self._build_kwargs['in_chans'],
                                         out_indices=self._build_kwargs['out_indices'])
        target = _shapes(self.model)
        grown = _grown_kernels(_shapes(published), target) if self._model_kwargs else []
        # Modules that model_kwargs add to the published architecture (e.g. BiFormer's feature_norms) start fresh.
        added = feature_key_forms(target.keys() - _shapes(published).keys())
        load = dict(strict=self.pretrained_strict, allowed_missing=added,
                    non_strict_option='model.backbone.pretrained_strict=False')
        if not grown:
            return create_model_with_weights(self.model_name, self.pretrained, **load, **self._build_kwargs,
                                             **self._model_kwargs).state_dict()
        # Load the weights into the architecture they were published for, then widen the kernels.
        state = create_model_with_weights(self.model_name, self.pretrained, **load, **self._build_kwargs).state_dict()
        for key in grown:
            state[key] = _zero_pad_kernel(state[key], target[key])
        return state

    def init_weights(self) -> None:
        """An explicit init_cfg re-initialises; then the ``pretrained`` weights load (only here, never at
        construction, so that building the model for testing or inference needs neither network nor file)."""
        if self.init_cfg:
            super().init_weights()
        if self.pretrained:
            self.model.load_state_dict(self._pretrained_state())
        self._is_init = True

    def _module_prefix(self, module_name: str) -> str | None:
        """Parameter-name prefix of a ``feature_info`` module inside the features wrapper.

        None when the wrapper dropped it (it comes after the last requested output).
        """
        modules = dict(self.model.named_modules())
        for candidate in (module_name, module_name.replace('.', '_'), f'model.{module_name}'):
            if candidate in modules:
                return candidate + '.'
        return None

    def _frozen_parameter_names(self) -> list[str]:
        """Parameters of the stem and the first ``frozen_stages`` stages, in registration order.

        A stage ends with the last parameter of its ``feature_info`` module; a module without
        parameters (ByobNet's ``Identity`` ``final_conv``) defers to the stage before it.
        """
        if self.frozen_stages < 0:
            return []
        names = [name for name, _ in self.model.named_parameters()]
        if self.frozen_stages == len(self._stage_modules):
            return names
        for module in reversed(self._stage_modules[:self.frozen_stages]):
            prefix = self._module_prefix(module)
            owned = [i for i, name in enumerate(names) if prefix and name.startswith(prefix)]
            if owned:
                return names[:owned[-1] + 1]
        first_stage = self._module_prefix(self._stage_modules[0])
        if first_stage is None:
            raise KeyError(f'{self.model_name}: feature module {self._stage_modules[0]!r} not found in the '
                           'features model')
        end = next((i for i, name in enumerate(names) if name.startswith(first_stage)), len(names))
        return names[:end]

    def _freeze_stages(self) -> None:
        frozen = set(self._frozen_parameter_names())
        for name, param in self.model.named_parameters():
            if name in frozen:
                param.requires_grad_(False)
        self._frozen_norms = [m for name, m in self.model.named_modules()
                              if isinstance(m, _BatchNorm) and f'{name}.weight' in frozen]
        for m in self._frozen_norms:
            m.eval()

    def train(self, mode: bool = True) -> 'TimmBackbone':
        super().train(mode)
        if mode:
            for m in self._frozen_norms:
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, _BatchNorm):
                        m.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.pad_to_multiple, -width % self.pad_to_multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        features = self.model(x)
        if self.channels_last_output:
            features = [f.permute(0, 3, 1, 2) for f in features]
        if pad_h or pad_w:
            features = [f[..., :-(-height // s), :-(-width // s)] for f, s in zip(features, self.out_strides)]
        if self.feature_norms is not None:
            features = [norm(f) for norm, f in zip(self.feature_norms, features)]
        return tuple(f.contiguous() for f in features)
