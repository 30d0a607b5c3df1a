"""Attention modules (nn.Module) built on :mod:`visionattn.ops`, shared by the model families."""
from .cnn_attention import CBAM, ELA, TimmELA, TripletAttention, create_cnn_attention, get_cnn_attention
from .neighborhood_attention import NeighborhoodAttention1D, NeighborhoodAttention2D, NeighborhoodAttention3D
from .routing_attention import BiLevelRoutingAttention

__all__ = ['BiLevelRoutingAttention', 'CBAM', 'ELA', 'NeighborhoodAttention1D', 'NeighborhoodAttention2D',
           'NeighborhoodAttention3D', 'TimmELA', 'TripletAttention',
           'create_cnn_attention', 'get_cnn_attention']
