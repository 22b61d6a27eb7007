"""One latent-variable model class: encoder -> posterior head -> latent -> decoder -> likelihood.

The plain/denoising autoencoder is the point-mass-posterior configuration;
variational models are configurations with stochastic posteriors and a prior.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from vaerepair._checks import check_images, shape_str

__all__ = ["LatentVariableModel", "LatentModel", "PosteriorLike", "ImageDistribution"]


class PosteriorLike(Protocol):
    """What objectives use from q(z | x)."""

    @property
    def mean(self) -> Tensor: ...

    def rsample(self, n_samples: int | None = None) -> Tensor: ...


class ImageDistribution(Protocol):
    """What objectives use from p(x | z)."""

    @property
    def mean(self) -> Tensor: ...

    def log_prob(self, x: Tensor) -> Tensor: ...


class LatentModel(Protocol):
    """What objectives and the Trainer use from a model (any ``nn.Module`` with these methods)."""

    def encode(self, x: Tensor, condition: Tensor | None = None) -> Any: ...

    def decode(self, z: Tensor, condition: Tensor | None = None) -> Any: ...

    def reconstruct(self, x: Tensor, condition: Tensor | None = None) -> Tensor: ...


class LatentVariableModel(nn.Module):
    """Encoder, posterior head, decoder and likelihood composed into one model.

    Args:
        encoder: images ``(B, C, H, W)`` -> features ``(B, F)``; must expose
            ``image_shape`` ``(C, H, W)``.
        posterior: features ``(B, F)`` -> a posterior distribution over ``(B, D)``.
        decoder: latents ``(B, D)`` -> likelihood parameters ``(B, C * P, H, W)``.
        likelihood: decoder outputs -> an image distribution.
        prior: the prior p(z), or ``None`` for a plain autoencoder.
        spec: plain-value description used to rebuild the model from a
            checkpoint (set by :func:`vaerepair.models.build`).

    Example:
        >>> from vaerepair import nets, distributions as dist
        >>> model = LatentVariableModel(nets.MLPEncoder(), dist.PointMassPosterior(400, 20),
        ...                             nets.MLPDecoder(20), dist.Bernoulli())
        >>> model.reconstruct(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        encoder: nn.Module,
        posterior: nn.Module,
        decoder: nn.Module,
        likelihood: nn.Module,
        prior: nn.Module | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        image_shape = getattr(encoder, "image_shape", None)
        if image_shape is None or len(image_shape) != 3:
            raise ValueError(
                "the encoder must expose image_shape = (C, H, W) (the built-in nets do); "
                f"got {type(encoder).__name__} without it"
            )
        enc_out = getattr(encoder, "out_features", None)
        post_in = getattr(posterior, "in_features", None)
        if enc_out is not None and post_in is not None and enc_out != post_in:
            raise ValueError(
                f"the encoder gives {enc_out} features but the posterior expects in_features={post_in}; "
                f"build the posterior with in_features={enc_out}"
            )
        post_d = getattr(posterior, "latent_dim", None)
        dec_d = getattr(decoder, "latent_dim", None)
        if post_d is not None and dec_d is not None and post_d != dec_d:
            raise ValueError(
                f"the posterior has latent_dim={post_d} but the decoder takes latent_dim={dec_d}; make them equal"
            )
        self.image_shape: tuple[int, int, int] = tuple(int(s) for s in image_shape)  # type: ignore[assignment]
        self.latent_dim: int | None = post_d
        self.encoder = encoder
        self.posterior = posterior
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior
        self.spec = dict(spec) if spec is not None else None

    def check_input(self, x: Tensor, name: str = "x") -> Tensor:
        """Raise a clear error unless ``x`` is ``(B, C, H, W)`` matching the model."""
        c, h, w = self.image_shape
        return check_images(x, name, channels=c, size=(h, w))

    def encode(self, x: Tensor, condition: Tensor | None = None) -> Any:
        """The posterior q(z | x) for images ``(B, C, H, W)``."""
        self._no_condition(condition)
        return self.posterior(self.encoder(x))

    def decode(self, z: Tensor, condition: Tensor | None = None) -> Any:
        """The likelihood p(x | z) for latents ``(B, D)`` or ``(S, B, D)``."""
        self._no_condition(condition)
        if z.dim() == 2:
            return self.likelihood(self.decoder(z))
        lead = z.shape[:-1]
        params = self.decoder(z.reshape(-1, z.shape[-1]))
        return self.likelihood(params.reshape(*lead, *params.shape[1:]))

    def reconstruct(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """Repair images: decode the posterior mean and return the likelihood mean ``(B, C, H, W)``."""
        self.check_input(x)
        return self.decode(self.encode(x, condition).mean, condition).mean

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` latents from the prior and decode them: images ``(n, C, H, W)`` (the likelihood means)."""
        if self.prior is None:
            raise ValueError("sampling needs a prior; this model has none (a plain autoencoder): build a VAE")
        ref = next(self.parameters())
        prior: Any = self.prior
        z = prior.sample(n, device=ref.device, dtype=ref.dtype, generator=generator)
        return self.decode(z).mean

    @torch.no_grad()
    def repair(self, x: Tensor, batch_size: int = 512) -> Tensor:
        """Repaired images ``(B, C, H, W)``: :meth:`reconstruct` in eval mode, in batches, without gradients.

        ``x`` may live on any device: batches go to the model's device and the
        result comes back on ``x``'s. The model's train/eval mode is restored.
        """
        self.check_input(x)
        if len(x) == 0:
            return x.clone()
        device = next((p.device for p in self.parameters()), x.device)
        was_training = self.training
        self.eval()
        try:
            parts = [self.reconstruct(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
            return torch.cat(parts).to(x.device)
        finally:
            self.train(was_training)

    def _no_condition(self, condition: Tensor | None) -> None:
        if condition is not None:
            raise ValueError(
                "this model is not conditional, so condition must be None; "
                f"got a tensor of shape {shape_str(condition.shape)}"
            )
