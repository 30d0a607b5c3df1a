"""Attention modules (nn.Module) built on :mod:`visionattn.ops`, shared by the model families."""
