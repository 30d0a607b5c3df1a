"""Attention modules (nn.Module) built on :mod:`visionattn.ops`, shared by the model families."""
from .routing_attention import BiLevelRoutingAttention

__all__ = ['BiLevelRoutingAttention']
