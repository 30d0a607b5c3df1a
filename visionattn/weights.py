"""Pretrained weights for timm models: fetched with one clear failure, or read from a local file and checked.

Why our own: timm fetches weights from the Hugging Face hub (retrying for about a minute when there is no
network) or a URL, and the project's models from OneDrive (BiFormer), GitHub or hub URLs (NAT/DiNAT) and
Google Drive (CBAM/Triplet); each failure is a different raw library error with no advice. And timm loads a
local file into a ``features_only`` model non-strictly, so the file of another model loads whatever matches.

- :func:`fetching` wraps a download: whatever fails becomes one
  :class:`~visionattn.errors.WeightsUnavailableError` saying what could not be fetched, where to get the file by
  hand and which argument or config key points the model at it (:func:`weights_unavailable`); with
  ``HF_HUB_OFFLINE=1`` weights missing from the local cache fail at once instead of after network timeouts.
- :func:`create_model_with_weights` builds a timm model with ``pretrained=True`` (fetched) or with the weights
  of a local file: read safely (:func:`visionattn.checkpoint.read_checkpoint`), passed through the entry
  point's own checkpoint filter and input-channel adaptation by timm, and checked strictly against the model.
  The file may be a checkpoint of ``tools/train.py`` (:func:`timm_weights_from_training`).
- :func:`timm_weights_from_training`: the timm model inside a training checkpoint (a ``visionattn.TimmBackbone``
  of a segmentor or detector, a ``TimmClassifier``), under the timm model's own keys. timm has no reader for
  mmengine checkpoints, whose keys carry the OpenMMLab wrappers' prefixes and, for a backbone, the names of
  timm's features wrapper (``stages_0`` for the model's ``stages.0``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Union
from urllib.parse import urlparse

import torch
from torch import nn
from torch.nn.modules.module import register_module_module_registration_hook

from .checkpoint import (KeyReport, describe_checkpoint, mismatch_message, read_checkpoint, state_dict_from)
from .errors import CheckpointError, WeightsUnavailableError

if TYPE_CHECKING:
    from timm.models import PretrainedCfg

__all__ = ['weights_unavailable', 'hub_offline', 'fetching', 'pretrained_location', 'create_model_with_weights',
           'feature_key_forms', 'is_training_checkpoint', 'TrainedWeights', 'timm_weights_from_training']

_logger = logging.getLogger(__name__)
GOOGLE_DRIVE = 'https://drive.google.com/uc?export=download&id='
_POINTERS = ("model.backbone.pretrained=PATH (model.pretrained=PATH for a classifier config; on the command "
             "line --cfg-options model.backbone.pretrained=PATH), pretrained_cfg_overlay=dict(file=PATH) in "
             "timm.create_model(..., pretrained=True), or for a downloaded hub folder (config.json and weights) "
             "timm.create_model('local-dir:FOLDER')")


def weights_unavailable(model_name: str, location: str, reason: str, by_hand: Optional[str] = None
                        ) -> WeightsUnavailableError:
    """The one message for pretrained weights that cannot be fetched, whatever their source."""
    return WeightsUnavailableError(
        f'could not fetch the pretrained weights of {model_name} from {location} ({reason}). Get the file by hand '
        f'({by_hand or "from " + location} on a machine with internet) and point the model at it: {_POINTERS}; '
        'or pretrained=False to train from scratch.')


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE=1``: no network for weights; what is not in the local cache fails at once."""
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def _hub_page(hub_id: str) -> str:
    return f'https://huggingface.co/{hub_id.split(":", 1)[-1]}'


def pretrained_location(model_name: str, pretrained_cfg_overlay: Optional[dict[str, Any]] = None,
                        pretrained_cfg: Union[str, dict[str, Any], PretrainedCfg, None] = None) -> tuple[str, str]:
    """Where timm would fetch ``model_name``'s weights: ``('hf-hub', id)``, ``('url', url)``, ``('local', what)``
    or ``('none', '')``, following timm's order (state dict, file, hub, URL).

    ``pretrained_cfg``: what ``timm.create_model`` hands an entry point in place of the registry's config (a
    tag, or the config of a ``local-dir:`` / ``hf-hub:`` folder, whose ``file`` is the folder's weights).
    """
    from timm.models import get_pretrained_cfg, split_model_name_tag
    if model_name.startswith('hf-hub:'):
        return 'hf-hub', model_name[len('hf-hub:'):]
    if model_name.startswith('local-dir:'):
        return 'local', model_name[len('local-dir:'):]
    architecture, tag = split_model_name_tag(model_name)
    if isinstance(pretrained_cfg, str):
        tag, pretrained_cfg = pretrained_cfg, None
    if pretrained_cfg is None:
        cfg = get_pretrained_cfg(f'{architecture}.{tag}' if tag else architecture, allow_unregistered=True)
        given = cfg.to_dict() if cfg is not None else {}
    else:
        given = dict(pretrained_cfg) if isinstance(pretrained_cfg, dict) else pretrained_cfg.to_dict()
    settings = dict(given, **(pretrained_cfg_overlay or {}))
    if settings.get('state_dict') is not None or settings.get('file'):
        return 'local', str(settings.get('file') or 'a state dict')
    if settings.get('hf_hub_id'):
        return 'hf-hub', settings['hf_hub_id']
    if settings.get('url'):
        return 'url', settings['url']
    return 'none', ''


