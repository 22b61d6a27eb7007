"""Likelihoods p(x | z): turn decoder outputs into distributions over images.

A likelihood is an ``nn.Module`` called on decoder outputs ``(B, C * P, H, W)``
(``P = params_per_pixel``); it returns an image distribution with
``log_prob(x)`` summed over pixels ``(B,)`` (nats) and ``mean`` ``(B, C, H, W)``.
Leading sample dimensions ``(S, B, ...)`` are carried through.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaerepair._checks import check_in_unit_interval, check_positive
from vaerepair.distributions._validation import validation_enabled

__all__ = [
    "negative_log_likelihood",
    "Bernoulli",
    "BernoulliImage",
    "ContinuousBernoulli",
    "ContinuousBernoulliImage",
    "Gaussian",
    "GaussianImage",
    "PoissonGaussianLikelihood",
    "PoissonGaussianImage",
]


def negative_log_likelihood(likelihood: object, x: Tensor) -> Tensor:
    r""":math:`-\log p(x \mid z)` per image ``(..., B)``: the likelihood's own ``neg_log_prob`` where it has one
    (the built-in Bernoulli and Gaussian: one negation fewer in the forward and backward pass of a training
    step), else ``-log_prob(x)`` (users' own likelihoods)."""
    own = getattr(likelihood, "neg_log_prob", None)
    if callable(own):
        result: Tensor = own(x)
        return result
    log_prob = getattr(likelihood, "log_prob", None)
    if not callable(log_prob):
        raise TypeError(f"likelihood must be an image distribution with log_prob(x), as a likelihood module gives for "
                        f"decoder outputs (Bernoulli()(logits), model.decode(z)), got {type(likelihood).__name__}")
    return -log_prob(x)  # type: ignore[no-any-return]


def _broadcast(x: Tensor, like: Tensor) -> Tensor:
    """``x`` expanded to the shape of ``like`` (a leading sample dimension); as it is when the shapes agree."""
    return x if x.shape == like.shape else x.expand_as(like)


def _check_target(x: Tensor, like: Tensor, who: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}.log_prob: the target images must be a tensor (..., C, H, W), got {type(x).__name__}")
    if x.shape[-3:] != like.shape[-3:]:
        raise ValueError(
            f"{who}.log_prob: target images have shape {tuple(x.shape)} but the decoder produced "
            f"{tuple(like.shape)}; the last three dimensions (C, H, W) must match"
        )


class _LogitScores:
    r"""Closed-form derivatives shared by the logit likelihoods (exponential families with natural parameter
    :math:`l`): :math:`\log p(x|z) = x l - A(l)` (plus, for the continuous Bernoulli, a term free of x), so
    the x-score is :math:`l`, the x-Laplacian 0, and :math:`\partial \log p / \partial l = x - E[x]`."""

    logits: Tensor
    _name: str

    @property
    def mean(self) -> Tensor:
        raise NotImplementedError

    def x_score(self, x: Tensor) -> Tensor:
        r""":math:`\nabla_x \log p(x|z) = l` (a Bernoulli: of its continuous extension), shaped like the logits."""
        _check_target(x, self.logits, self._name)
        return self.logits

    def x_laplacian(self, x: Tensor) -> Tensor:
        r""":math:`\Delta_x \log p(x|z) = 0` (linear in x): ``(..., B)``."""
        _check_target(x, self.logits, self._name)
        return self.logits.new_zeros(self.logits.shape[:-3])

    def param_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The logits and :math:`\partial \log p(x|z) / \partial l = x - E[x \mid l]`."""
        _check_target(x, self.logits, self._name)
        return self.logits, x - self.mean


class BernoulliImage(_LogitScores):
    r"""Independent Bernoulli pixels with logits ``l``: the binary cross-entropy likelihood.

    :math:`\log p(x|z) = \sum_i x_i l_i - \log(1 + e^{l_i})`, computed stably from
    the logits. For grey-level targets in ``[0, 1]`` this is the (unnormalised)
    BCE that the reports train with.

    ``discrete = True``: the pixels are binary, so there is no density in x (the
    Fisher objective refuses it unless asked for its continuous relaxation).
    """

    discrete = True
    _name = "Bernoulli"

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    @property
    def mean(self) -> Tensor:
        """Pixel probabilities ``sigmoid(l)``, shaped like the logits."""
        return torch.sigmoid(self.logits)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-likelihood of targets ``x`` in ``[0, 1]``, summed over ``(C, H, W)``: ``(..., B)``."""
        return -self.neg_log_prob(x)

    def neg_log_prob(self, x: Tensor) -> Tensor:
        """``-log_prob(x)``, the binary cross-entropy summed over ``(C, H, W)``, without a negation: ``(..., B)``."""
        _check_target(x, self.logits, "Bernoulli")
        if validation_enabled():
            check_in_unit_interval(x, "targets of a Bernoulli likelihood")
        return F.binary_cross_entropy_with_logits(self.logits, _broadcast(x, self.logits), reduction="none").sum(
            dim=(-3, -2, -1))



class Bernoulli(nn.Module):
    """Bernoulli (binary cross-entropy) likelihood over pixels; decoder outputs are logits."""

    params_per_pixel = 1

    def forward(self, params: Tensor) -> BernoulliImage:
        """The image distribution for logits ``(..., B, C, H, W)``."""
        return BernoulliImage(params)


_MIN_SIGMA = 1e-4  # floor of a learned Gaussian scale
_SERIES = 1.0  # |logit| below which the series forms are used (the closed forms cancel near 0)


def _bernoulli_numbers(n: int) -> list[Fraction]:
    """B_0 .. B_n exactly (Akiyama-Tanigawa; B_1 = +1/2, which the series below do not use)."""
    out, a = [], [Fraction(0)] * (n + 1)
    for m in range(n + 1):
        a[m] = Fraction(1, m + 1)
        for j in range(m, 0, -1):
            a[j - 1] = j * (a[j - 1] - a[j])
        out.append(a[0])
    return out


# c_k = B_2k / (2k)!: l / (e^l - 1) + l / 2 = sum_k c_k l^2k. Ten terms reach float64 rounding for |l| < 1
# (|c_k| ~ 2 / (2 pi)^2k, so the first term left out is below 1e-16 there).
_SERIES_COEFFS = tuple(float(b / math.factorial(2 * k)) for k, b in enumerate(_bernoulli_numbers(22)[2::2], 1))[:11]


def _even_series(l2: Tensor, offset: int) -> Tensor:
    r""":math:`\sum_k c_k\, l^{2k - offset}` by Horner's rule in ``l2`` :math:`= l^2` (``offset`` 0 or 2)."""
    acc = torch.zeros_like(l2)
    for c in reversed(_SERIES_COEFFS):
        acc = acc * l2 + c
    return acc * l2 if offset == 0 else acc


def _log_normaliser(logits: Tensor) -> Tensor:
    r""":math:`\log C(\lambda)` of the continuous Bernoulli from logits :math:`l`: :math:`C = l / \tanh(l/2)`.

    Near 0, :math:`C = 2 \sum_k c_k l^{2k}` with :math:`c_k = B_{2k}/(2k)!` (:math:`c_0 = 1`), so
    :math:`\log C = \log 2 + \operatorname{log1p}(l^2/12 - l^4/720 + l^6/30240 - \dots)`, summed to float64
    rounding for :math:`|l| < 1`; the closed form (accurate there) elsewhere.
    """
    a = logits.abs()
    small = a < _SERIES
    safe = torch.where(small, torch.ones_like(a), a)
    # log|l| - log tanh(|l|/2), with log tanh(a/2) = log1p(-2 sigmoid(-a)) accurate for large a
    closed = safe.log() - torch.log1p(-2.0 * torch.sigmoid(-safe))
    series = math.log(2.0) + torch.log1p(_even_series(torch.where(small, logits, 0).square(), 0))
    return torch.where(small, series, closed)


def _continuous_bernoulli_mean(logits: Tensor) -> Tensor:
    r""":math:`E[x] = \sigma(l)/\tanh(l/2) - 1/l`; near 0, :math:`\tfrac12 + \sum_{k \ge 1} c_k l^{2k-1}`
    (:math:`\tfrac12 + l/12 - l^3/720 + l^5/30240 - \dots`) summed to float64 rounding for :math:`|l| < 1`."""
    small = logits.abs() < _SERIES
    safe = torch.where(small, torch.ones_like(logits), logits)
    closed = torch.sigmoid(safe) / torch.tanh(safe / 2) - 1.0 / safe
    near = torch.where(small, logits, 0)
    series = 0.5 + near * _even_series(near.square(), 2)
    return torch.where(small, series, closed)


class ContinuousBernoulliImage(_LogitScores):
    r"""Independent continuous Bernoulli pixels (Loaiza-Ganem & Cunningham, 2019) with logits ``l``.

    :math:`\log p(x|z) = \sum_i x_i l_i - \log(1 + e^{l_i}) + \log C(\lambda_i)`: the BCE
    plus the normaliser that makes it a proper density on :math:`[0, 1]`, so the
    log-likelihoods of grey images are comparable densities. Its ``mean`` is the
    distribution's expectation, which differs from :math:`\sigma(l) = 1/(1 + e^{-l})`.
    """

    _name = "ContinuousBernoulli"

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    @property
    def mean(self) -> Tensor:
        """The expected pixel values, shaped like the logits."""
        return _continuous_bernoulli_mean(self.logits)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density of targets ``x`` in ``[0, 1]``, summed over ``(C, H, W)``: ``(..., B)``."""
        _check_target(x, self.logits, "ContinuousBernoulli")
        if validation_enabled():
            check_in_unit_interval(x, "targets of a continuous Bernoulli likelihood")
        bce = F.binary_cross_entropy_with_logits(self.logits, _broadcast(x, self.logits), reduction="none")
        return (_log_normaliser(self.logits) - bce).sum(dim=(-3, -2, -1))



class ContinuousBernoulli(nn.Module):
    """Continuous Bernoulli likelihood over pixels in ``[0, 1]``; decoder outputs are logits."""

    params_per_pixel = 1

    def forward(self, params: Tensor) -> ContinuousBernoulliImage:
        """The image distribution for logits ``(..., B, C, H, W)``."""
        return ContinuousBernoulliImage(params)


class GaussianImage:
    r"""Independent Gaussian pixels :math:`N(\mu_i, \sigma^2)` (``scale``: a float or a 0-d tensor).

    :math:`\log p(x|z) = -\sum_i \left[\tfrac{(x_i - \mu_i)^2}{2\sigma^2} + \log\sigma + \tfrac12\log 2\pi\right]`.
    With a fixed ``sigma`` this is the mean-squared error up to scale and an
    additive constant: MSE training is the fixed-scale Gaussian case.
    """

    def __init__(self, loc: Tensor, scale: float | Tensor) -> None:
        self.loc = loc
        self.scale = scale

    @property
    def mean(self) -> Tensor:
        """The pixel means ``mu``."""
        return self.loc

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        r"""Images drawn from the distribution, :math:`\mu + \sigma \varepsilon`, shaped like the means."""
        from vaerepair.distributions.gaussian import standard_normal

        eps = standard_normal(self.loc.shape, generator, self.loc.device, self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density of targets ``x``, summed over ``(C, H, W)``: ``(..., B)``."""
        return -self.neg_log_prob(x)

    def neg_log_prob(self, x: Tensor) -> Tensor:
        r"""``-log_prob(x)`` :math:`= \tfrac{1}{2\sigma^2}\|x - \mu\|^2 + D_x (\log\sigma + \tfrac12 \log 2\pi)`,
        without a negation: ``(..., B)``."""
        _check_target(x, self.loc, "Gaussian")
        d = math.prod(self.loc.shape[-3:])
        sq = (x - self.loc).square().sum(dim=(-3, -2, -1))
        log_scale = self.scale.log() if isinstance(self.scale, Tensor) else math.log(self.scale)
        return 0.5 * sq / self.scale**2 + d * (log_scale + 0.5 * math.log(2 * math.pi))

    def x_score(self, x: Tensor) -> Tensor:
        r""":math:`\nabla_x \log p(x|z) = -(x - \mu)/\sigma^2`, shaped like the means."""
        _check_target(x, self.loc, "Gaussian")
        return (self.loc - x) * (1.0 / self.scale**2)

    def x_laplacian(self, x: Tensor) -> Tensor:
        r""":math:`\Delta_x \log p(x|z) = -D_x/\sigma^2` (``D_x = C H W``): ``(..., B)``."""
        _check_target(x, self.loc, "Gaussian")
        d = math.prod(self.loc.shape[-3:])
        return (-d / self.scale**2) * self.loc.new_ones(self.loc.shape[:-3])

    def param_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The means and :math:`\partial \log p(x|z) / \partial \mu = (x - \mu)/\sigma^2`.

        (A learned scale's own derivative is not included: the Fisher objective
        differentiates with respect to z, which the scale does not depend on.)
        """
        _check_target(x, self.loc, "Gaussian")
        return self.loc, (x - self.loc) * (1.0 / self.scale**2)


class Gaussian(nn.Module):
    """Gaussian likelihood with a fixed or learned scale.

    With a fixed ``sigma``, minimising the negative log-likelihood is minimising
    the mean squared error (scaled by ``1/(2 sigma^2)``, plus a constant): MSE is
    this likelihood's fixed-scale case. With ``learn_sigma=True`` one scale shared
    by all pixels is a parameter, ``sigma = softplus(r) + 1e-4`` (positive, no
    overflow), initialised at ``sigma``.

    Args:
        sigma: the pixel standard deviation (its initial value when learned), ``> 0``.
        link: ``"identity"`` (decoder outputs are the means) or ``"sigmoid"``
            (means are ``sigmoid(output)``, kept inside ``(0, 1)``).
        learn_sigma: learn the scale.
    """

    params_per_pixel = 1

    def __init__(self, sigma: float = 1.0, link: str = "identity", learn_sigma: bool = False) -> None:
        super().__init__()
        sigma = check_positive(sigma, "sigma")
        if link not in ("identity", "sigmoid"):
            raise ValueError(f"link must be 'identity' or 'sigmoid', got {link!r}")
        self.link = link
        self.learn_sigma = bool(learn_sigma)
        if self.learn_sigma:
            if sigma <= _MIN_SIGMA:
                raise ValueError(f"a learned sigma must start above {_MIN_SIGMA}, got {sigma!r}")
            raw = torch.tensor(sigma - _MIN_SIGMA).expm1().log()  # softplus^-1
            self.raw_sigma = nn.Parameter(raw)
        else:
            self._sigma = sigma

    @property
    def sigma(self) -> float | Tensor:
        """The pixel standard deviation (a 0-d tensor when learned)."""
        if self.learn_sigma:
            return F.softplus(self.raw_sigma) + _MIN_SIGMA
        return self._sigma

    def forward(self, params: Tensor) -> GaussianImage:
        """The image distribution for decoder outputs ``(..., B, C, H, W)``."""
        loc = torch.sigmoid(params) if self.link == "sigmoid" else params
        return GaussianImage(loc, self.sigma)

    def extra_repr(self) -> str:
        sigma = self.sigma
        sigma = float(sigma.detach()) if isinstance(sigma, Tensor) else sigma
        return f"sigma={sigma:.4g}, link={self.link!r}, learn_sigma={self.learn_sigma}"


class PoissonGaussianImage:
    r"""The Poisson-Gaussian noise model of a clean signal ``s``: :math:`y_i \sim N(s_i, v_i)` independently,
    :math:`v_i = a\,\max(s_i, 0) + \sigma^2` (floored at ``min_variance``).

    The Gaussian approximation of photon noise of gain :math:`a` plus read noise
    :math:`\sigma` (:class:`~vaerepair.corruptions.PoissonGaussian`), as the
    noise models of DivNoising: :math:`\log p(y|s) = -\sum_i [\tfrac{(y_i - s_i)^2}{2 v_i}
    + \tfrac12 \log v_i + \tfrac12 \log 2\pi]`. Its ``mean`` is the signal ``s``.
    """

    def __init__(self, loc: Tensor, gain: float, sigma: float, min_variance: float = 1e-6) -> None:
        self.loc, self.gain, self.sigma, self.min_variance = loc, gain, sigma, min_variance

    @property
    def mean(self) -> Tensor:
        """The signal ``s`` ``(..., B, C, H, W)``."""
        return self.loc

    @property
    def variance(self) -> Tensor:
        r"""The per-pixel noise variance :math:`a \max(s, 0) + \sigma^2` ``(..., B, C, H, W)``."""
        return (self.gain * self.loc.clamp(min=0.0) + self.sigma**2).clamp(min=self.min_variance)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density of observations ``x``, summed over ``(C, H, W)``: ``(..., B)``."""
        _check_target(x, self.loc, "PoissonGaussianLikelihood")
        v = self.variance
        return -(0.5 * (x - self.loc).square() / v + 0.5 * v.log() + 0.5 * math.log(2 * math.pi)).sum(
            dim=(-3, -2, -1))


class PoissonGaussianLikelihood(nn.Module):
    r"""The likelihood of a noisy observation given the decoded clean signal, under Poisson-Gaussian noise.

    The noise model of a VAE trained on noisy images only
    (:func:`~vaerepair.models.noise_model_vae`): the decoder gives the signal
    ``s``, the observation is scored by :class:`PoissonGaussianImage`. With
    ``gain=0`` it is the Gaussian :class:`Gaussian` (``sigma``) likelihood.

    Args:
        gain: the photon gain :math:`a \ge 0` (intensity per photon).
        sigma: the read-noise standard deviation :math:`\sigma \ge 0` (``gain`` and
            ``sigma`` not both 0).
        link: ``"identity"`` or ``"sigmoid"`` (the signal kept in ``(0, 1)``).
        min_variance: the floor on the per-pixel variance.
    """

    params_per_pixel = 1

    def __init__(self, gain: float, sigma: float = 0.0, link: str = "identity", min_variance: float = 1e-6) -> None:
        super().__init__()
        self.gain = check_positive(gain, "gain", allow_zero=True)
        self.sigma = check_positive(sigma, "sigma", allow_zero=True)
        if self.gain == 0 and self.sigma == 0:
            raise ValueError("gain and sigma are both 0: that is no noise; give the noise's gain and/or sigma")
        if link not in ("identity", "sigmoid"):
            raise ValueError(f"link must be 'identity' or 'sigmoid', got {link!r}")
        self.link = link
        self.min_variance = check_positive(min_variance, "min_variance")

    def forward(self, params: Tensor) -> PoissonGaussianImage:
        """The noise model around the signal given by decoder outputs ``(..., B, C, H, W)``."""
        loc = torch.sigmoid(params) if self.link == "sigmoid" else params
        return PoissonGaussianImage(loc, self.gain, self.sigma, self.min_variance)

    def extra_repr(self) -> str:
        return f"gain={self.gain:.4g}, sigma={self.sigma:.4g}, link={self.link!r}"
