"""timm model families of visionattn: importing this package registers their entry points in timm."""
from . import attention_cnn  # noqa: F401
from . import biformer  # noqa: F401  (BiFormer entry points, official-checkpoint conversion)
from . import halonet  # noqa: F401  (HaloNet H0-H7 entry points)
from . import nat  # noqa: F401
