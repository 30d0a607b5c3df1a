"""mmpretrain's ``TimmClassifier`` without the re-initialisation that erases pretrained weights.

mmpretrain's ``TimmClassifier`` builds a whole timm model (keeping its own head and final norm, which a
backbone + ``LinearClsHead`` would drop), but the Runner's ``init_weights()`` recurses into it and calls
timm's own ``init_weights`` (ResNet, ViT, ... have one), silently replacing pretrained weights with a
fresh initialisation. Here the timm model is marked initialised, and ``pretrained`` also accepts a local
file, loaded through the model's checkpoint filter as timm's ``pretrained_cfg_overlay=dict(file=...)``.
"""
from __future__ import annotations

from typing import Any

from mmpretrain.models import TimmClassifier as _MMPretrainTimmClassifier

import visionattn  # noqa: F401  (registers the project's models in timm)
from visionattn.registry import MODELS


@MODELS.register_module()
class TimmClassifier(_MMPretrainTimmClassifier):
    """A timm model as an mmpretrain classifier; ``pretrained``: False, True or a checkpoint path."""

    def __init__(self, model_name: str, pretrained: bool | str = False, **kwargs: Any) -> None:
        if isinstance(pretrained, str):
            kwargs['pretrained_cfg_overlay'] = dict(file=pretrained)
        super().__init__(model_name, pretrained=bool(pretrained), **kwargs)
        self.model.is_init = True  # weights come from timm; the Runner must not re-initialise them
