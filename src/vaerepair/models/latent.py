"""One latent-variable model class: encoder -> posterior head -> latent -> decoder -> likelihood.

The plain/denoising autoencoder is the point-mass-posterior configuration;
variational models are configurations with stochastic posteriors and a prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from vaerepair._checks import check_count, shape_str
from vaerepair.models.conditions import Condition
from vaerepair.models.path import TILE_PIXELS_IN_FLIGHT, LatentLevel, LatentPath, PathModel, _single_draw
from vaerepair.nets.protocols import FullyConvolutional, FullyConvolutionalEncoder

__all__ = ["LatentVariableModel", "LatentModel", "PosteriorLike", "ImageDistribution", "TILE_PIXELS_IN_FLIGHT"]


class PosteriorLike(Protocol):
    """What objectives use from q(z | x)."""

    @property
    def mean(self) -> Tensor: ...

    def rsample(self, n_samples: int | None = None, generator: torch.Generator | None = None) -> Tensor: ...


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


class LatentVariableModel(PathModel):
    """Encoder, posterior head, decoder and likelihood composed into one model: a latent path of length one.

    :meth:`encode` gives q(z | x) and :meth:`decode` p(x | z); as a
    :class:`~vaerepair.models.path.PathModel` its :meth:`bottom_up` is the
    encoder's posterior and its :meth:`top_down` draws one z from it, so every
    objective and ``repair`` treat it like a ladder of one level.

    Args:
        encoder: images ``(B, C, H, W)`` -> features ``(B, F)``; must expose
            ``image_shape`` ``(C, H, W)``.
        posterior: features ``(B, F)`` -> a posterior distribution over ``(B, D)``.
        decoder: latents ``(B, D)`` -> likelihood parameters ``(B, C * P, H, W)``.
        likelihood: decoder outputs -> an image distribution.
        prior: the prior p(z), or ``None`` for a plain autoencoder.
        condition: a :class:`~vaerepair.models.conditions.Condition` for a
            conditional model (``None``: unconditional). Its embedding ``(B, E)``
            is concatenated to the encoder features before the posterior head
            (which then takes ``F + E`` features) and to the latent before the
            decoder (which then takes ``D + E`` inputs).
        spec: plain-value description used to rebuild the model from a
            checkpoint (set by :func:`vaerepair.models.build`).
        residual: a residual (noise-predicting) model, as DnCNN: the decoder's
            output :math:`f` is subtracted from the input, the likelihood's mean is
            :math:`x - f(x)` (a decoder that outputs zero returns its input
            exactly). The likelihood must take one parameter per pixel through the
            identity link (a Gaussian or Poisson-Gaussian noise model).

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
        condition: Condition | None = None,
        spec: dict[str, Any] | None = None,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(residual, bool):
            raise TypeError(f"residual must be True or False, got {residual!r}")
        if residual and (getattr(likelihood, "params_per_pixel", 1) != 1
                         or getattr(likelihood, "link", "identity") != "identity"):
            raise ValueError(f"a residual model subtracts the decoder's output from its input, which needs a "
                             f"likelihood of one parameter per pixel through the identity link (a Gaussian noise "
                             f"model), got {likelihood!r}")
        self.residual = residual
        image_shape = getattr(encoder, "image_shape", None)
        if image_shape is None or len(image_shape) != 3:
            raise ValueError(
                "the encoder must expose image_shape = (C, H, W) (the built-in nets do); "
                f"got {type(encoder).__name__} without it"
            )
        extra = 0
        if condition is not None:
            if not isinstance(condition, Condition):
                raise TypeError(
                    "condition must be a vaerepair.models.Condition (LabelCondition, ImageCondition or a subclass), "
                    f"got {type(condition).__name__}"
                )
            if condition.joins_input:  # E more input channels: the images have the encoder's channels less E
                c_in = int(image_shape[0]) - condition.out_features
                if c_in < 1:
                    raise ValueError(f"a condition that joins the input adds {condition.out_features} channel(s) to "
                                     f"the images: the encoder must take more than that, got {image_shape[0]}; build "
                                     f"it for C + {condition.out_features} input channels")
                image_shape = (c_in, *image_shape[1:])
            else:
                extra = condition.out_features
        cond = f" + {extra} condition features" if extra else ""
        enc_out = getattr(encoder, "out_features", None)
        post_in = getattr(posterior, "in_features", None)
        if enc_out is not None and post_in is not None and enc_out + extra != post_in:
            raise ValueError(
                f"the encoder gives {enc_out} features{cond} but the posterior expects in_features={post_in}; "
                f"build the posterior with in_features={enc_out + extra}"
            )
        post_d = getattr(posterior, "latent_dim", None)
        dec_d = getattr(decoder, "latent_dim", None)
        if post_d is not None and dec_d is not None and post_d + extra != dec_d:
            raise ValueError(
                f"the posterior has latent_dim={post_d}{cond} but the decoder takes latent_dim={dec_d}; "
                f"build the decoder with latent_dim={post_d + extra}"
            )
        self.latent_event_dims = int(getattr(posterior, "event_dims", 1))
        if self.latent_event_dims != 1:
            _check_spatial(encoder, posterior, decoder, condition)
        # (C, H, W); H and W are None for a fully convolutional model, which takes any size
        self.image_shape: tuple[int, int, int] = tuple(  # type: ignore[assignment]
            None if s is None else int(s) for s in image_shape)
        self.latent_dim: int | None = post_d
        self.encoder = encoder
        self.posterior = posterior
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior
        self.condition = condition
        self.spec = dict(spec) if spec is not None else None

    def encode(self, x: Tensor, condition: Tensor | None = None) -> Any:
        """The posterior q(z | x) (or q(z | x, c)) for images ``(B, C, H, W)``."""
        embedding = self._embed(condition)
        if embedding is not None and self.condition is not None and self.condition.joins_input:
            if len(embedding) != len(x):
                raise ValueError(f"condition must have one row per image ({len(x)}), got {len(embedding)}")
            maps = embedding.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            return self.posterior(self.encoder(torch.cat([x, maps], dim=1)))
        features = self.encoder(x)
        if embedding is not None:
            features = torch.cat([features, embedding], dim=1)
        return self.posterior(features)

    def decode(self, z: Tensor, condition: Tensor | None = None, residual_of: Tensor | None = None) -> Any:
        """The likelihood p(x | z) (or p(x | z, c)) for latents ``(B, D)`` or ``(S, B, D)``
        (spatial codes: ``(B, L, H, W)`` or ``(S, B, L, H, W)``); a residual model needs the images the code
        is of, ``residual_of`` ``(B, C, H, W)``: its likelihood's mean is ``residual_of - decoder(z)``.
        A condition that joins the input (a noise level) entered the code already: the decoder takes none."""
        joined = self.condition is not None and self.condition.joins_input
        embedding = None if joined else self._embed(condition)
        if embedding is not None:
            z = torch.cat([z, embedding.expand(*z.shape[:-1], embedding.shape[-1])], dim=-1)
        event = self.latent_event_dims
        if z.dim() == event + 1:
            params = self.decoder(z)
        else:
            lead = z.shape[:-event]
            params = self.decoder(z.reshape(-1, *z.shape[-event:]))
            params = params.reshape(*lead, *params.shape[1:])
        if self.residual:
            if residual_of is None:
                raise ValueError("a residual model's output is its input minus the decoder's: pass residual_of=x "
                                 "(the images the code is of), or repair with model.repair(x)")
            params = residual_of - params
        return self.likelihood(params)

    @torch.no_grad()
    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Draw ``n`` latents from the prior and decode them: images ``(n, C, H, W)`` (the likelihood means).

        A conditional model needs ``condition`` with ``n`` rows (one incomplete
        image repeated ``n`` times gives ``n`` possible completions). A fully
        convolutional model needs the images' ``size`` ``(H, W)``.
        """
        if self.prior is None:
            raise ValueError("sampling needs a prior; this model has none (a plain autoencoder): build a VAE")
        n = check_count(n, "n")
        ref = next(self.parameters())
        prior: Any = self.prior
        if condition is not None and len(condition) != n:
            raise ValueError(f"condition must have n={n} rows, got {shape_str(condition.shape)}")
        extra = {"size": size} if self.latent_event_dims == 3 else {}
        z = prior.sample(n, device=ref.device, dtype=ref.dtype, generator=generator, **extra)
        return self.decode(z, condition).mean

    def bottom_up(self, x: Tensor, condition: Tensor | None = None) -> tuple[Any, Tensor | None, Tensor | None]:
        """The posterior q(z | x), with the condition (which the decoder needs too) and, for a residual model,
        the images (which its output subtracts the decoder's from)."""
        return self.encode(x, condition), condition, x if self.residual else None

    def top_down(self, features: tuple[Any, Tensor | None, Tensor | None], n_samples: int | None = None, *,
                 latents: Sequence[Tensor | None] | None = None, mean: bool = False,
                 generator: torch.Generator | None = None) -> LatentPath:
        """A path of length one: z drawn from q (or given, or its mean), scored under the prior, decoded."""
        q, condition, x = features
        z = _single_draw(q, n_samples, latents, mean, generator)
        return LatentPath((LatentLevel(z, q, self.prior, self.latent_event_dims),), self.decode(z, condition, x))

    @property
    def receptive_radius(self) -> int | None:
        """For a fully convolutional model (a :class:`~vaerepair.nets.FullyConvolutionalEncoder` and a
        :class:`~vaerepair.nets.FullyConvolutional` decoder): how far (in pixels) an output pixel can see into
        the input; ``None`` otherwise."""
        if isinstance(self.encoder, FullyConvolutionalEncoder) and isinstance(self.decoder, FullyConvolutional):
            return int(self.encoder.receptive_radius) + int(self.decoder.receptive_radius)
        return None

    @property
    def multiple(self) -> int:
        """The encoder's downsampling factor (tiles are aligned to it); 1 for an encoder that declares none."""
        return int(self.encoder.multiple) if isinstance(self.encoder, FullyConvolutionalEncoder) else 1

    def _embed(self, condition: Tensor | None) -> Tensor | None:
        """The condition's embedding ``(B, E)``; checks that one is given exactly when the model is conditional."""
        if self.condition is None:
            if condition is not None:
                raise ValueError(
                    "this model is not conditional, so condition must be None; "
                    f"got a tensor of shape {shape_str(condition.shape)}"
                )
            return None
        if condition is None:
            raise ValueError(
                f"this model is conditional ({type(self.condition).__name__}): pass condition=..., "
                "built with model.condition.prepare(corrupted, mask, labels)"
            )
        embedding: Tensor = self.condition(condition)
        return embedding


def _check_spatial(encoder: nn.Module, posterior: nn.Module, decoder: nn.Module, condition: Condition | None) -> None:
    """The channel counts of a spatial-code model agree, and it has no condition that joins a latent vector."""
    if condition is not None and not condition.joins_input:
        raise ValueError("a model with a spatial code cannot be conditional (a condition joins a latent vector), "
                         "unless the condition joins the input (a NoiseLevel)")
    enc = encoder.out_channels if isinstance(encoder, FullyConvolutionalEncoder) else None
    post_in = getattr(posterior, "in_channels", None)
    if enc is not None and post_in is not None and enc != post_in:
        raise ValueError(f"the encoder gives {enc}-channel feature maps but the posterior expects "
                         f"in_channels={post_in}; build the posterior with in_channels={enc}")
    post_l, dec_l = getattr(posterior, "latent_channels", None), getattr(decoder, "latent_channels", None)
    if post_l is not None and dec_l is not None and post_l != dec_l:
        raise ValueError(f"the posterior gives {post_l}-channel codes but the decoder takes latent_channels={dec_l}; "
                         f"build the decoder with latent_channels={post_l}")