def _cached_url(url: str) -> bool:
    """Whether timm's download of ``url`` is in torch's hub cache already."""
    return (Path(torch.hub.get_dir()) / 'checkpoints' / os.path.basename(urlparse(url).path)).is_file()


@contextlib.contextmanager
def fetching(model_name: str, pretrained_cfg_overlay: Optional[dict[str, Any]] = None,
             pretrained_cfg: Union[str, dict[str, Any], PretrainedCfg, None] = None) -> Iterator[None]:
    """Download failures inside the block (timm's hub or URL loaders) become :func:`weights_unavailable`
    (``pretrained_cfg``: as :func:`pretrained_location`)."""
    kind, location = pretrained_location(model_name, pretrained_cfg_overlay, pretrained_cfg)
    if kind == 'url' and location.startswith(GOOGLE_DRIVE):
        file_id = location[len(GOOGLE_DRIVE):]
        raise weights_unavailable(model_name, location, 'Google Drive answers large files with a confirmation '
                                  'page that no downloader of torch or timm passes',
                                  by_hand=f'`gdown {file_id}`, or your browser at {location}')
    if kind == 'url' and hub_offline() and not _cached_url(location):
        raise weights_unavailable(model_name, location, 'HF_HUB_OFFLINE=1 is set and the file is not in the '
                                  f'local cache {Path(torch.hub.get_dir()) / "checkpoints"}')
    where = _hub_page(location) if kind == 'hf-hub' else location
    try:
        yield
    except OSError as err:  # URLError, HTTPError, requests' and huggingface_hub's errors are all OSErrors
        if kind not in ('hf-hub', 'url'):
            raise
        reason = f'{type(err).__name__}: {str(err).splitlines()[0][:200]}' if str(err) else type(err).__name__
        if kind == 'hf-hub' and hub_offline():
            reason = 'HF_HUB_OFFLINE=1 is set and the files are not in the local Hugging Face cache'
        hint = f'model.safetensors from {where} (the "Files" tab)' if kind == 'hf-hub' else None
        raise weights_unavailable(model_name, where, reason, by_hand=hint) from err


# ---------------------------------------------------------------------------------------------
# Local files through timm's loader, checked
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _load_keys_of_built_modules() -> Iterator[list[Any]]:
    """The missing/unexpected key lists of ``load_state_dict`` calls on modules built inside the block.

    timm loads pretrained weights inside ``create_model`` and keeps the outcome to itself (a features model is
    always loaded non-strictly). torch's module registration hook puts a load post-hook on each module being
    built; the hook sees the key lists of the load, which torch shares between all modules of one call.
    """
    loads: list[Any] = []
    handles = []

    def record(module: nn.Module, keys: Any) -> None:
        if not any(keys.missing_keys is seen.missing_keys for seen in loads):
            loads.append(keys)

    def on_registration(parent: nn.Module, name: str, child: Optional[nn.Module]) -> None:
        if child is not None:
            handles.append(child.register_load_state_dict_post_hook(record))

    registration = register_module_module_registration_hook(on_registration)
    try:
        yield loads
    finally:
        registration.remove()
        for handle in handles:
            handle.remove()


_SIZE_MISMATCH = re.compile(r'size mismatch for ([^:]+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\) '
                            r'from checkpoint, the shape in current model is torch\.Size\(\[([\d, ]*)\]\)')


# What timm's loading raises for a file of another layout: the size-mismatch RuntimeError of load_state_dict,
# and whatever a family's checkpoint filter raises on keys or shapes it does not expect.
_FILTER_ERRORS = (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, AssertionError)


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(',') if s.strip())


def _normalized(key: str) -> str:
    """A key in a form shared by a model and its ``features_only`` wrapper: ``stages.0`` of the model is
    ``stages_0`` in a list wrapper (so every dot becomes an underscore)."""
    return key.replace('.', '_')


