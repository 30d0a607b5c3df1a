"""Functional attention operators; the backend behind each call is chosen by :mod:`.dispatch`."""
from .dispatch import BACKENDS, select_backend, use_backend
from .neighborhood import na2d
from .routing import bi_level_routing_attention, bra_attention, bra_attention_reference, bra_routing

__all__ = ['BACKENDS', 'na2d', 'select_backend', 'use_backend',
           'bi_level_routing_attention', 'bra_attention', 'bra_attention_reference', 'bra_routing']
