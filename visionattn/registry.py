"""visionattn's scope in the OpenMMLab registry tree.

Each registry here is a child of mmengine's root registry of the same kind, with scope
``visionattn``. Configs of any OpenMMLab package (mmdet, mmseg, mmpretrain) reach what is registered
here as ``type='visionattn.<Name>'``: mmengine imports this module for the ``visionattn`` scope and
the lazy ``locations`` import :mod:`visionattn.mm`, which also installs the mmcv op stand-ins.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

_LOCATIONS = ['visionattn.mm']

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='visionattn', locations=_LOCATIONS)
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='visionattn',
                          locations=_LOCATIONS)
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='visionattn', locations=_LOCATIONS)
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='visionattn', locations=_LOCATIONS)
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='visionattn', locations=_LOCATIONS)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='visionattn', locations=_LOCATIONS)
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='visionattn', locations=_LOCATIONS)
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, scope='visionattn', locations=_LOCATIONS)
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope='visionattn', locations=_LOCATIONS)
