"""The diagonal Gaussian posterior q(z | x) = N(mu(x), diag sigma(x)^2) and the standard normal prior."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DiagonalGaussian", "GaussianPosterior", "SpatialGaussianPosterior", "StandardNormal",
           "SpatialStandardNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def standard_normal(shape: Sequence[int] | torch.Size, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """N(0, I) draws of ``shape``, from ``generator`` when one is given.

    Without a generator ``torch.randn`` is called without the argument: under ``torch.compile``
    ``randn(..., generator=None)`` cannot take a batch size that varies (a smaller last batch).
    """
    if generator is None:
        return torch.randn(tuple(shape), device=device, dtype=dtype)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


class DiagonalGaussian:
    r"""A batch of diagonal Gaussians :math:`N(\mu_b, \mathrm{diag}\,\sigma_b^2)`, ``loc`` and ``scale`` ``(B, D)``.

    Sampling is reparameterised, :math:`z = \mu + \sigma \odot \varepsilon`, so
    gradients flow to ``loc`` and ``scale``. With ``event_dims=3`` the event is a
    spatial code ``(L, H, W)`` (``loc`` ``(B, L, H, W)``): densities and KLs sum
    over those three dimensions.
    """

    def __init__(self, loc: Tensor, scale: Tensor, event_dims: int = 1) -> None:
        if loc.shape != scale.shape:
            raise ValueError(f"loc and scale must have the same shape, got {tuple(loc.shape)} and {tuple(scale.shape)}")
        if event_dims not in (1, 3):
            raise ValueError(f"event_dims must be 1 (a latent vector) or 3 (a spatial code), got {event_dims!r}")
        self.loc = loc
        self.scale = scale
        self.event_dims = event_dims
        self._event = tuple(range(-event_dims, 0))

    @property
    def mean(self) -> Tensor:
        """``mu`` ``(B, D)``."""
        return self.loc

    def rsample(self, n_samples: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised samples: ``(B, D)``, or ``(S, B, D)`` when ``n_samples=S``."""
        shape = self.loc.shape if n_samples is None else (n_samples, *self.loc.shape)
        return self.loc + self.scale * self.standard_noise(shape, generator)

    def standard_noise(self, shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None) -> Tensor:
        """The N(0, I) draws behind :meth:`rsample`, ``shape`` ``(..., B, D)`` (a hook: subclasses may fix them)."""
        return standard_normal(shape, generator, self.loc.device, self.loc.dtype)

    def log_prob(self, z: Tensor) -> Tensor:
        r"""Log-density summed over ``D``, ``(..., B)``.

        :math:`\log q(z) = -\sum_d [\tfrac12 ((z_d - \mu_d)/\sigma_d)^2 + \log\sigma_d + \tfrac12\log 2\pi]`.
        """
        u = (z - self.loc) / self.scale
        return -(0.5 * u.square() + self.scale.log() + _HALF_LOG_2PI).sum(dim=self._event)

    def score(self, z: Tensor) -> Tensor:
        r"""The score :math:`\nabla_z \log q(z) = -(z - \mu)/\sigma^2`, shaped like ``z``."""
        return -(z - self.loc) / self.scale.square()

    def kl_standard_normal(self) -> Tensor:
        r"""Closed-form KL to the standard normal, ``(B,)``.

        :math:`KL(q \,\|\, N(0, I)) = \tfrac12 \sum_d (\mu_d^2 + \sigma_d^2 - 1 - \log \sigma_d^2)`.
        """
        squares = torch.addcmul(self.loc.square(), self.scale, self.scale)  # mu^2 + sigma^2
        n = math.prod(self.loc.shape[self.loc.dim() - self.event_dims:])
        return squares.sub(self.scale.log(), alpha=2.0).sum(dim=self._event).sub(n).mul(0.5)

    def kl(self, other: DiagonalGaussian) -> Tensor:
        r"""Closed-form KL to another diagonal Gaussian ``other`` (e.g. a conditional prior), ``(..., B)``.

        .. math:: KL(q \,\|\, p) = \sum_d \Big[\log\frac{s_d}{\sigma_d}
            + \frac{\sigma_d^2 + (\mu_d - m_d)^2}{2 s_d^2} - \frac12\Big],

        with :math:`q = N(\mu, \sigma^2)` (this one) and :math:`p = N(m, s^2)`; written with
        :math:`r = \sigma / s` as :math:`\tfrac12 \sum_d [r^2 - 1 - 2 \log r + ((\mu - m)/s)^2]`, which has
        no cancellation between large terms. Shapes broadcast.
        """
        if not isinstance(other, DiagonalGaussian):
            raise TypeError(f"kl needs another DiagonalGaussian, got {type(other).__name__}")
        ratio = self.scale / other.scale
        gap = (self.loc - other.loc) / other.scale
        return 0.5 * (ratio.square() - 1.0 - 2.0 * ratio.log() + gap.square()).sum(dim=self._event)


