"""Encoders (images ``(B, C, H, W)`` -> features ``(B, F)``) and decoders
(latents ``(B, D)`` -> likelihood parameters shaped like the images)."""

from vaerepair.nets.conv import ConvDecoder, ConvEncoder
from vaerepair.nets.mlp import MLPDecoder, MLPEncoder

__all__ = ["MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder"]
