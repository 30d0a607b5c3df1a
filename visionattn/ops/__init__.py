"""Functional attention operators; the backend behind each call is chosen by :mod:`.dispatch`."""
from .dispatch import BACKENDS, select_backend, use_backend
from .na import na1d, na2d, na3d
from .routing import bi_level_routing_attention, bra_attention, bra_attention_reference, bra_routing

__all__ = ['BACKENDS', 'na1d', 'na2d', 'na3d', 'select_backend', 'use_backend',
           'bi_level_routing_attention', 'bra_attention', 'bra_attention_reference', 'bra_routing']