def feature_key_forms(keys: Any) -> frozenset[str]:
    """The normalized forms of a (features) model's state-dict keys, with and without a getter wrapper's
    ``model.`` prefix, to compare with the keys of the full model timm loads into."""
    return frozenset(_normalized(form) for key in keys for form in (key, key.removeprefix('model.')))


# ---------------------------------------------------------------------------------------------
# The timm model inside a checkpoint of tools/train.py
# ---------------------------------------------------------------------------------------------
# Where OpenMMLab models keep a timm backbone: the features model of visionattn.TimmBackbone, the timm_model of
# mmpretrain's / mmseg's TIMMBackbone. A TimmClassifier (visionattn's or mmpretrain's) saves its timm model's own keys.
_BACKBONE_PREFIXES = ('backbone.model.', 'backbone.timm_model.')
# TimmBackbone's own layers around the timm model (no place in timm's model); out_norms is their former name.
_ADAPTER_LAYERS = ('backbone.feature_norms.', 'backbone.out_norms.')
# Arguments of timm.create_model that choose the features wrapper, not the architecture.
_FEATURES_ARGS = ('features_only', 'out_indices', 'feature_cls', 'feature_cfg', 'flatten_sequential')


def is_training_checkpoint(checkpoint: Any) -> bool:
    """Whether ``checkpoint`` was saved by mmengine's Runner (``tools/train.py``): ``state_dict`` and ``meta``."""
    return isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict) \
        and isinstance(checkpoint.get('meta'), dict)


@dataclass(frozen=True)
class TrainedWeights:
    """The timm model of a training checkpoint."""
    state_dict: dict[str, torch.Tensor]  # under the timm model's own keys (timm.create_model(model_name, ...))
    part: str  # 'backbone' (features of a segmentor/detector) or 'classifier' (the whole timm model)
    left_out: tuple[str, ...]  # trained tensors of the backbone outside the timm model (TimmBackbone's feature_norms)


def _model_keys(model_name: str, model_kwargs: dict[str, Any]) -> list[str]:
    """The state-dict keys of the whole timm model (built on the meta device: nothing is allocated)."""
    import timm
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False,
                                  **{k: v for k, v in model_kwargs.items() if k not in _FEATURES_ARGS})
    return list(model.state_dict())


def _renamed_from_features(state: dict[str, torch.Tensor], model_name: str, model_kwargs: dict[str, Any],
                           source: str) -> dict[str, torch.Tensor]:
    """A features model's tensors under the whole model's keys (timm's wrappers turn ``stages.0`` into
    ``stages_0`` or prefix ``model.``; :func:`feature_key_forms`)."""
    keys = set(_model_keys(model_name, model_kwargs))
    by_form: dict[str, str] = {}
    for key in sorted(keys):
        by_form.setdefault(_normalized(key), key)
    renamed, unknown = {}, []
    for key, value in state.items():
        forms = (key, key.removeprefix('model.'))
        target = next((k for k in forms if k in keys), None) or next(
            (by_form[_normalized(f)] for f in forms if _normalized(f) in by_form), None)
        if target is None or target in renamed:
            unknown.append(key)
        else:
            renamed[target] = value
    if unknown:
        raise CheckpointError(f'{source}: {len(unknown)} backbone tensors have no place in {model_name} '
                              f'({", ".join(unknown[:4])}): the backbone was trained as another model; give the '
                              'model name (and model arguments) of its config')
    return renamed


def timm_weights_from_training(checkpoint: Any, model_name: str, source: str = 'the checkpoint',
                               **model_kwargs: Any) -> TrainedWeights:
    """The tensors of the timm model ``model_name`` in a ``tools/train.py`` checkpoint, under timm's own keys.

    A segmentor's or detector's ``visionattn.TimmBackbone`` gives the backbone's tensors (``part='backbone'``:
    the head, and whatever the features model left out, are not in it); a ``TimmClassifier``, which saves its
    timm model's own keys, the whole model (``part='classifier'``). ``model_kwargs`` are the model's ``timm.create_model`` arguments (its
    architecture, as the config built it). The neck and heads of the OpenMMLab model are not timm's and stay
    behind; TimmBackbone's own ``feature_norms`` are listed in ``left_out``.
    """
    state = state_dict_from(checkpoint, source)
    prefix = next((p for p in _BACKBONE_PREFIXES if any(k.startswith(p) for k in state)), None)
    if prefix is not None:
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        left_out = tuple(k for k in state if k.startswith(_ADAPTER_LAYERS))
        return TrainedWeights(_renamed_from_features(inner, model_name, model_kwargs, source), 'backbone', left_out)
    if any(k.startswith('backbone.') for k in state):
        raise CheckpointError(f'{source} holds no timm model: its backbone is not a timm model (e.g. '
                              f'{next(k for k in state if k.startswith("backbone."))}); the training checkpoints that '
                              "hold one are of configs with visionattn.TimmBackbone, mmpretrain's TIMMBackbone or a "
                              'TimmClassifier')
    return TrainedWeights(state, 'classifier', ())


