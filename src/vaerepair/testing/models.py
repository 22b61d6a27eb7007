"""Small models for checks: exchangeable draws (exact comparisons across batch orders and sizes) and a
linear-Gaussian model with an exact log p(x)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from vaerepair.distributions import DiagonalGaussian, Gaussian, GaussianPosterior, StandardNormal
from vaerepair.flows import PlanarFlowDistribution
from vaerepair.models import LatentVariableModel, ModelSpec, build

__all__ = ["ExchangeableModel", "LinearGaussianModel", "small_model", "linear_gaussian_model", "ARCHS", "POSTERIORS",
           "LIKELIHOODS"]

ARCHS = ("mlp", "conv")
POSTERIORS = ("gaussian", "flow")
LIKELIHOODS = ("bernoulli", "gaussian")


def _image_keys(x: Tensor) -> list[int]:
    """One integer per image from its exact bytes: equal images get equal keys, whatever their place."""
    rows = x.detach().cpu().contiguous().flatten(1)
    return [int.from_bytes(hashlib.blake2b(r.numpy().tobytes(), digest_size=8).digest(), "little") for r in rows]


def _keyed_noise(shape: Sequence[int], generator: torch.Generator | None = None, *, keys: list[int], salt: int,
                 like: Tensor) -> Tensor:
    """N(0, I) draws ``(..., B, D)`` where image b's draws depend only on (salt, its key)."""
    *lead, b, d = shape
    if b != len(keys):
        raise ValueError(f"expected noise for {len(keys)} images, asked for shape {tuple(shape)}")
    rows = []
    for key in keys:
        g = torch.Generator().manual_seed((salt * 1_000_003 + key) % (2**63 - 1))
        rows.append(torch.randn((*lead, d), generator=g, dtype=torch.float64))
    return torch.stack(rows, dim=-2).to(device=like.device, dtype=like.dtype)


class ExchangeableModel(LatentVariableModel):
    """A :class:`~vaerepair.models.LatentVariableModel` whose posterior draws are tied to the images.

    Each image's noise depends only on its pixel values and on one number drawn
    from the global RNG per :meth:`encode` call: under a fixed seed, permuting
    the batch permutes the draws, repeating an image repeats its draw, and
    changing one image changes only its own draw. So an objective whose images
    are independent gives *exactly* the same per-image terms whatever the
    batch order or size, which lets the checks compare without Monte-Carlo
    tolerance. Works for Gaussian and planar-flow posteriors.
    """

    def encode(self, x: Tensor, condition: Tensor | None = None) -> Any:
        q = super().encode(x, condition)
        base = q.base if isinstance(q, PlanarFlowDistribution) else q
        if isinstance(base, DiagonalGaussian):
            salt = int(torch.randint(2**31 - 1, ()))
            base.standard_noise = partial(_keyed_noise, keys=_image_keys(x), salt=salt, like=base.loc)  # type: ignore[method-assign]
        return q

    @classmethod
    def from_model(cls, model: LatentVariableModel) -> ExchangeableModel:
        """The same parts (shared, not copied) with exchangeable draws."""
        return cls(model.encoder, model.posterior, model.decoder, model.likelihood, model.prior,  # type: ignore[arg-type]
                   model.condition, spec=model.spec)


