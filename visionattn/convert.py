"""Checkpoints into timm models: official upstream checkpoints, and the trained models of ``tools/train.py``.

Users bring checkpoints of upstream configurations they trained themselves, so a fixed list of
variants is not enough: each model family registers how to turn the upstream constructor's keyword
arguments into our model (``builder``) and how to rename the upstream state dict (``filter_fn``, the
same function timm uses as ``pretrained_filter_fn``).

A training run's timm model goes back to timm with :func:`timm_model_from_training`: the backbone of a
segmentor or detector, or a whole classifier, as a timm model whose state dict or hub folder
(:func:`write_timm_weights`, :func:`write_hub_dir`) ``timm.create_model`` loads strictly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from .checkpoint import (compare_state_dicts, describe_checkpoint, load_checkpoint_file, load_state_dict_checked,
                         state_dict_from, write_atomically)
from .errors import CheckpointError, ConfigError, UnknownNameError

__all__ = ['register_family', 'families', 'convert_state_dict', 'from_official', 'convert_checkpoint',
           'write_hub_dir', 'TimmFromTraining', 'timm_model_from_training', 'write_timm_weights']


@dataclass(frozen=True)
class _Family:
    builder: Callable[..., nn.Module]
    filter_fn: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]


_FAMILIES: dict[str, _Family] = {}


def register_family(name: str, builder: Callable[..., nn.Module],
                    filter_fn: Callable[[dict, nn.Module], dict]) -> None:
    """Make ``from_official(name, ...)`` available; called by each model module at import."""
    _FAMILIES[name] = _Family(builder, filter_fn)


def families() -> list[str]:
    """Names accepted by :func:`from_official`."""
    return sorted(_FAMILIES)


def _family(name: str) -> _Family:
    if name not in _FAMILIES:
        raise UnknownNameError(f'unknown model family {name!r}; known families: {families()}')
    return _FAMILIES[name]


def convert_state_dict(family: str, state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` (upstream layout, possibly wrapped) renamed for ``model``, by ``family``'s filter."""
    return _family(family).filter_fn(state_dict_from(state_dict), model)


def from_official(family: str, upstream_kwargs: Mapping[str, Any],
                  state_dict: Mapping[str, Any] | None = None, strict: bool = True) -> nn.Module:
    """Our model for the upstream ``family`` built from ``upstream_kwargs``, with ``state_dict`` loaded.

    ``state_dict`` uses the upstream key layout (it may be wrapped in ``{'model': ...}`` as released).
    With ``strict`` (default) any missing or unexpected key raises, naming the keys.
    """
    model = _family(family).builder(**dict(upstream_kwargs))
    if state_dict is not None:
        converted = convert_state_dict(family, state_dict, model)
        result = model.load_state_dict(converted, strict=False)
        if strict and (result.missing_keys or result.unexpected_keys):
            raise RuntimeError(
                f'{family} checkpoint does not match the model built from upstream_kwargs: '
                f'missing keys {result.missing_keys[:10]}, unexpected keys {result.unexpected_keys[:10]}. '
                'Check that upstream_kwargs are the ones the checkpoint was trained with.')
    return model.eval()


_CONVERT_ADVICE = ('Pick the entry point (and model_kwargs) of the checkpoint, or give the upstream constructor '
                   'arguments (upstream_kwargs; for detection/segmentation checkpoints: the backbone dict of the '
                   'upstream config, with its out_indices).')


def _model_from_entry_point(family: str, name: str, model_kwargs: dict[str, Any],
                            state_dict: dict[str, torch.Tensor], source: Path) -> nn.Module:
    import timm
    if not timm.is_model(name):
        raise UnknownNameError(f'model {name!r} is not a timm model; names of the family: '
                               f"timm.list_models('{family}*') after `import visionattn`")
    model = timm.create_model(name, pretrained=False, **model_kwargs)
    model_name = f'{name} {model_kwargs or ""}'.strip()
    try:
        converted = convert_state_dict(family, state_dict, model)
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f'{source} does not fit {model_name}: the {family} checkpoint filter fails on it '
                              f'({err}). {_CONVERT_ADVICE}') from err
    load_state_dict_checked(model, converted, source=str(source), model_name=model_name,
                            looks_like=describe_checkpoint(state_dict), advice=_CONVERT_ADVICE)
    return model


