"""timm model families of visionattn: importing this package registers their entry points in timm."""
from . import nat  # noqa: F401
