"""timm model families of visionattn: importing this package registers their entry points in timm."""
from . import attention_cnn  # noqa: F401
from . import biformer  # noqa: F401  (BiFormer entry points, official-checkpoint conversion)
