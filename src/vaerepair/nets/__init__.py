"""Encoders (images ``(B, C, H, W)`` -> features ``(B, F)``, or feature maps for the fully
convolutional U-Net) and decoders (latents ``(B, D)`` or codes ``(B, L, H, W)`` -> likelihood
parameters shaped like the images)."""

from vaerepair.nets.activations import ACTIVATIONS, activation_class
from vaerepair.nets.conv import ConvDecoder, ConvEncoder
from vaerepair.nets.mlp import MLPDecoder, MLPEncoder
from vaerepair.nets.protocols import FullyConvolutional, FullyConvolutionalEncoder
from vaerepair.nets.unet import ConvHead, UNetEncoder

__all__ = ["MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "UNetEncoder", "ConvHead", "ACTIVATIONS",
           "activation_class", "FullyConvolutional", "FullyConvolutionalEncoder"]
