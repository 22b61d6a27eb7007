"""Fully connected encoder and decoder (the reports' 784-400-20 shape by default)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from vaerepair._checks import check_images
from vaerepair.nets.activations import activation_class

__all__ = ["MLPEncoder", "MLPDecoder"]


def _check_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {tuple(image_shape)!r}")
    return shape  # type: ignore[return-value]


def _check_widths(widths: Sequence[int], name: str) -> tuple[int, ...]:
    out = tuple(int(w) for w in widths)
    if not out or min(out) < 1:
        raise ValueError(f"{name} must be a non-empty sequence of positive widths, got {tuple(widths)!r}")
    return out


def _mlp(sizes: Sequence[int], activation: type[nn.Module], last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flatten the image and apply ``Linear + activation`` layers.

    Maps images ``(B, C, H, W)`` to features ``(B, F)`` with ``F = hidden[-1]``.

    Args:
        image_shape: ``(C, H, W)`` of the inputs.
        hidden: widths of the hidden layers (default ``(400,)``: 784-400).
        activation: the nonlinearity: a name (``"relu"``, ``"silu"``, ``"gelu"``, ``"tanh"``) or an ``nn.Module`` class.

    Example:
        >>> MLPEncoder((1, 28, 28))(torch.rand(5, 1, 28, 28)).shape
        torch.Size([5, 400])
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (400,),
        activation: str | type[nn.Module] = "relu",
    ) -> None:
        super().__init__()
        activation = activation_class(activation)
        self.image_shape = _check_shape(image_shape)
        widths = _check_widths(hidden, "hidden")
        self.out_features = widths[-1]
        self.net = _mlp((math.prod(self.image_shape), *widths), activation, last_activation=True)

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(B, F)`` of images ``(B, C, H, W)``."""
        check_images(x, "x", channels=self.image_shape[0], size=self.image_shape[1:])  # type: ignore[arg-type]
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """Map latents ``(B, D)`` through ``Linear + activation`` layers to image-shaped parameters.

    The output ``(B, C * P, H, W)`` holds the likelihood's parameters (logits
    for Bernoulli, means for Gaussian); ``P = params_per_pixel``.

    Args:
        latent_dim: ``D``.
        image_shape: ``(C, H, W)`` of the images.
        hidden: widths of the hidden layers (default ``(400,)``: 20-400-784).
        activation: the nonlinearity: a name (``"relu"``, ``"silu"``, ``"gelu"``, ``"tanh"``) or an ``nn.Module`` class.
        params_per_pixel: likelihood parameters per pixel (1 for Bernoulli or a
            fixed-scale Gaussian).
    """

    def __init__(
        self,
        latent_dim: int = 20,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (400,),
        activation: str | type[nn.Module] = "relu",
        params_per_pixel: int = 1,
    ) -> None:
        super().__init__()
        activation = activation_class(activation)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim!r}")
        self.latent_dim = int(latent_dim)
        self.image_shape = _check_shape(image_shape)
        c, h, w = self.image_shape
        self.out_shape = (c * params_per_pixel, h, w)
        widths = _check_widths(hidden, "hidden")
        self.net = _mlp((self.latent_dim, *widths, math.prod(self.out_shape)), activation, last_activation=False)

    def forward(self, z: Tensor) -> Tensor:
        """Likelihood parameters ``(B, C * P, H, W)`` of latents ``(B, D)``."""
        out = self.net(z)
        return out.view(*out.shape[:-1], *self.out_shape)  # Tensor.view is C; unflatten has a Python wrapper
