"""One latent-variable model class: encoder -> posterior head -> latent -> decoder -> likelihood.

The plain/denoising autoencoder is the point-mass-posterior configuration;
variational models are configurations with stochastic posteriors and a prior.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, cast, overload

import torch
from torch import Tensor, nn

from vaerepair._checks import check_count, check_finite_images, check_images, shape_str
from vaerepair.models.conditions import Condition

__all__ = ["LatentVariableModel", "LatentModel", "PosteriorLike", "ImageDistribution", "TILE_PIXELS_IN_FLIGHT"]

TILE_PIXELS_IN_FLIGHT = 2**19  # tiled repair: at most this many pixels of tiles go through the model at once


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


class LatentVariableModel(nn.Module):
    """Encoder, posterior head, decoder and likelihood composed into one model.

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
    ) -> None:
        super().__init__()
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

    def check_input(self, x: Tensor, name: str = "x", any_float: bool = False) -> Tensor:
        """Raise a clear error unless ``x`` is ``(B, C, H, W)`` matching the model (and its dtype, unless
        ``any_float``)."""
        c, h, w = self.image_shape
        check_images(x, name, channels=c, size=None if h is None or w is None else (h, w))
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), x.dtype)
        if x.dtype != dtype and not any_float:
            raise TypeError(f"{name} is {x.dtype} but the model's weights are {dtype}: cast the images with "
                            f"{name}.to({dtype}) (model.repair does it for you) or the model with model.to({x.dtype})")
        return x

    def encode(self, x: Tensor, condition: Tensor | None = None) -> Any:
        """The posterior q(z | x) (or q(z | x, c)) for images ``(B, C, H, W)``."""
        features = self.encoder(x)
        embedding = self._embed(condition)
        if embedding is not None:
            features = torch.cat([features, embedding], dim=1)
        return self.posterior(features)

    def decode(self, z: Tensor, condition: Tensor | None = None) -> Any:
        """The likelihood p(x | z) (or p(x | z, c)) for latents ``(B, D)`` or ``(S, B, D)``
        (spatial codes: ``(B, L, H, W)`` or ``(S, B, L, H, W)``)."""
        embedding = self._embed(condition)
        if embedding is not None:
            z = torch.cat([z, embedding.expand(*z.shape[:-1], embedding.shape[-1])], dim=-1)
        event = self.latent_event_dims
        if z.dim() == event + 1:
            return self.likelihood(self.decoder(z))
        lead = z.shape[:-event]
        params = self.decoder(z.reshape(-1, *z.shape[-event:]))
        return self.likelihood(params.reshape(*lead, *params.shape[1:]))

    def reconstruct(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """Repair images: decode the posterior mean and return the likelihood mean ``(B, C, H, W)``."""
        self.check_input(x)
        return self.decode(self.encode(x, condition).mean, condition).mean

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
        ref = next(self.parameters())
        prior: Any = self.prior
        if condition is not None and len(condition) != n:
            raise ValueError(f"condition must have n={n} rows, got {shape_str(condition.shape)}")
        extra = {"size": size} if self.latent_event_dims == 3 else {}
        z = prior.sample(n, device=ref.device, dtype=ref.dtype, generator=generator, **extra)
        return self.decode(z, condition).mean

    @overload
    def repair(self, x: Tensor, condition: Tensor | None = None, batch_size: int = 512,
               tile: int | tuple[int, int] | None = None, overlap: int | None = None, *,
               n_samples: int | None = None, return_std: Literal[False] = False,
               generator: torch.Generator | None = None) -> Tensor: ...

    @overload
    def repair(self, x: Tensor, condition: Tensor | None = None, batch_size: int = 512,
               tile: int | tuple[int, int] | None = None, overlap: int | None = None, *,
               n_samples: int | None = None, return_std: Literal[True],
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]: ...

    @overload
    def repair(self, x: list[Tensor], condition: Tensor | None = None, batch_size: int = 512,
               tile: int | tuple[int, int] | None = None, overlap: int | None = None, *,
               n_samples: int | None = None, return_std: bool = False,
               generator: torch.Generator | None = None) -> list[Any]: ...

    @torch.no_grad()
    def repair(self, x: Tensor | list[Tensor], condition: Tensor | None = None, batch_size: int = 512,
               tile: int | tuple[int, int] | None = None, overlap: int | None = None, *,
               n_samples: int | None = None, return_std: bool = False,
               generator: torch.Generator | None = None) -> Any:
        r"""Repaired images ``(B, C, H, W)``: :meth:`reconstruct` in eval mode, in batches, without gradients.

        ``x`` may live on any device and have any float dtype: batches go to the
        model's device and dtype (float16/bfloat16 images to a float32 model),
        and the result comes back on ``x``'s device and dtype. The model's
        train/eval mode is restored.
        A conditional model needs ``condition`` (one row per image).

        With ``n_samples=S`` the repair is the Monte-Carlo posterior mean of the
        signal, :math:`\hat s = \tfrac1S \sum_s E[x \mid z_s]`, :math:`z_s \sim q(z \mid x)`:
        the minimum-mean-square-error estimate of a VAE whose likelihood is the
        noise model (:func:`~vaerepair.models.noise_model_vae`); with
        ``return_std=True`` it also returns the per-pixel standard deviation of
        the decoded samples ``(B, C, H, W)`` (``S - 1`` in the denominator), an
        uncertainty map. ``n_samples=None`` takes the model's ``repair_samples``
        (0 for most models: decode the posterior mean; a noise-model VAE's
        default is its spec's). ``generator`` makes the draws reproducible.

        With ``tile`` (for a model of fixed size: its ``(H, W)``; for a fully
        convolutional one any side, e.g. 512, which bounds the memory) an image is
        repaired tile by tile, the ``overlap`` pixels shared by neighbouring tiles
        blended (:func:`vaerepair.tiling.repair_tiled`). A fully convolutional
        model's default overlap is ``2 r + 16`` for its receptive radius ``r``,
        with the ``r`` pixels next to each inner tile edge given weight 0 and
        tiles aligned to its downsampling grid, so the tiled repair equals the
        untiled one up to float rounding (tiles smaller than ``4 r + 32`` get half
        their side as overlap: blended, no longer exact); a fixed-size model's
        default is 8.
        A list of images ``(C, H_i, W_i)`` of different sizes gives the list of
        their repairs (each repaired alone, tiled when ``tile`` is given).
        """
        check_count(batch_size, "batch_size")
        samples = self._repair_samples(n_samples, return_std)
        options: dict[str, Any] = {"n_samples": samples, "return_std": return_std, "generator": generator}
        if isinstance(x, list):
            if condition is not None:
                raise ValueError("a list of images takes no condition; repair conditional models batch by batch")
            for i, im in enumerate(x):
                if not isinstance(im, Tensor) or im.dim() != 3:
                    what = f"shape {shape_str(im.shape)}" if isinstance(im, Tensor) else type(im).__name__
                    raise TypeError(f"a list of images must hold tensors (C, H, W), got {what} at index {i}; "
                                    "give a batch as one tensor (B, C, H, W)")
            out = [self.repair(im.unsqueeze(0), batch_size=batch_size, tile=tile, overlap=overlap, **options)
                   for im in x]
            return [(m[0], s[0]) for m, s in out] if return_std else [m[0] for m in out]
        if isinstance(x, Tensor):  # before tiling, so the message names the image, not a tile
            check_finite_images(x, "x", "a NaN or Inf pixel would spread through the network: fix or drop that image")
        if tile is not None:
            if condition is not None:
                raise ValueError("tiled repair takes no condition (a condition belongs to a whole image)")
            from vaerepair.tiling import repair_tiled

            radius, margin = self.receptive_radius, None
            if overlap is None and radius is not None:  # exact for tiles over 2 r + 16 + align; blended below
                smallest = min((tile, tile) if isinstance(tile, int) else tile)
                overlap = min(2 * radius + 16, smallest // 2)
                margin = min(radius, overlap // 2)
            elif overlap is None:
                overlap = 8
            th, tw = (tile, tile) if isinstance(tile, int) else tile
            in_flight = max(1, min(batch_size, TILE_PIXELS_IN_FLIGHT // (th * tw)))  # memory bound by the tiles

            def fn(t: Tensor) -> Tensor:  # mean and std tiled together, as 2 C channels
                out = self.repair(t, batch_size=in_flight, **options)
                return torch.cat(out, dim=1) if return_std else out

            c = x.shape[1]
            both = repair_tiled(fn, x, tile, overlap, margin=margin, batch_size=in_flight,
                                align=int(getattr(self.encoder, "multiple", 1)),
                                out_channels=2 * c if return_std else c)
            return (both[:, :c], both[:, c:]) if return_std else both
        self.check_input(x, any_float=True)
        if condition is not None and len(condition) != len(x):
            raise ValueError(f"condition must have one row per image ({len(x)}), got {shape_str(condition.shape)}")
        if len(x) == 0:
            return (x.clone(), x.clone()) if return_std else x.clone()
        device = next((p.device for p in self.parameters()), x.device)
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), x.dtype)  # half images: cast
        was_training = self.training
        self.eval()
        try:
            parts = [
                self._repair_batch(
                    x[i : i + batch_size].to(device, dtype),
                    condition[i : i + batch_size].to(device) if condition is not None else None,
                    samples, generator,
                )
                for i in range(0, len(x), batch_size)
            ]
        finally:
            self.train(was_training)
        mean = torch.cat([m for m, _ in parts]).to(x.device, x.dtype)
        if not return_std:
            return mean
        return mean, torch.cat([cast(Tensor, s) for _, s in parts]).to(x.device, x.dtype)

    repair_samples: int = 0  # posterior samples per repair when ``repair(n_samples=None)``: 0 decodes the mean

    @torch.no_grad()
    def sample_repairs(self, x: Tensor, n: int, condition: Tensor | None = None,
                       generator: torch.Generator | None = None) -> Tensor:
        r"""``n`` plausible repairs of each image, ``(n, B, C, H, W)``: the decoded means of ``n`` draws of
        :math:`q(z \mid x)` (diverse for a VAE; all equal for a point-mass posterior), in eval mode."""
        check_count(n, "n")
        self.check_input(x)
        was_training = self.training
        self.eval()
        try:
            return cast(Tensor, self.decode(self.encode(x, condition).rsample(int(n), generator=generator),
                                            condition).mean)
        finally:
            self.train(was_training)

    def _repair_samples(self, n_samples: int | None, return_std: bool) -> int:
        samples = self.repair_samples if n_samples is None else n_samples
        check_count(samples, "n_samples", minimum=0, unit=" (0: decode the posterior mean)")
        if return_std and samples < 2:
            raise ValueError(f"return_std=True needs n_samples >= 2 posterior samples, got {samples!r}; "
                             "pass n_samples=100, for example")
        return int(samples)

    def _repair_batch(self, x: Tensor, condition: Tensor | None, n_samples: int,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """The repair of one batch, and (with samples) the standard deviation of the decoded samples."""
        if n_samples == 0:
            return self.reconstruct(x, condition), None
        self.check_input(x)
        q = self.encode(x, condition)
        chunk = max(1, min(n_samples, TILE_PIXELS_IN_FLIGHT // max(1, x[0].numel() * len(x))))
        count, mean, m2 = 0, torch.zeros_like(x), torch.zeros_like(x)
        for start in range(0, n_samples, chunk):  # Chan et al.'s merge of per-chunk means and squared deviations
            s = min(chunk, n_samples - start)
            decoded = self.decode(q.rsample(s, generator=generator), condition).mean  # (s, B, C, H, W)
            chunk_mean = decoded.mean(dim=0)
            delta = chunk_mean - mean
            total = count + s
            mean = mean + delta * (s / total)
            m2 = m2 + (decoded - chunk_mean).square().sum(dim=0) + delta.square() * (count * s / total)
            count = total
        return mean, (m2 / max(count - 1, 1)).sqrt()

    @property
    def fully_convolutional(self) -> bool:
        """Whether the model takes images of any ``H x W`` (its ``image_shape`` is ``(C, None, None)``)."""
        return self.image_shape[1] is None

    @property
    def receptive_radius(self) -> int | None:
        """For a fully convolutional model: how far (in pixels) an output pixel can see into the input."""
        radii = [getattr(self.encoder, "receptive_radius", None), getattr(self.decoder, "receptive_radius", None)]
        return None if None in radii else sum(r for r in radii if r is not None)

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
    """The channel counts of a spatial-code model agree, and it has no (vector) condition."""
    if condition is not None:
        raise ValueError("a model with a spatial code cannot be conditional (a condition joins a latent vector)")
    enc, post_in = getattr(encoder, "out_channels", None), getattr(posterior, "in_channels", None)
    if enc is not None and post_in is not None and enc != post_in:
        raise ValueError(f"the encoder gives {enc}-channel feature maps but the posterior expects "
                         f"in_channels={post_in}; build the posterior with in_channels={enc}")
    post_l, dec_l = getattr(posterior, "latent_channels", None), getattr(decoder, "latent_channels", None)
    if post_l is not None and dec_l is not None and post_l != dec_l:
        raise ValueError(f"the posterior gives {post_l}-channel codes but the decoder takes latent_channels={dec_l}; "
                         f"build the decoder with latent_channels={post_l}")
