"""visionattn: attention-based vision backbones for timm and OpenMMLab.

``import visionattn`` registers every model of the project in timm's registry, so
``timm.create_model('biformer_small', ...)`` works afterwards. The OpenMMLab side lives in
:mod:`visionattn.mm` and is imported only when used (configs name it in ``custom_imports``); the
stand-in for mmcv's compiled ops (:mod:`visionattn.mmcv_compat`) is armed here already, so mmdet and
mmseg import on mmcv-lite in whatever order a script imports them.
"""
from . import mmcv_compat

mmcv_compat.install()  # mmdet/mmseg import on mmcv-lite, whatever the import order (no-op with compiled mmcv)

from . import models  # noqa: E402,F401  (registers the timm entry points)
from .checkpoint import load_checkpoint_file  # noqa: E402
from .convert import families, from_official  # noqa: E402
from .ops.dispatch import use_backend

__version__ = '0.1.0'

__all__ = ['families', 'from_official', 'load_checkpoint_file', 'use_backend', '__version__']
