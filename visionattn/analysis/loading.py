"""A model for pictures, from a timm model name or from an OpenMMLab config and a trained checkpoint.

:func:`load_model` is the one place the pictures load weights: a timm name with an optional weights
file (through the model's pretrained-weights path and checkpoint filter), or a config with a
checkpoint saved by ``tools/train.py`` (a segmentation or detection config: mmseg's ``init_model`` or
mmdet's ``init_detector`` build the model, and the checkpoint is read safely and loaded strictly by
:mod:`visionattn.checkpoint`, as every other path that takes a user's checkpoint).

:meth:`LoadedModel.infer` runs the model once on an RGB image the way its own inference does (the
config's test pipeline and data preprocessor for OpenMMLab models; resize and the pretrained mean/std
for timm models) and says at which scale the network saw the image, so attention maps can be laid
over it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import CheckpointError, ConfigError, DataError, MissingFileError, UnknownNameError

__all__ = ['LoadedModel', 'Inference', 'load_model', 'load_image']

# default_scope -> (module of the inference API, init function, inference function). Classification configs
# (mmpretrain) are not here: their inference results do not say at which scale the network saw the image.
_MM_APIS = {
    'mmseg': ('mmseg.apis', 'init_model', 'inference_model'),
    'mmdet': ('mmdet.apis', 'init_detector', 'inference_detector'),
}


@dataclass
class Inference:
    """One run of a model on one image."""
    image: np.ndarray  # RGB uint8 at the scale the network saw it (after the test pipeline's resize)
    input_size: tuple[int, int]  # (height, width) of the network's input: the image plus any padding
    scale: tuple[float, float]  # (y, x) pixels of ``image`` per pixel of the original image
    prediction: Any  # the model's result: an mmseg/mmdet data sample, or timm's logits


@dataclass
class LoadedModel:
    """A model in eval mode and how to run it on an image."""
    model: nn.Module  # the whole model (a segmentor, detector, classifier or timm model)
    network: nn.Module  # the part that takes the image tensor (the backbone of OpenMMLab models)
    title: str  # what the pictures call it: the model name or config file, and the checkpoint
    scope: Optional[str] = None  # the config's default_scope; None for timm models
    mean: Sequence[float] = (0.485, 0.456, 0.406)  # timm models: input normalisation (0..1 scale)
    std: Sequence[float] = (0.229, 0.224, 0.225)
    size: Optional[tuple[int, int]] = None  # timm models: resize images to (height, width) first
    dataset_meta: dict[str, Any] = field(default_factory=dict)  # classes and palette of OpenMMLab models

    def infer(self, image: np.ndarray) -> Inference:
        """Run the model on an RGB uint8 image (H, W, 3) as its own inference would."""
        shapes: list[tuple[int, int]] = []
        hook = self.network.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape[-2:])))
        try:
            with torch.no_grad():
                if self.scope is None:
                    shown = _resized(image, self.size)
                    x = torch.tensor(shown).permute(2, 0, 1)[None].float() / 255  # a copy: arrays may be read-only
                    mean = torch.tensor(self.mean).view(1, 3, 1, 1)
                    std = torch.tensor(self.std).view(1, 3, 1, 1)
                    prediction = self.model((x - mean) / std)
                else:
                    infer = getattr(__import__(_MM_APIS[self.scope][0], fromlist=['_']), _MM_APIS[self.scope][2])
                    prediction = infer(self.model, np.ascontiguousarray(image[..., ::-1]))  # the APIs take BGR
                    shown = _resized(image, _network_image_size(prediction, image))
        finally:
            hook.remove()
        if not shapes:
            raise RuntimeError(f'{type(self.network).__name__} did not run during inference')
        scale = (shown.shape[0] / image.shape[0], shown.shape[1] / image.shape[1])
        return Inference(image=shown, input_size=shapes[0], scale=scale, prediction=prediction)


def _network_image_size(prediction: Any, image: np.ndarray) -> tuple[int, int]:
    """(height, width) of the image after the test pipeline's resize, from the data sample's metainfo."""
    sample = prediction[0] if isinstance(prediction, list) else prediction
    metainfo = getattr(sample, 'metainfo', None) or {}
    return tuple(metainfo.get('img_shape', image.shape[:2]))[:2]


def _resized(image: np.ndarray, size: Optional[Sequence[int]]) -> np.ndarray:
    if size is None or tuple(size) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def load_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3)."""
    if not Path(path).is_file():
        raise MissingFileError(f'image {path} does not exist')
    try:
        return np.asarray(Image.open(path).convert('RGB'))
    except OSError as err:
        raise DataError(f'{path} is not an image PIL can read ({err})') from err



