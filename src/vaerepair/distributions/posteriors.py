"""Posteriors q(z | x): heads that turn encoder features into a distribution over latents.

A posterior head is an ``nn.Module`` called on features ``(B, F)``; it returns a
distribution object with ``rsample``, ``mean`` and, where tractable,
``log_prob`` and ``score`` (the gradient of the log-density in ``z``).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PointMass", "PointMassPosterior"]


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

    def rsample(self, n_samples: int | None = None) -> Tensor:
        """``loc`` as ``(B, D)``, or repeated as ``(S, B, D)`` when ``n_samples=S``."""
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


class PointMassPosterior(nn.Module):
    """Deterministic bottleneck ``z = W h + b``: the plain/denoising autoencoder.

    Args:
        in_features: the encoder's feature size ``F``.
        latent_dim: ``D``.

    Example:
        >>> q = PointMassPosterior(400, 20)(torch.randn(3, 400))
        >>> q.rsample().shape, q.rsample(5).shape
        (torch.Size([3, 20]), torch.Size([5, 3, 20]))
    """

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        if in_features < 1 or latent_dim < 1:
            raise ValueError(
                f"in_features and latent_dim must be >= 1, got in_features={in_features}, latent_dim={latent_dim}"
            )
        self.in_features = int(in_features)
        self.latent_dim = int(latent_dim)
        self.head = nn.Linear(self.in_features, self.latent_dim)

    def forward(self, features: Tensor) -> PointMass:
        """The point mass at ``W h + b`` for features ``(B, F)``."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"expected encoder features of shape (B, {self.in_features}), got {tuple(features.shape)}; "
                "make the posterior's in_features equal the encoder's out_features"
            )
        return PointMass(self.head(features))