def small_model(
    arch: str = "mlp",
    posterior: str = "gaussian",
    likelihood: str = "bernoulli",
    image_shape: tuple[int, int, int] = (1, 8, 8),
    latent_dim: int = 3,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> ExchangeableModel:
    """A tiny built-in VAE for checks (milliseconds per call), with exchangeable draws.

    Args:
        arch: ``"mlp"`` (one hidden layer of 16) or ``"conv"`` (widths 4, 8; sides divisible by 4).
        posterior: ``"gaussian"`` or ``"flow"`` (two amortised planar layers).
        likelihood: ``"bernoulli"`` or ``"gaussian"`` (learned scale, sigmoid link).
        image_shape: ``(C, H, W)``.
        latent_dim: ``D``.
        dtype: the parameters' dtype.
        device: where the parameters live.
        seed: initialisation seed.
    """
    if arch not in ARCHS or posterior not in POSTERIORS or likelihood not in LIKELIHOODS:
        raise ValueError(f"arch, posterior, likelihood must be in {ARCHS}, {POSTERIORS}, {LIKELIHOODS}; "
                         f"got {arch!r}, {posterior!r}, {likelihood!r}")
    options: dict[str, Any] = {"link": "sigmoid", "learn_sigma": True, "sigma": 0.3} if likelihood == "gaussian" else {}
    spec = ModelSpec(kind="vae", image_shape=image_shape, latent_dim=latent_dim, arch=arch,
                     hidden=(16,) if arch == "mlp" else (4, 8), features=16, likelihood=likelihood,
                     norm="group" if arch == "conv" else None, activation="tanh",
                     n_flows=2 if posterior == "flow" else 0, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(spec)
    return ExchangeableModel.from_model(model).to(device=device, dtype=dtype)


class _Linear(nn.Module):
    """x -> features (encoder) or z -> images (decoder), one linear map."""

    def __init__(self, image_shape: tuple[int, int, int], width: int, encoder: bool) -> None:
        super().__init__()
        self.image_shape = image_shape
        self.encoder = encoder
        n = math.prod(image_shape)
        if encoder:
            self.out_features = width
            self.net = nn.Linear(n, width)
        else:
            self.latent_dim = width
            self.net = nn.Linear(width, n)

    def forward(self, v: Tensor) -> Tensor:
        return self.net(v.flatten(1)) if self.encoder else self.net(v).view(-1, *self.image_shape)


class LinearGaussianModel(ExchangeableModel):
    r"""z ~ N(0, I), x | z ~ N(W z + b, s^2 I), with an amortised Gaussian posterior: log p(x) is exact.

    :math:`p(x) = N(b, W W^\top + s^2 I)` (:meth:`log_marginal`).
    """

    def log_marginal(self, x: Tensor) -> Tensor:
        """Exact :math:`\\log p(x)` ``(B,)`` of images ``(B, C, H, W)``."""
        decoder: Any = self.decoder
        likelihood: Any = self.likelihood
        weight, bias, sigma = decoder.net.weight, decoder.net.bias, likelihood.sigma
        cov = weight @ weight.T + sigma**2 * torch.eye(len(bias), dtype=weight.dtype, device=weight.device)
        return torch.distributions.MultivariateNormal(bias, cov).log_prob(x.flatten(1))


def linear_gaussian_model(
    image_shape: tuple[int, int, int] = (1, 2, 3), latent_dim: int = 2, sigma: float = 0.5,
    exact_posterior: bool = False, dtype: torch.dtype = torch.float64, seed: int = 0,
) -> LinearGaussianModel:
    r"""A :class:`LinearGaussianModel` with random weights (float64 by default).

    With ``exact_posterior=True`` the decoder's ``W`` has orthogonal columns, so the
    true posterior :math:`N(\Sigma W^\top (x - b)/s^2, \Sigma)`, :math:`\Sigma = (I + W^\top W/s^2)^{-1}`,
    is a diagonal Gaussian, and the encoder is set to it: the ELBO then equals
    :math:`\log p(x)` for every draw.
    """
    n = math.prod(image_shape)
    width = max(8, n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LinearGaussianModel(
            _Linear(image_shape, width, encoder=True), GaussianPosterior(width, latent_dim),
            _Linear(image_shape, latent_dim, encoder=False), Gaussian(sigma), prior=StandardNormal(latent_dim),
        ).to(dtype)
        if exact_posterior:
            if latent_dim > n:
                raise ValueError(f"exact_posterior needs latent_dim <= C*H*W = {n}, got {latent_dim}")
            q, _ = torch.linalg.qr(torch.randn(n, latent_dim, dtype=dtype))
            weight = q * torch.linspace(1.5, 0.5, latent_dim, dtype=dtype)  # orthogonal columns
            bias = 0.1 * torch.randn(n, dtype=dtype)
            post_var = 1.0 / (1.0 + weight.square().sum(0) / sigma**2)  # diagonal of Sigma
            posterior: Any = model.posterior
            decoder: Any = model.decoder
            encoder: Any = model.encoder
            head, enc = posterior.head, encoder.net
            with torch.no_grad():
                decoder.net.weight.copy_(weight)
                decoder.net.bias.copy_(bias)
                enc.weight.zero_()
                enc.weight[:n].copy_(torch.eye(n, dtype=dtype))
                enc.bias.zero_()
                enc.bias[:n].copy_(-bias)  # features = (x - b, 0...)
                head.weight.zero_()
                head.weight[:latent_dim, :n].copy_(post_var[:, None] * weight.T / sigma**2)
                head.bias.zero_()
                scale = post_var.sqrt() - posterior.min_scale
                head.bias[latent_dim:].copy_(scale.expm1().log())  # softplus^-1
    return model
