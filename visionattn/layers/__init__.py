"""Attention modules (nn.Module) built on :mod:`visionattn.ops`, shared by the model families."""
from .neighborhood_attention import NeighborhoodAttention2D
from .routing_attention import BiLevelRoutingAttention

__all__ = ['BiLevelRoutingAttention', 'NeighborhoodAttention2D']
