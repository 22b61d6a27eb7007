r"""Ladder models for checks: a small ladder VAE with exchangeable draws, and a two-level linear-Gaussian
path whose :math:`\log p(x)` is exact (an oracle for ELBO and IWAE on latent paths)."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from vaerepair.distributions import DiagonalGaussian, GaussianImage, StandardNormal
from vaerepair.models import LadderSpec, LadderVAE
from vaerepair.models.ladder import _BottomUp
from vaerepair.models.likelihood_spec import LikelihoodSpec
from vaerepair.models.path import LatentLevel, LatentPath, PathModel
from vaerepair.testing.models import _image_keys

__all__ = ["ExchangeableLadder", "small_ladder", "LinearLadder", "linear_ladder"]


class ExchangeableLadder(LadderVAE):
    """A :class:`~vaerepair.models.LadderVAE` whose top-down draws are tied to the images.

    Each image's noise at every level depends only on its pixels, the sample
    index, the level and one number drawn from the global RNG per
    :meth:`bottom_up` call, so the checks of :func:`~vaerepair.testing.check_objective`
    compare batch orders and sizes exactly (see :class:`~vaerepair.testing.ExchangeableModel`).
    """

    def bottom_up(self, x: Tensor, condition: Tensor | None = None) -> _BottomUp:
        features = super().bottom_up(x, condition)
        self._keys, self._salt = _image_keys(x), int(torch.randint(2**31 - 1, ()))
        return features

    def standard_noise(self, shape: tuple[int, ...], generator: torch.Generator | None, features: _BottomUp | None,
                       level: int) -> Tensor:
        if features is None:
            return super().standard_noise(shape, generator, features, level)
        keys, rows = self._keys, []
        for r in range(shape[0]):
            s, b = divmod(r, len(keys))
            g = torch.Generator().manual_seed((self._salt * 1_000_003 + keys[b] + 7919 * s + 104729 * level)
                                              % (2**63 - 1))
            rows.append(torch.randn(shape[1:], generator=g, dtype=torch.float64))
        ref = cast(Tensor, self.stem[0].weight)
        return torch.stack(rows).to(ref.device, ref.dtype)


def small_ladder(likelihood: str = "gaussian", channels: int = 1, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", seed: int = 0, flows: int = 0) -> ExchangeableLadder:
    """A tiny two-level ladder VAE (widths 4, 4; 2-channel codes) with exchangeable draws, for checks
    (``flows``: planar layers on every level's posterior)."""
    options: dict[str, Any] = {"sigma": 0.3, "link": "sigmoid"} if likelihood == "gaussian" else {}
    spec = LadderSpec(channels=channels, widths=(4, 4), latent_channels=(2, 2),
                      likelihood=LikelihoodSpec(likelihood, **options), activation="tanh", repair_samples=0,
                      flows=flows)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ExchangeableLadder(channels, spec.widths, spec.latent_channels, spec.likelihood.build(),
                                   activation=nn.Tanh, flows=flows, spec=spec.to_dict())
    return model.to(device=device, dtype=dtype)


class LinearLadder(PathModel):
    r"""Two levels of vector latents, linear and Gaussian: :math:`\log p(x)` is exact.

    .. math::
        z_2 \sim N(0, I_{d_2}),\quad z_1 \mid z_2 \sim N(A z_2, s_1^2 I),\quad
        x \mid z_1 \sim N(W z_1 + b, s_0^2 I),\qquad
        p(x) = N\big(b,\ W (A A^\top + s_1^2 I) W^\top + s_0^2 I\big),

    with the posteriors :math:`q(z_2 \mid x) = N(C (x - b), \mathrm{diag}\, e^{2 c})` and
    :math:`q(z_1 \mid z_2, x) = N(F z_2 + G (x - b), \mathrm{diag}\, e^{2 g})`. Images are
    ``(B, 1, 1, n)``. Build it with :func:`linear_ladder`.
    """

    def __init__(self, n: int, d1: int, d2: int, s0: float, s1: float) -> None:
        super().__init__()
        self.image_shape = (1, 1, n)
        self.condition = None
        self.s0, self.s1 = s0, s1
        self.A, self.W, self.b = nn.Parameter(torch.randn(d1, d2)), nn.Parameter(torch.randn(n, d1)), \
            nn.Parameter(0.1 * torch.randn(n))
        self.C, self.c = nn.Parameter(0.3 * torch.randn(d2, n)), nn.Parameter(torch.full((d2,), -0.5))
        self.F, self.G = nn.Parameter(torch.randn(d1, d2)), nn.Parameter(0.3 * torch.randn(d1, n))
        self.g = nn.Parameter(torch.full((d1,), -0.5))
        self.prior = StandardNormal(d2)

    @property
    def n_levels(self) -> int:
        return 2

    def bottom_up(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        return x.flatten(1) - self.b  # (B, n)

    def top_down(self, features: Tensor, n_samples: int | None = None, *, latents: Any = None, mean: bool = False,
                 generator: torch.Generator | None = None) -> LatentPath:
        lead = (len(features),) if n_samples is None else (n_samples, len(features))
        r = features.expand(*lead, -1)
        given = latents if latents is not None else (None, None)
        q2 = DiagonalGaussian(r @ self.C.T, self.c.exp().expand(*lead, -1))
        z2 = given[0] if given[0] is not None else (q2.loc if mean else q2.rsample(generator=generator))
        p1 = DiagonalGaussian(z2 @ self.A.T, torch.full_like(z2 @ self.A.T, self.s1))
        q1 = DiagonalGaussian(z2 @ self.F.T + r @ self.G.T, self.g.exp().expand(*lead, -1))
        z1 = given[1] if given[1] is not None else (q1.loc if mean else q1.rsample(generator=generator))
        x_mean = (z1 @ self.W.T + self.b).unflatten(-1, (1, 1, -1))
        return LatentPath((LatentLevel(z2, q2, self.prior), LatentLevel(z1, q1, p1)), GaussianImage(x_mean, self.s0))

    def log_marginal(self, x: Tensor) -> Tensor:
        """Exact :math:`\\log p(x)` ``(B,)`` of images ``(B, 1, 1, n)``."""
        return torch.distributions.MultivariateNormal(self.b, self._covariance()).log_prob(x.flatten(1))

    def _covariance(self) -> Tensor:
        eye1 = torch.eye(self.A.shape[0], dtype=self.A.dtype)
        eye0 = torch.eye(self.W.shape[0], dtype=self.W.dtype)
        return self.W @ (self.A @ self.A.T + self.s1**2 * eye1) @ self.W.T + self.s0**2 * eye0


def linear_ladder(n: int = 3, d1: int = 2, d2: int = 2, s0: float = 0.5, s1: float = 0.7, exact_posterior: bool = False,
                  seed: int = 0) -> LinearLadder:
    r"""A :class:`LinearLadder` in float64 with random weights.

    With ``exact_posterior=True`` (one-dimensional latents, ``d1 = d2 = 1``) the
    posteriors are set to the true ones, which are then Gaussian and diagonal:
    :math:`p(z_1 \mid z_2, x)` has precision :math:`\lambda_1 = s_1^{-2} + \|w\|^2 s_0^{-2}` and mean
    :math:`(a z_2 s_1^{-2} + w^\top (x - b) s_0^{-2}) / \lambda_1`; :math:`p(z_2 \mid x)` has precision
    :math:`\lambda_2 = 1 + a^2 w^\top \Sigma^{-1} w` and mean :math:`a w^\top \Sigma^{-1} (x - b) / \lambda_2`
    with :math:`\Sigma = s_1^2 w w^\top + s_0^2 I`. Every importance weight is then exactly :math:`p(x)`.
    """
    if exact_posterior and (d1, d2) != (1, 1):
        raise ValueError(f"exact_posterior needs d1 = d2 = 1 (a diagonal true posterior), got {d1}, {d2}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LinearLadder(n, d1, d2, s0, s1).double()
    if exact_posterior:
        with torch.no_grad():
            a, w = model.A[0, 0], model.W[:, 0]
            lam1 = 1 / s1**2 + w.square().sum() / s0**2
            model.F.fill_(a / (s1**2 * lam1))
            model.G.copy_((w / (s0**2 * lam1))[None])
            model.g.fill_(float(-0.5 * lam1.log()))
            sigma = s1**2 * torch.outer(w, w) + s0**2 * torch.eye(n, dtype=torch.float64)
            solved = torch.linalg.solve(sigma, w)
            lam2 = 1 + a**2 * (w @ solved)
            model.C.copy_((a * solved / lam2)[None])
            model.c.fill_(float(-0.5 * lam2.log()))
    return model

