"""Posteriors q(z | x): heads that turn encoder features into a distribution over latents.

A posterior head is an ``nn.Module`` called on features ``(B, F)``; it returns a
distribution object with ``rsample``, ``mean`` and, where tractable,
``log_prob`` and ``score`` (the gradient of the log-density in ``z``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PointMass", "PointMassPosterior", "SpatialPointMassPosterior", "spatial_head"]


class PointMass:
    """The degenerate distribution at ``loc`` ``(B, D)``: the plain autoencoder's bottleneck.

    ``rsample`` returns ``loc`` itself (differentiable), so objectives written
    for stochastic posteriors run unchanged; it has no density, so ``log_prob``
    and ``score`` raise.
    """

    def __init__(self, loc: Tensor) -> None:
        self.loc = loc

    @property
    def mean(self) -> Tensor:
        """The latent code ``(B, D)``."""
        return self.loc

    def rsample(self, n_samples: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``loc`` as ``(B, D)``, or repeated as ``(S, B, D)`` when ``n_samples=S`` (``generator``: unused)."""
        if n_samples is None:
            return self.loc
        return self.loc.expand(n_samples, *self.loc.shape)

    def log_prob(self, z: Tensor) -> Tensor:
        raise NotImplementedError(
            "a point mass has no density; use a stochastic posterior (e.g. a Gaussian) "
            "with objectives that need log q(z|x)"
        )

    def score(self, z: Tensor) -> Tensor:
        raise NotImplementedError("a point mass has no score; use a stochastic posterior")


def spatial_head(feature_shape: tuple[int, int, int], latent_channels: int) -> nn.Module:
    """A 1x1-convolution head for spatial latents: features ``(B, C*h*w)`` -> latents ``(B, L*h*w)``.

    Each position of the ``(C, h, w)`` feature map gets its own ``L``-channel
    code (a fully convolutional autoencoder); pass it as ``head=`` to a posterior.
    """
    c, h, w = feature_shape
    return nn.Sequential(nn.Unflatten(1, (c, h, w)), nn.Conv2d(c, latent_channels, 1), nn.Flatten())


class PointMassPosterior(nn.Module):
    """Deterministic bottleneck ``z = head(h)``: the plain/denoising autoencoder.

    Args:
        in_features: the encoder's feature size ``F``.
        latent_dim: ``D``.
        head: the map from features ``(B, F)`` to codes ``(B, D)``; default
            ``nn.Linear(F, D)`` (see :func:`spatial_head` for spatial latents).

    Example:
        >>> q = PointMassPosterior(400, 20)(torch.randn(3, 400))
        >>> q.rsample().shape, q.rsample(5).shape
        (torch.Size([3, 20]), torch.Size([5, 3, 20]))
    """

    def __init__(self, in_features: int, latent_dim: int, head: nn.Module | None = None) -> None:
        super().__init__()
        if in_features < 1 or latent_dim < 1:
            raise ValueError(
                f"in_features and latent_dim must be >= 1, got in_features={in_features}, latent_dim={latent_dim}"
            )
        self.in_features = int(in_features)
        self.latent_dim = int(latent_dim)
        self.head = head if head is not None else nn.Linear(self.in_features, self.latent_dim)

    def forward(self, features: Tensor) -> PointMass:
        """The point mass at ``W h + b`` for features ``(B, F)``."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"expected encoder features of shape (B, {self.in_features}), got {tuple(features.shape)}; "
                "make the posterior's in_features equal the encoder's out_features"
            )
        z = self.head(features)
        if z.shape[1:] != (self.latent_dim,):
            raise ValueError(
                f"the posterior head must give codes of shape (B, {self.latent_dim}), got {tuple(z.shape)}"
            )
        return PointMass(z)


class SpatialPointMassPosterior(nn.Module):
    """Deterministic spatial code ``z = conv1x1(h)``: feature maps ``(B, F, H, W)`` -> codes ``(B, L, H, W)``.

    The posterior of a fully convolutional autoencoder (any image size): every
    position gets its own ``L``-channel code. Its latents have three event
    dimensions (``event_dims = 3``), so ``S`` samples are ``(S, B, L, H, W)``.

    Args:
        in_channels: the encoder's feature channels ``F``.
        latent_channels: ``L``.

    Example:
        >>> SpatialPointMassPosterior(32, 8)(torch.randn(2, 32, 5, 7)).rsample(3).shape
        torch.Size([3, 2, 8, 5, 7])
    """

    event_dims = 3

    def __init__(self, in_channels: int, latent_channels: int) -> None:
        super().__init__()
        if in_channels < 1 or latent_channels < 1:
            raise ValueError(f"in_channels and latent_channels must be >= 1, got {in_channels}, {latent_channels}")
        self.in_channels, self.latent_channels = int(in_channels), int(latent_channels)
        self.head = nn.Conv2d(self.in_channels, self.latent_channels, 1)

    def forward(self, features: Tensor) -> PointMass:
        """The point mass at the 1x1 convolution of feature maps ``(B, F, H, W)``."""
        if features.dim() != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"expected encoder feature maps of shape (B, {self.in_channels}, H, W), got {tuple(features.shape)}; "
                "make the posterior's in_channels equal the encoder's out_channels"
            )
        return PointMass(self.head(features))