def _classifier_prefixes(model_name: str) -> tuple[str, ...]:
    """Key prefixes of the classifier in the model's published weights (timm drops it for another class count)."""
    from timm.models import get_pretrained_cfg, split_model_name_tag
    cfg = get_pretrained_cfg(split_model_name_tag(model_name)[0], allow_unregistered=True)
    names = getattr(cfg, 'classifier', None) or ()
    return tuple(f'{name}.' for name in ((names,) if isinstance(names, str) else names))


def create_model_with_weights(model_name: str, weights: Union[bool, str], *, strict: bool = True,
                              allowed_missing: frozenset[str] = frozenset(),
                              non_strict_option: str = 'strict=False', **kwargs: Any) -> nn.Module:
    """``timm.create_model(model_name, **kwargs)`` with pretrained weights.

    ``weights=True``: the model's published weights (hub or URL; failures as :func:`fetching`). A path: that
    file, read safely, through the entry point's checkpoint filter and input-channel adaptation (timm's own
    mechanism, as ``pretrained_cfg_overlay=dict(file=...)``), then checked: with ``strict`` a tensor the model
    uses but the file lacks (except the classifier, which a different class count replaces, and the keys in
    ``allowed_missing``, see :func:`feature_key_forms`), a tensor of the file that lands nowhere, or a shape
    that differs stops with a CheckpointError naming them; otherwise they are logged and the rest is loaded.
    A checkpoint of ``tools/train.py`` gives the timm model it holds (:func:`timm_weights_from_training`); the
    backbone's own ``feature_norms`` have no place in timm's model and count as tensors that land nowhere.
    """
    import timm
    if weights is True:
        with fetching(model_name, kwargs.get('pretrained_cfg_overlay')):
            return timm.create_model(model_name, pretrained=True, **kwargs)
    path = str(weights)
    checkpoint = read_checkpoint(path)
    left_out: tuple[str, ...] = ()
    if is_training_checkpoint(checkpoint):
        trained = timm_weights_from_training(checkpoint, model_name, path, **kwargs)
        if trained.part == 'backbone' and not kwargs.get('features_only') and kwargs.get('num_classes') != 0:
            raise CheckpointError(f'{path} holds the backbone of a segmentor or detector, without a classifier: create '
                                  f'{model_name} as a backbone, with features_only=True or num_classes=0 (for the '
                                  'programs: --model-kwargs \'{"features_only": true}\')')
        state, left_out = trained.state_dict, trained.left_out
    else:
        state = state_dict_from(checkpoint, path)
    overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {}, state_dict=state)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    with _load_keys_of_built_modules() as loads:
        try:
            model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except _FILTER_ERRORS as err:
            mismatched = [(k, _shape(a), _shape(b)) for k, a, b in _SIZE_MISMATCH.findall(str(err))]
            if not mismatched:  # the entry point's checkpoint filter cannot read this layout
                raise CheckpointError(
                    f'{path} does not fit {model_name}: its checkpoint filter fails on it ({type(err).__name__}: '
                    f'{str(err)[:200]}). The checkpoint looks like {describe_checkpoint(checkpoint, path)}. Use '
                    'weights made for this model.') from err
            if strict or not any(k in state for k, _, _ in mismatched):
                model = None
            else:  # non-strict: leave the tensors of other shapes out (possible where the filter keeps names)
                overlay['state_dict'] = {k: v for k, v in state.items() if k not in {m[0] for m in mismatched}}
                model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    keys = loads[-1] if loads else None
    missing: tuple[str, ...] = ()
    if model is not None and keys:  # only what the built model uses counts (a features model drops the head...)
        used, fresh = feature_key_forms(model.state_dict()), _classifier_prefixes(model_name)
        missing = tuple(k for k in keys.missing_keys if _normalized(k) in used and _normalized(k) not in allowed_missing
                        and not k.startswith(fresh))
    model_tensors = len(model.state_dict()) if model is not None else len(state)
    report = KeyReport(missing=missing, unexpected=tuple(keys.unexpected_keys if keys else ()) + left_out,
                       mismatched=tuple(mismatched), model_tensors=model_tensors,
                       matched=max(0, model_tensors - len(missing) - len(mismatched)))
    if not report.ok:
        message = mismatch_message(path, model_name, report, describe_checkpoint(checkpoint, path), strict,
                                   non_strict_option)
        if strict or model is None:
            raise CheckpointError(message)
        _logger.warning(message)
    return model
