"""Functional attention operators; the backend behind each call is chosen by :mod:`.dispatch`."""
from .dispatch import BACKENDS, resolve_backend, use_backend

__all__ = ['BACKENDS', 'resolve_backend', 'use_backend']
