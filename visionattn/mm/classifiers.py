"""mmpretrain's ``TimmClassifier`` with pretrained weights loaded the OpenMMLab way and checked.

mmpretrain's ``TimmClassifier`` builds a whole timm model (keeping its own head and final norm, which a
backbone + ``LinearClsHead`` would drop), but it fetches pretrained weights when the model is built, so
testing or inference on a machine without network fails before the trained checkpoint is even read, and the
Runner's ``init_weights()`` then recurses into the timm model and calls timm's own ``init_weights`` (ResNet,
ViT, ... have one), silently replacing pretrained weights with a fresh initialisation. Here the model is
built without weights, the timm model is marked initialised, and the ``pretrained`` weights (``True``: the
published ones; a path: a local file through the model's checkpoint filter, checked strictly unless
``pretrained_strict=False``) load in :meth:`TimmClassifier.init_weights` (OpenMMLab's ``init_cfg`` convention).
"""
from __future__ import annotations

from typing import Any

from mmpretrain.models import TimmClassifier as _MMPretrainTimmClassifier

import visionattn  # noqa: F401  (registers the project's models in timm)
from visionattn.registry import MODELS
from visionattn.weights import create_model_with_weights


@MODELS.register_module()
class TimmClassifier(_MMPretrainTimmClassifier):
    """A timm model as an mmpretrain classifier; ``pretrained``: False, True or a checkpoint path."""

    def __init__(self, model_name: str, pretrained: bool | str = False, pretrained_strict: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(model_name, pretrained=False, **kwargs)
        self.model_name = model_name
        self.pretrained = pretrained
        self.pretrained_strict = pretrained_strict
        self._timm_kwargs = {k: v for k, v in kwargs.items()
                             if k not in ('loss', 'train_cfg', 'with_cp', 'data_preprocessor', 'init_cfg')}
        self.model.is_init = True  # timm initialised it; the Runner must not re-initialise it

    def init_weights(self) -> None:
        """The usual init_cfg handling, then the ``pretrained`` weights (only here, never at construction)."""
        super().init_weights()
        if self.pretrained:
            loaded = create_model_with_weights(self.model_name, self.pretrained, strict=self.pretrained_strict,
                                               non_strict_option='model.pretrained_strict=False', **self._timm_kwargs)
            self.model.load_state_dict(loaded.state_dict())
