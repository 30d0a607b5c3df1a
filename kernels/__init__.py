"""Triton kernels, installed as ``visionattn.kernels``; only :mod:`visionattn.ops` calls them."""