def convert_checkpoint(family: str, source: Path, output: Optional[Path] = None, model: Optional[str] = None,
                       model_kwargs: Optional[dict[str, Any]] = None,
                       upstream_kwargs: Optional[dict[str, Any]] = None,
                       hub_dir: Optional[Path] = None) -> dict[str, torch.Tensor]:
    """Convert the official checkpoint ``source`` with ``family``'s filter into ``output`` (safetensors)
    and/or ``hub_dir`` (timm's hub layout, see :func:`write_hub_dir`).

    The architecture comes from a timm entry point (``model`` with ``model_kwargs``) or from the upstream
    constructor's keyword arguments (``upstream_kwargs``; not for ``hub_dir``, whose config must name a timm
    architecture); every tensor must land. Returns the converted tensors.
    """
    from safetensors.torch import save_file

    source = Path(source)
    _family(family)
    if (model is None) == (upstream_kwargs is None):
        raise ConfigError('give exactly one of model (a timm entry point) and upstream_kwargs')
    if model is None and model_kwargs:
        raise ConfigError('model_kwargs go with model; with upstream_kwargs put everything there')
    if output is None and hub_dir is None:
        raise ConfigError('give an output .safetensors file, a hub folder (hub_dir), or both')
    if output is not None and Path(output).suffix != '.safetensors':
        raise ConfigError(f'the output must be a .safetensors file, got {output}')
    if hub_dir is not None and model is None:
        raise ConfigError('a hub folder names a timm architecture in its config.json: give the timm entry point '
                          '(model, with model_kwargs for any change of the architecture) instead of upstream_kwargs')
    state_dict = load_checkpoint_file(str(source))
    if model is not None:
        built = _model_from_entry_point(family, model, model_kwargs or {}, state_dict, source)
    else:
        try:
            built = from_official(family, upstream_kwargs, state_dict)
        except (RuntimeError, TypeError, ValueError) as err:
            raise CheckpointError(f'{family} conversion failed: {err}')
    tensors = {k: v.detach().contiguous() for k, v in built.state_dict().items()}
    if output is not None:
        metadata = dict(family=family, source=source.name, converted_by='visionattn convert_checkpoint')
        if model is not None:
            metadata.update(model=model, model_kwargs=json.dumps(model_kwargs or {}))
        else:
            metadata.update(upstream_kwargs=json.dumps(upstream_kwargs))
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with write_atomically(Path(output)) as partial:
            save_file(tensors, str(partial), metadata=metadata)
    if hub_dir is not None:
        write_hub_dir(built, hub_dir)
    return tensors


def write_hub_dir(model: nn.Module, hub_dir: Path, model_args: Optional[dict[str, Any]] = None) -> None:
    """Write ``model`` (made by ``timm.create_model``) in timm's hub layout with timm's own ``save_for_hf``:
    ``config.json`` (architecture, num_classes, the pretrained config and the model's creation arguments,
    plus ``model_args``) and ``model.safetensors``. ``timm.create_model('local-dir:<hub_dir>', pretrained=True)``
    loads it as it is, and the folder can be uploaded to the Hugging Face hub unchanged (``hf-hub:<user>/<repo>``)."""
    from timm.models import save_for_hf

    if getattr(model, 'pretrained_cfg', None) is None:
        raise ConfigError('the model has no timm pretrained config: create it with timm.create_model(...)')
    save_for_hf(model, str(hub_dir), model_args=model_args, safe_serialization=True)


# ---------------------------------------------------------------------------------------------
# The timm model of a training run (tools/train.py)
# ---------------------------------------------------------------------------------------------
PARTS = ('backbone', 'classifier')


@dataclass
class TimmFromTraining:
    """A training run's timm model, rebuilt by ``timm.create_model`` with the trained weights."""
    model: nn.Module  # in eval mode; a backbone is the headless model (num_classes=0)
    model_name: str
    model_args: dict[str, Any]  # timm.create_model arguments that rebuild ``model``'s architecture
    part: str  # 'backbone' or 'classifier'
    trained: dict[str, torch.Tensor]  # the trained tensors, under the model's keys
    untrained: tuple[str, ...]  # keys of ``model`` that the training did not have (kept as initialised)
    out_indices: tuple[int, ...] = ()  # a backbone: the feature indices (timm's) it was trained to output

    @property
    def hub_model_args(self) -> dict[str, Any]:
        """What a hub folder's config.json adds: a backbone loads as the features model it was trained as."""
        if self.part == 'backbone' and self.out_indices:
            return dict(features_only=True, out_indices=list(self.out_indices))
        return {}


