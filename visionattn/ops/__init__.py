"""Functional attention operators; the backend behind each call is chosen by :mod:`.dispatch`."""
from .dispatch import BACKENDS, resolve_backend, use_backend
from .routing import bi_level_routing_attention, bra_attention, bra_attention_reference, bra_routing

__all__ = ['BACKENDS', 'resolve_backend', 'use_backend',
           'bi_level_routing_attention', 'bra_attention', 'bra_attention_reference', 'bra_routing']
