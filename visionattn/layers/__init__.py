"""Attention modules (nn.Module) built on :mod:`visionattn.ops`, shared by the model families."""
from .cnn_attention import CBAM, ELA, TimmELA, TripletAttention, create_cnn_attention, get_cnn_attention
from .neighborhood_attention import NeighborhoodAttention2D

__all__ = ['CBAM', 'ELA', 'NeighborhoodAttention2D', 'TimmELA', 'TripletAttention', 'create_cnn_attention',
           'get_cnn_attention']
