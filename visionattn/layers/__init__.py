"""Attention modules (nn.Module) built on :mod:`visionattn.ops`, shared by the model families."""
from .neighborhood_attention import NeighborhoodAttention2D

__all__ = ['NeighborhoodAttention2D']
