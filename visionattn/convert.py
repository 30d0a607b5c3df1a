"""Build our models from the constructor arguments of an upstream implementation and load its weights.

Users bring checkpoints of upstream configurations they trained themselves, so a fixed list of
variants is not enough: each model family registers how to turn the upstream constructor's keyword
arguments into our model (``builder``) and how to rename the upstream state dict (``filter_fn``, the
same function timm uses as ``pretrained_filter_fn``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from .checkpoint import (describe_checkpoint, load_checkpoint_file, load_state_dict_checked, state_dict_from,
                         write_atomically)
from .errors import CheckpointError, ConfigError, UnknownNameError

__all__ = ['register_family', 'families', 'convert_state_dict', 'from_official', 'convert_checkpoint',
           'write_hub_dir']


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


def write_hub_dir(model: nn.Module, hub_dir: Path) -> None:
    """Write ``model`` (made by ``timm.create_model``) in timm's hub layout with timm's own ``save_for_hf``:
    ``config.json`` (architecture, num_classes, the pretrained config and the model's creation arguments)
    and ``model.safetensors``. ``timm.create_model('local-dir:<hub_dir>', pretrained=True)`` loads it as it
    is, and the folder can be uploaded to the Hugging Face hub unchanged (``hf-hub:<user>/<repo>``)."""
    from timm.models import save_for_hf

    if getattr(model, 'pretrained_cfg', None) is None:
        raise ConfigError('the model has no timm pretrained config: create it with timm.create_model(...)')
    save_for_hf(model, str(hub_dir), safe_serialization=True)
