"""timm model families of visionattn: importing this package registers their entry points in timm."""
from . import attention_cnn, biformer, halonet, nat  # noqa: F401
