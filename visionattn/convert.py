"""Build our models from the constructor arguments of an upstream implementation and load its weights.

Users bring checkpoints of upstream configurations they trained themselves, so a fixed list of
variants is not enough: each model family registers how to turn the upstream constructor's keyword
arguments into our model (``builder``) and how to rename the upstream state dict (``filter_fn``, the
same function timm uses as ``pretrained_filter_fn``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

__all__ = ['register_family', 'families', 'convert_state_dict', 'from_official', 'load_checkpoint_file']


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


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or the usual training-checkpoint wrappers around one."""
    for key in ('model', 'state_dict', 'model_ema'):
        if key in state_dict and isinstance(state_dict[key], Mapping):
            return dict(state_dict[key])
    return dict(state_dict)


def load_checkpoint_file(path: str) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt``/``.safetensors`` checkpoint safely (tensors only, no pickled code)."""
    if str(path).endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return _unwrap(torch.load(path, map_location='cpu', weights_only=True))


def convert_state_dict(family: str, state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` (upstream layout, possibly wrapped) renamed for ``model``, by ``family``'s filter."""
    if family not in _FAMILIES:
        raise KeyError(f'unknown model family {family!r}; known families: {families()}')
    return _FAMILIES[family].filter_fn(_unwrap(state_dict), model)


def from_official(family: str, upstream_kwargs: Mapping[str, Any],
                  state_dict: Mapping[str, Any] | None = None, strict: bool = True) -> nn.Module:
    """Our model for the upstream ``family`` built from ``upstream_kwargs``, with ``state_dict`` loaded.

    ``state_dict`` uses the upstream key layout (it may be wrapped in ``{'model': ...}`` as released).
    With ``strict`` (default) any missing or unexpected key raises, naming the keys.
    """
    if family not in _FAMILIES:
        raise KeyError(f'unknown model family {family!r}; known families: {families()}')
    fam = _FAMILIES[family]
    model = fam.builder(**dict(upstream_kwargs))
    if state_dict is not None:
        converted = convert_state_dict(family, state_dict, model)
        result = model.load_state_dict(converted, strict=False)
        if strict and (result.missing_keys or result.unexpected_keys):
            raise RuntimeError(
                f'{family} checkpoint does not match the model built from upstream_kwargs: '
                f'missing keys {result.missing_keys[:10]}, unexpected keys {result.unexpected_keys[:10]}. '
                'Check that upstream_kwargs are the ones the checkpoint was trained with.')
    return model.eval()