class GaussianPosterior(nn.Module):
    r"""Head giving a diagonal Gaussian posterior from encoder features.

    A linear layer gives ``2 D`` numbers per image: the mean and a raw scale,
    mapped to :math:`\sigma = \mathrm{softplus}(r) + \sigma_{min}`. Softplus
    rather than :math:`\exp(\tfrac12 \log\sigma^2)`: it grows linearly, so a large
    raw value never overflows, its gradient never explodes, and the floor keeps
    :math:`\log\sigma` and :math:`1/\sigma^2` (the score) finite.

    Args:
        in_features: the encoder's feature size ``F``.
        latent_dim: ``D``.
        min_scale: the floor :math:`\sigma_{min} > 0`.
    """

    def __init__(self, in_features: int, latent_dim: int, min_scale: float = 1e-4) -> None:
        super().__init__()
        if in_features < 1 or latent_dim < 1:
            raise ValueError(
                f"in_features and latent_dim must be >= 1, got in_features={in_features}, latent_dim={latent_dim}"
            )
        if not min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale!r}")
        self.in_features = int(in_features)
        self.latent_dim = int(latent_dim)
        self.min_scale = float(min_scale)
        self.head = nn.Linear(self.in_features, 2 * self.latent_dim)

    def forward(self, features: Tensor) -> DiagonalGaussian:
        """The posterior for features ``(B, F)``."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"expected encoder features of shape (B, {self.in_features}), got {tuple(features.shape)}; "
                "make the posterior's in_features equal the encoder's out_features"
            )
        loc, raw = self.head(features).chunk(2, dim=-1)
        return DiagonalGaussian(loc, F.softplus(raw) + self.min_scale)


class SpatialGaussianPosterior(nn.Module):
    r"""Head giving a diagonal Gaussian over a spatial code: feature maps ``(B, F, H, W)`` -> ``(B, L, H, W)``.

    A 1x1 convolution gives ``2 L`` channels, the mean and a raw scale per
    position, mapped to :math:`\sigma = \mathrm{softplus}(r) + \sigma_{min}` as in
    :class:`GaussianPosterior`. The latent has three event dimensions
    (``event_dims = 3``): samples ``(S, B, L, H, W)``, densities and the KL
    summed over ``(L, H, W)``. The posterior of a fully convolutional VAE (any
    image size), such as the noisy-only denoiser of :func:`vaerepair.models.noise_model_vae`.

    Args:
        in_channels: the encoder's feature channels ``F``.
        latent_channels: ``L``.
        min_scale: the floor :math:`\sigma_{min} > 0`.

    Example:
        >>> q = SpatialGaussianPosterior(32, 4)(torch.randn(2, 32, 5, 7))
        >>> q.rsample(3).shape, q.kl_standard_normal().shape
        (torch.Size([3, 2, 4, 5, 7]), torch.Size([2]))
    """

    event_dims = 3

    def __init__(self, in_channels: int, latent_channels: int, min_scale: float = 1e-4) -> None:
        super().__init__()
        if in_channels < 1 or latent_channels < 1:
            raise ValueError(f"in_channels and latent_channels must be >= 1, got {in_channels}, {latent_channels}")
        if not min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale!r}")
        self.in_channels, self.latent_channels = int(in_channels), int(latent_channels)
        self.min_scale = float(min_scale)
        self.head = nn.Conv2d(self.in_channels, 2 * self.latent_channels, 1)

    def forward(self, features: Tensor) -> DiagonalGaussian:
        """The posterior for feature maps ``(B, F, H, W)``."""
        if features.dim() != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"expected encoder feature maps of shape (B, {self.in_channels}, H, W), got {tuple(features.shape)}; "
                "make the posterior's in_channels equal the encoder's out_channels"
            )
        loc, raw = self.head(features).chunk(2, dim=1)
        return DiagonalGaussian(loc, F.softplus(raw) + self.min_scale, event_dims=3)


class StandardNormal(nn.Module):
    r"""The prior :math:`p(z) = N(0, I_D)`.

    Args:
        latent_dim: ``D``.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim!r}")
        self.latent_dim = int(latent_dim)

    def log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log p(z) = -\tfrac12 \|z\|^2 - \tfrac D2 \log 2\pi`, summed over the last dimension."""
        return -0.5 * z.square().sum(dim=-1) - self.latent_dim * _HALF_LOG_2PI

    def score(self, z: Tensor) -> Tensor:
        r""":math:`\nabla_z \log p(z) = -z`."""
        return -z

    def sample(
        self, n: int, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``n`` draws ``(n, D)``."""
        return standard_normal((n, self.latent_dim), generator, device, dtype)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


class SpatialStandardNormal(StandardNormal):
    r"""The prior :math:`p(z) = N(0, I)` over spatial codes ``(L, H, W)`` of any ``H x W``.

    Args:
        latent_channels: ``L``.
    """

    event_dims = 3

    def __init__(self, latent_channels: int) -> None:
        super().__init__(latent_channels)
        self.latent_channels = self.latent_dim

    def log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log p(z) = -\tfrac12 \|z\|^2 - \tfrac{LHW}2 \log 2\pi`, summed over ``(L, H, W)``: ``(..., B)``."""
        return -0.5 * z.square().sum(dim=(-3, -2, -1)) - math.prod(z.shape[-3:]) * _HALF_LOG_2PI

    def sample(
        self, n: int, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None, size: tuple[int, int] | None = None,
    ) -> Tensor:
        """``n`` codes ``(n, L, H, W)`` for images of ``size`` ``(H, W)`` (the code has the image's size)."""
        if size is None:
            raise ValueError("a spatial prior samples codes of a given size: pass size=(H, W) "
                             "(model.sample(n, size=(H, W)))")
        return standard_normal((n, self.latent_dim, *size), generator, device, dtype)

    def extra_repr(self) -> str:
        return f"latent_channels={self.latent_dim}"