def load_model(source: str, checkpoint: Optional[str] = None, *, cfg_options: Optional[dict[str, Any]] = None,
               model_kwargs: Optional[dict[str, Any]] = None, size: Optional[Sequence[int]] = None,
               device: str = 'cpu', strict: bool = True) -> LoadedModel:
    """The model of ``source`` in eval mode, with the weights of ``checkpoint`` if given.

    ``source`` is an OpenMMLab config file (``.py``; ``checkpoint`` saved by ``tools/train.py``,
    ``cfg_options`` override its entries) or a timm model name (``checkpoint`` a weights file,
    ``model_kwargs`` extra ``timm.create_model`` arguments, ``size`` the input size images are resized
    to, default their own). The checkpoint must fit the model unless ``strict=False`` (then what fits is
    loaded and the rest logged).
    """
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise MissingFileError(f'checkpoint {checkpoint} does not exist')
    title = Path(source).name + (f' + {Path(checkpoint).name}' if checkpoint else ' (untrained)')
    if source.endswith('.py'):
        if model_kwargs or size:
            raise ConfigError('model_kwargs and size apply to timm models; a config sets them itself '
                              '(change them with cfg_options)')
        return _load_openmmlab(source, checkpoint, cfg_options, device, title, strict)
    if cfg_options:
        raise ConfigError(f'cfg_options apply to configs, and {source!r} is a timm model name: pass model_kwargs')
    import timm

    import visionattn  # noqa: F401  (registers the project's models)
    if not timm.is_model(source):
        raise UnknownNameError(f'{source!r} is neither a config file (.py) nor a timm model name (see '
                               'timm.list_models() after `import visionattn`)')
    if checkpoint:
        from ..weights import create_model_with_weights
        model = create_model_with_weights(source, checkpoint, strict=strict, non_strict_option='--non-strict',
                                          **dict(model_kwargs or {}))
    else:
        model = timm.create_model(source, **dict(model_kwargs or {}))
    model = model.eval().to(device)
    cfg = model.pretrained_cfg
    return LoadedModel(model=model, network=model, title=title, mean=cfg.get('mean', LoadedModel.mean),
                       std=cfg.get('std', LoadedModel.std), size=tuple(size) if size else None)


def _loads_annotations(transform: dict) -> bool:
    return str(transform.get('type', '')).split('.')[-1] in ('LoadAnnotations', 'LoadSegAnnotations')


def _load_openmmlab(config: str, checkpoint: Optional[str], cfg_options: Optional[dict[str, Any]], device: str,
                    title: str, strict: bool) -> LoadedModel:
    from ..checkpoint import describe_checkpoint, load_state_dict_checked, read_checkpoint, state_dict_from
    from ..mm.config import load_config
    if not Path(config).is_file():
        raise MissingFileError(f'config {config} does not exist')
    cfg = load_config(config, cfg_options)
    scope = cfg.get('default_scope')
    if scope not in _MM_APIS:
        raise ConfigError(f"{config}: default_scope is {scope!r}; pictures are drawn for segmentation ('mmseg') and "
                          "detection ('mmdet') configs, and for timm models by name (with their weights file)")
    module, init_name, _ = _MM_APIS[scope]
    init = getattr(__import__(module, fromlist=['_']), init_name)
    # Pictures are drawn for images without annotations: mmseg's inference drops only a transform named exactly
    # 'LoadAnnotations', so the project's annotation loaders are dropped here.
    cfg.test_pipeline = [t for t in cfg.get('test_pipeline', []) if not _loads_annotations(t)]
    model = init(cfg, None, device=device)
    if checkpoint is not None:
        saved = read_checkpoint(checkpoint)
        load_state_dict_checked(model, state_dict_from(saved, checkpoint), strict=strict, source=checkpoint,
                                model_name=f'the model of {Path(config).stem}',
                                looks_like=describe_checkpoint(saved, checkpoint), non_strict_option='--non-strict')
        dataset_meta = saved.get('meta', {}).get('dataset_meta') if isinstance(saved, dict) else None
        if not dataset_meta:
            raise CheckpointError(f"{checkpoint} has no meta['dataset_meta'] (class names and palette) to draw with: "
                                  'use a checkpoint saved by the mmengine Runner (tools/train.py), or add '
                                  'meta=dict(dataset_meta=dict(classes=..., palette=...)) to it')
        model.dataset_meta = dataset_meta
    return LoadedModel(model=model.eval(), network=model.backbone, title=title, scope=scope,
                       dataset_meta=dict(getattr(model, 'dataset_meta', None) or {}))
