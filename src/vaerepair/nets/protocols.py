"""What a network declares to be used in a fully convolutional model: the protocols the models read.

A model built from a :class:`FullyConvolutionalEncoder` and a
:class:`FullyConvolutional` decoder takes images of any size, and repairs them
tile by tile exactly (:func:`vaerepair.tiling.repair_tiled`): tiles overlap by
the sum of the two receptive radii and start on multiples of the encoder's
``multiple``. The library's :class:`~vaerepair.nets.UNetEncoder` and
:class:`~vaerepair.nets.ConvHead` follow them; so can a user's own networks.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["FullyConvolutional", "FullyConvolutionalEncoder"]


@runtime_checkable
class FullyConvolutional(Protocol):
    """A network of images (or codes) of any size ``(B, C, H, W)``.

    Attributes:
        receptive_radius: how far, in pixels, an output pixel can see into the
            input (an upper bound: every 3x3 convolution at scale ``s`` adds ``s``).
    """

    receptive_radius: int


@runtime_checkable
class FullyConvolutionalEncoder(FullyConvolutional, Protocol):
    """A fully convolutional encoder: images ``(B, C, H, W)`` of any size -> feature maps ``(B, F, H, W)``.

    Attributes:
        image_shape: ``(C, None, None)``: the channels, and any size.
        out_channels: ``F``, the feature maps' channels.
        multiple: the factor its input sides are padded to (``2 ** (levels - 1)`` for a U-Net).
    """

    image_shape: tuple[int, None, None]
    out_channels: int
    multiple: int
