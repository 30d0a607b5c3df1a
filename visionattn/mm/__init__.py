"""visionattn's OpenMMLab integration: importing it readies mmdet, mmseg and mmpretrain.

Importing this package (directly, through ``custom_imports=dict(imports=['visionattn.mm'])`` in a
config, or through a ``type='visionattn.X'`` lookup) imports :mod:`visionattn`, which arms the
torchvision-backed stand-ins for mmcv's compiled ops (:mod:`visionattn.mmcv_compat`), and registers
the project's backbones, plug-in modules, datasets, transforms, metrics and runner in the
``visionattn`` scope (:mod:`visionattn.registry`).
"""
from . import backbones, classifiers, hooks, runtime  # noqa: F401  (registration)
from . import plugins  # noqa: F401  (registration)
from . import datasets, metrics, transforms, validation, visualization  # noqa: F401  (registration: data)
