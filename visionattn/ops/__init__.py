"""Functional attention operators; the backend behind each call is chosen by :mod:`.dispatch`."""
from .dispatch import BACKENDS, resolve_backend, use_backend
from .neighborhood import na2d

__all__ = ['BACKENDS', 'na2d', 'resolve_backend', 'use_backend']