def _architecture_args(model: nn.Module) -> dict[str, Any]:
    """The ``timm.create_model`` arguments a timm model was made with, less training-only drop rates."""
    return {k: v for k, v in getattr(model, '_model_args', {}).items() if 'drop' not in k}


def _build_openmmlab(config: str, cfg_options: Optional[dict[str, Any]]) -> tuple[nn.Module, Any]:
    from mmengine.registry import MODELS, DefaultScope

    from .mm.config import load_config
    cfg = load_config(config, cfg_options)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MODELS.build(cfg.model)
    return model.eval(), cfg


def _classifier_name(model: nn.Module) -> str:
    names = model.pretrained_cfg.get('classifier')
    return names if isinstance(names, str) else names[0]


def timm_model_from_training(config: str, checkpoint: Path, part: Optional[str] = None, strict: bool = True,
                             cfg_options: Optional[dict[str, Any]] = None) -> TimmFromTraining:
    """The timm model of the OpenMMLab ``config`` with the weights of ``checkpoint`` (saved by ``tools/train.py``).

    The config's model is built and the checkpoint, read safely, must fit it (``strict``). Then ``part``:

    - ``'backbone'`` (default for segmentors and detectors): the ``visionattn.TimmBackbone`` as the headless timm
      model (``num_classes=0``); what the backbone did not have (the final norm, stages after its last output)
      keeps timm's initialisation and is listed in ``untrained``. The backbone's own ``feature_norms`` are not
      part of timm's model: a CheckpointError names them unless ``strict=False``.
    - ``'classifier'`` (default for classifiers): the whole timm model of a ``TimmClassifier``, or of an
      mmpretrain ``ImageClassifier`` whose backbone is a TimmBackbone, neck global average pooling and head
      a linear layer, when timm's model computes the same logits (checked on a random input).
    """
    import timm

    from .checkpoint import read_checkpoint
    from .weights import timm_weights_from_training
    if part is not None and part not in PARTS:
        raise ConfigError(f'part must be one of {PARTS}, got {part!r}')
    mm_model, _ = _build_openmmlab(config, cfg_options)
    saved = read_checkpoint(checkpoint)
    load_state_dict_checked(mm_model, state_dict_from(saved, str(checkpoint)), strict=strict, source=str(checkpoint),
                            model_name=f'the model of {Path(config).stem}', looks_like=describe_checkpoint(saved),
                            non_strict_option='--non-strict')
    backbone = getattr(mm_model, 'backbone', None)
    is_classifier = hasattr(mm_model, 'head') or backbone is None
    part = part or ('classifier' if is_classifier else 'backbone')
    if backbone is None:  # a TimmClassifier: the whole timm model is mm_model.model
        inner = getattr(mm_model, 'model', None)
        if inner is None or getattr(inner, 'pretrained_cfg', None) is None:
            raise ConfigError(f'{config}: its {type(mm_model).__name__} holds no timm model: a timm model is exported '
                              'from configs with visionattn.TimmBackbone or a TimmClassifier')
        model_name, args = inner.pretrained_cfg['architecture'], _architecture_args(inner)
        if part == 'classifier':
            return TimmFromTraining(inner.eval(), model_name, args, part, dict(inner.state_dict()), ())
        args['num_classes'] = 0
        headless = timm.create_model(model_name, pretrained=False, **args).eval()
        trained = {k: v for k, v in inner.state_dict().items() if k in headless.state_dict()}
        headless.load_state_dict(trained)
        return TimmFromTraining(headless, model_name, args, part, trained, ())
    from .mm.backbones import TimmBackbone
    if not isinstance(backbone, TimmBackbone):
        raise ConfigError(f'{config}: the backbone is {type(backbone).__name__}; a backbone is exported to timm '
                          'from visionattn.TimmBackbone')
    model_name = backbone.model_name
    args = dict(in_chans=backbone._build_kwargs['in_chans'],
                **{k: v for k, v in backbone._model_kwargs.items() if 'drop' not in k})
    weights = timm_weights_from_training(saved, model_name, str(checkpoint), **args)
    if weights.left_out and strict:
        raise CheckpointError(f'{checkpoint}: the backbone\'s feature_norms ({len(weights.left_out)} tensors: '
                              f'{", ".join(weights.left_out[:2])}, ...) are layers of visionattn.TimmBackbone, not of '
                              f'{model_name}: timm\'s model cannot hold them; --non-strict leaves them out')
    out_indices = tuple(backbone._build_kwargs['out_indices'])
    if part == 'backbone':
        args['num_classes'] = 0
        model = timm.create_model(model_name, pretrained=False, **args).eval()
        result = model.load_state_dict(weights.state_dict, strict=False)
        return TimmFromTraining(model, model_name, args, part, weights.state_dict, tuple(result.missing_keys),
                                out_indices)
    return _image_classifier_as_timm(mm_model, config, model_name, args, weights.state_dict, out_indices)


