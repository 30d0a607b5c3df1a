"""timm model families of visionattn: importing this package registers their entry points in timm."""
from . import biformer, cnn_attention, halonet, nat  # noqa: F401
