"""visionattn's OpenMMLab integration: importing it readies mmdet, mmseg and mmpretrain.

Importing this package (directly, through ``custom_imports=dict(imports=['visionattn.mm'])`` in a
config, or through a ``type='visionattn.X'`` lookup) imports :mod:`visionattn`, which arms the
torchvision-backed stand-ins for mmcv's compiled ops (:mod:`visionattn.mmcv_compat`), and registers
the project's backbones, plug-in modules, datasets, transforms, metrics and runner in the
``visionattn`` scope (:mod:`visionattn.registry`).
"""
import os

# albumentations (imported by the transforms) asks PyPI for a newer version when it is imported; a program that
# evaluates or infers must not touch the network (offline machines), so the check is off unless asked for.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

from . import backbones, classifiers, hooks, runtime  # noqa: E402,F401  (registration)
from . import plugins  # noqa: E402,F401  (registration)
from . import datasets, metrics, transforms, validation, visualization  # noqa: E402,F401  (registration: data)