def _image_classifier_as_timm(mm_model: nn.Module, config: str, model_name: str, args: dict[str, Any],
                              backbone_state: dict[str, torch.Tensor], out_indices: tuple[int, ...]
                              ) -> TimmFromTraining:
    """mmpretrain's ImageClassifier (TimmBackbone, pooling neck, linear head) as the whole timm model, if the same."""
    import timm
    fc = getattr(getattr(mm_model, 'head', None), 'fc', None)
    if not isinstance(fc, nn.Linear):
        raise ConfigError(f'{config}: the classifier\'s head is not a linear layer (head.fc): export the backbone '
                          '(part=backbone)')
    args = dict(args, num_classes=fc.out_features)
    model = timm.create_model(model_name, pretrained=False, **args).eval()
    classifier = _classifier_name(model)
    state = dict(backbone_state, **{f'{classifier}.weight': fc.weight.detach(), f'{classifier}.bias': fc.bias.detach()})
    report = compare_state_dicts(model.state_dict(), state)
    if not report.ok:
        raise ConfigError(f'{config}: its classifier is not {model_name} with a new head ({report}): export the '
                          'backbone (part=backbone)')
    model.load_state_dict(state)
    x = torch.randn(2, args['in_chans'], *model.pretrained_cfg['input_size'][1:])
    with torch.no_grad():
        want, got = mm_model(x, mode='tensor'), model(x)
    if not torch.allclose(got, want, atol=1e-4, rtol=1e-4):
        raise ConfigError(f'{config}: {model_name} with the trained weights does not compute the classifier\'s '
                          f'logits (max difference {float((got - want).abs().max()):.3g}): its neck or head is not '
                          f'timm\'s; export the backbone (part=backbone)')
    return TimmFromTraining(model, model_name, args, 'classifier', state, (), out_indices)


def write_timm_weights(exported: TimmFromTraining, output: Optional[Path] = None,
                       hub_dir: Optional[Path] = None, source: str = '') -> None:
    """Write a training run's timm model: its trained tensors as ``output`` (safetensors, timm's keys; loads with
    ``pretrained_cfg_overlay=dict(file=...)``) and/or the whole model as a timm hub folder (:func:`write_hub_dir`;
    a backbone's folder loads as the features model it was trained as)."""
    from safetensors.torch import save_file
    if output is None and hub_dir is None:
        raise ConfigError('give an output .safetensors file, a hub folder (hub_dir), or both')
    if output is not None:
        if Path(output).suffix != '.safetensors':
            raise ConfigError(f'the output must be a .safetensors file, got {output}')
        metadata = dict(model=exported.model_name, model_kwargs=json.dumps(exported.model_args), part=exported.part,
                        source=source, converted_by='visionattn export timm')
        if exported.out_indices:
            metadata['out_indices'] = json.dumps(list(exported.out_indices))
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with write_atomically(Path(output)) as partial:
            save_file({k: v.detach().contiguous() for k, v in exported.trained.items()}, str(partial),
                      metadata=metadata)
    if hub_dir is not None:
        write_hub_dir(exported.model, hub_dir, model_args=exported.hub_model_args)
