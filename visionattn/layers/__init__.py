"""Attention modules (nn.Module) built on :mod:`visionattn.ops`, shared by the model families."""
from .cnn_attention import CBAM, ELA, TimmELA, TripletAttention, create_cnn_attention, get_cnn_attention  # noqa: F401
from .neighborhood_attention import NeighborhoodAttention2D  # noqa: F401
