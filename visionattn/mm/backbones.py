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
  ``pretrained_cfg_overlay=dict(file=...)``).
- ``in_chans``: timm adapts pretrained first-layer weights to any channel count.
- Outputs are always NCHW; :attr:`out_channels` and :attr:`out_strides` list them for the neck.
"""
from __future__ import annotations

import difflib
from typing import Any, Sequence

import timm
import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import visionattn  # noqa: F401  (registers the project's models in timm)
from visionattn.registry import MODELS

__all__ = ['TimmBackbone', 'stage_feature_info']


def _unknown_model_error(model_name: str) -> KeyError:
    close = difflib.get_close_matches(model_name, timm.list_models(), n=5)
    hint = f' Did you mean {close}?' if close else ''
    return KeyError(f"unknown timm model {model_name!r}.{hint} List the names with "
                    f"timm.list_models('<pattern>') after `import visionattn`.")


def stage_feature_info(model_name: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The ``feature_info`` entries of ``model_name`` that count as stages (stride >= 4).

    Built on the meta device, so nothing is allocated or downloaded.
    """
    if not timm.is_model(model_name):
        raise _unknown_model_error(model_name)
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False, features_only=True, **kwargs)
    infos = [dict(info, feature_index=i) for i, info in enumerate(model.feature_info.info)]
    stages = [info for info in infos if info['reduction'] >= 4]
    return stages or infos


def _resolve_indices(indices: Sequence[int], count: int, what: str) -> list[int]:
    resolved = []
    for i in indices:
        if not -count <= i < count:
            raise IndexError(f'{what} {i} is out of range: the model has {count} stages (0..{count - 1})')
        resolved.append(i % count)
    return resolved


@MODELS.register_module()
class TimmBackbone(BaseModule):
    """A timm model's multi-scale features, with the usual OpenMMLab backbone options.

    Args:
        model_name: any name in timm's registry (the project's own models included).
        out_indices: stages to return (stride >= 4 entries of ``feature_info``; negatives count
            from the end).
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and the first
            k stages (parameters and, for BatchNorm, running statistics).
        norm_eval: keep BatchNorm layers in eval mode while training (fine-tuning with small batches).
        in_chans: input channels; pretrained first-layer weights are adapted by timm.
        drop_path_rate: stochastic depth rate, for models that have it.
        pretrained: ``False``, ``True`` (weights from the model's pretrained_cfg) or a local file.
        model_kwargs: further keyword arguments of the timm model (e.g. ``n_win`` for BiFormer).
    """

    def __init__(self, model_name: str, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False, in_chans: int = 3,
                 drop_path_rate: float = 0.0, pretrained: bool | str = False,
                 model_kwargs: dict[str, Any] | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        model_kwargs = dict(model_kwargs or {})
        if drop_path_rate:
            model_kwargs['drop_path_rate'] = drop_path_rate
        stages = stage_feature_info(model_name, in_chans=in_chans, **model_kwargs)
        self.out_indices = _resolve_indices(out_indices, len(stages), 'out_indices')
        if not -1 <= frozen_stages <= len(stages):
            raise ValueError(f'frozen_stages must be in -1..{len(stages)} for {model_name}, got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.model_name = model_name

        if isinstance(pretrained, str):
            model_kwargs['pretrained_cfg_overlay'] = dict(file=pretrained)
        self.model = timm.create_model(
            model_name, pretrained=bool(pretrained), features_only=True, in_chans=in_chans,
            out_indices=[stages[i]['feature_index'] for i in self.out_indices], **model_kwargs)
        self.channels_last_output = str(getattr(self.model, 'output_fmt', 'NCHW')).endswith('NHWC')
        self.out_channels = [stages[i]['num_chs'] for i in self.out_indices]
        self.out_strides = [stages[i]['reduction'] for i in self.out_indices]
        self._stage_modules = [stages[i]['module'] for i in range(len(stages))]
        self._freeze_stages()

    def init_weights(self) -> None:
        """Weights come from timm (random init or ``pretrained``); only an explicit init_cfg re-inits."""
        if self.init_cfg:
            super().init_weights()

    def _module_prefix(self, module_name: str) -> str:
        """Parameter-name prefix of a ``feature_info`` module inside the features wrapper."""
        modules = dict(self.model.named_modules())
        for candidate in (module_name, module_name.replace('.', '_'), f'model.{module_name}'):
            if candidate in modules:
                return candidate + '.'
        raise KeyError(f'{self.model_name}: feature module {module_name!r} not found in the features model')

    def _frozen_parameter_names(self) -> list[str]:
        """Parameters of the stem and the first ``frozen_stages`` stages, in registration order."""
        if self.frozen_stages < 0:
            return []
        names = [name for name, _ in self.model.named_parameters()]
        if self.frozen_stages < len(self._stage_modules):
            first_trainable = self._module_prefix(self._stage_modules[self.frozen_stages])
            end = next((i for i, n in enumerate(names) if n.startswith(first_trainable)), len(names))
        else:
            last_frozen = self._module_prefix(self._stage_modules[-1])
            end = max(i for i, n in enumerate(names) if n.startswith(last_frozen)) + 1
        return names[:end]

    def _freeze_stages(self) -> None:
        frozen = set(self._frozen_parameter_names())
        for name, param in self.model.named_parameters():
            if name in frozen:
                param.requires_grad_(False)
        self._frozen_norms = [m for name, m in self.model.named_modules()
                              if isinstance(m, _BatchNorm) and any(f'{name}.{p}' in frozen for p in ('weight',))]
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
        features = self.model(x)
        if self.channels_last_output:
            features = [f.permute(0, 3, 1, 2) for f in features]
        return tuple(f.contiguous() for f in features)
