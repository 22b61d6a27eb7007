"""Likelihoods and the point-mass posterior against torch.distributions and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as td

from vaerepair import distributions as D


def test_bernoulli_matches_torch_distributions_on_binary_targets():
    logits = torch.randn(4, 1, 6, 6, dtype=torch.float64) * 3
    x = torch.bernoulli(torch.full_like(logits, 0.5))
    ours = D.Bernoulli()(logits).log_prob(x)
    ref = td.Bernoulli(logits=logits).log_prob(x).sum(dim=(1, 2, 3))
    assert ours.shape == (4,)
    torch.testing.assert_close(ours, ref)


def test_bernoulli_grey_targets_closed_form_and_stable():
    logits = torch.tensor([[-200.0, -3.0, 0.0, 5.0, 300.0]], dtype=torch.float64).view(1, 1, 1, 5)
    x = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64).view(1, 1, 1, 5)
    ours = D.Bernoulli()(logits).log_prob(x)
    p = torch.sigmoid(logits)
    # x log p + (1 - x) log(1 - p) with logs from the logits (log1p-exp form, no overflow).
    ref = (x * -torch.nn.functional.softplus(-logits) + (1 - x) * -torch.nn.functional.softplus(logits)).sum()
    torch.testing.assert_close(ours.sum(), ref)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(D.Bernoulli()(logits).mean, p)


def test_bernoulli_refuses_targets_outside_unit_interval_unless_validation_off():
    lik = D.Bernoulli()(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\].*got values in \[-0.5, 1\]"):
        lik.log_prob(torch.tensor([[[[-0.5, 1.0], [0.0, 0.5]]]]))
    with D.validation(False):
        lik.log_prob(torch.tensor([[[[-0.5, 1.0], [0.0, 0.5]]]]))
    assert D.validation_enabled()


@pytest.mark.parametrize("sigma", [0.1, 1.0, 2.5])
@pytest.mark.parametrize("link", ["identity", "sigmoid"])
def test_gaussian_matches_torch_normal(sigma, link):
    params = torch.randn(3, 2, 5, 4, dtype=torch.float64)
    x = torch.rand_like(params)
    lik = D.Gaussian(sigma=sigma, link=link)(params)
    loc = torch.sigmoid(params) if link == "sigmoid" else params
    ref = td.Normal(loc, sigma).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(lik.log_prob(x), ref)
    torch.testing.assert_close(lik.mean, loc)


def test_gaussian_fixed_scale_is_scaled_mse_plus_constant():
    params, x = torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.rand(2, 1, 4, 4, dtype=torch.float64)
    nll = -D.Gaussian(sigma=0.5)(params).log_prob(x)
    sse = (x - params).square().sum(dim=(1, 2, 3))
    const = 16 * (math.log(0.5) + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(nll, sse / (2 * 0.25) + const)


def test_sample_dimension_is_carried():
    logits = torch.randn(7, 3, 1, 4, 4)  # (S, B, C, H, W)
    x = torch.rand(3, 1, 4, 4)
    lp = D.Bernoulli()(logits).log_prob(x)
    assert lp.shape == (7, 3)
    torch.testing.assert_close(lp[2], D.Bernoulli()(logits[2]).log_prob(x))


def test_mismatched_target_shape_is_refused():
    with pytest.raises(ValueError, match="last three dimensions"):
        D.Gaussian()(torch.zeros(2, 1, 4, 4)).log_prob(torch.zeros(2, 1, 5, 5))


def test_point_mass_posterior():
    head = D.PointMassPosterior(10, 3)
    q = head(torch.randn(4, 10))
    assert q.rsample().shape == (4, 3) and q.rsample(5).shape == (5, 4, 3)
    assert torch.equal(q.rsample(), q.mean)
    with pytest.raises(NotImplementedError, match="no density"):
        q.log_prob(q.mean)
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        head(torch.randn(4, 11))


def test_argument_errors():
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        D.Gaussian(sigma=0.0)
    with pytest.raises(ValueError, match="link must be"):
        D.Gaussian(link="exp")


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-9), (torch.float32, 2e-5)])
def test_continuous_bernoulli_matches_torch_including_near_half_and_extremes(dtype, rtol):
    logits = torch.tensor([-9.0, -4.0, -1.0, -0.2, -0.09, -1e-4, 0.0, 1e-4, 0.05, 0.3, 2.0, 6.0, 9.0], dtype=dtype)
    x = torch.linspace(0, 1, len(logits), dtype=dtype)
    ours = D.ContinuousBernoulli()(logits.view(-1, 1, 1, 1))  # one 1x1 image per logit
    ref = td.ContinuousBernoulli(logits=logits.double(), lims=(0.4999, 0.5001))
    lp = ours.log_prob(x.view(-1, 1, 1, 1))
    torch.testing.assert_close(lp.double(), ref.log_prob(x.double()), rtol=rtol, atol=rtol)
    torch.testing.assert_close(ours.mean.view(-1).double(), ref.mean, rtol=rtol, atol=rtol)
    assert torch.isfinite(lp).all()


def test_continuous_bernoulli_extreme_logits_against_the_closed_form():
    # torch.distributions works from the clamped probability out here: 5e-8 off at l = 25, 0.5 nats at |l| = 60.
    logits = torch.tensor([-300.0, -60.0, -30.0, 25.0, 45.0, 80.0], dtype=torch.float64)
    x = torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0, 0.9], dtype=torch.float64)
    lp = D.ContinuousBernoulli()(logits.view(-1, 1, 1, 1)).log_prob(x.view(-1, 1, 1, 1))
    log_c = logits.abs().log() - torch.tanh(logits.abs() / 2).log()
    ref = x * logits - torch.logaddexp(torch.zeros_like(logits), logits) + log_c  # (F.softplus cuts off at 20)
    torch.testing.assert_close(lp, ref, rtol=1e-12, atol=1e-12)


def test_continuous_bernoulli_is_a_proper_density():
    logits = torch.tensor([-5.0, -0.05, 0.0, 0.7, 12.0], dtype=torch.float64).view(1, 1, 1, 5)
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64)
    points = grid.view(-1, 1, 1, 1)  # each grid point a 1x1 image
    dens = torch.stack([D.ContinuousBernoulli()(logits[..., i : i + 1].expand_as(points)).log_prob(points).exp()
                        for i in range(5)])
    integral = torch.trapezoid(dens, grid, dim=-1)
    torch.testing.assert_close(integral, torch.ones(5, dtype=torch.float64), rtol=1e-6, atol=1e-6)


def test_learned_gaussian_scale_matches_torch_and_learns():
    lik = D.Gaussian(sigma=0.3, learn_sigma=True).double()
    assert lik.sigma.detach().item() == pytest.approx(0.3)
    params = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    x = params + 0.05 * torch.randn_like(params)  # the truth is a much smaller scale
    ref = td.Normal(params, lik.sigma).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(lik(params).log_prob(x), ref)
    opt = torch.optim.Adam(lik.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        (-lik(params).log_prob(x).mean()).backward()
        opt.step()
    rms = (x - params).square().mean().sqrt().item()
    assert lik.sigma.detach().item() == pytest.approx(rms, rel=0.02)  # the maximum-likelihood scale
    assert list(dict(lik.named_parameters())) == ["raw_sigma"]
    assert not list(D.Gaussian(sigma=0.3).parameters())


def test_negative_log_likelihood_is_minus_log_prob_for_every_likelihood() -> None:
    """The objectives' -log p(x | z): the likelihood's own neg_log_prob (no negation to undo) where it has one,
    bit for bit -log_prob; else -log_prob, for users' likelihoods that give only log_prob."""
    from vaerepair.distributions import (
        Bernoulli,
        ContinuousBernoulli,
        Gaussian,
        PoissonGaussianLikelihood,
        negative_log_likelihood,
    )

    torch.manual_seed(0)
    x = torch.rand(3, 2, 5, 4, dtype=torch.float64)
    params = torch.randn(2, 3, 2, 5, 4, dtype=torch.float64)  # a sample dimension in front: (S, B, C, H, W)
    likelihoods = (Bernoulli(), ContinuousBernoulli(), Gaussian(0.3), Gaussian(0.3, learn_sigma=True).double(),
                   PoissonGaussianLikelihood(0.1, 0.05))
    for likelihood in likelihoods:
        dist = likelihood(params)
        nll = negative_log_likelihood(dist, x)
        assert nll.shape == (2, 3)
        assert torch.equal(nll, -dist.log_prob(x)), type(likelihood).__name__
    bce = torch.nn.functional.binary_cross_entropy_with_logits(params[0], x, reduction="none")
    assert torch.equal(negative_log_likelihood(Bernoulli()(params[0]), x), bce.sum((1, 2, 3)))

    class OnlyLogProb:  # a user's likelihood
        def log_prob(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=(-3, -2, -1)) - 1.0

    assert torch.equal(negative_log_likelihood(OnlyLogProb(), x), 1.0 - x.sum(dim=(1, 2, 3)))


@pytest.mark.parametrize("likelihood", [None, "bernoulli", 3.0, torch.rand(2, 1, 4, 4)])
def test_negative_log_likelihood_of_something_that_is_no_distribution_names_it(likelihood: object) -> None:
    from vaerepair.distributions import negative_log_likelihood

    with pytest.raises(TypeError, match=f"image distribution with log_prob.*got {type(likelihood).__name__}"):
        negative_log_likelihood(likelihood, torch.rand(2, 1, 4, 4))


@pytest.mark.parametrize("x", [None, "images", [[0.5]]])
def test_a_likelihood_target_that_is_no_tensor_is_named(x: object) -> None:
    from vaerepair.distributions import Bernoulli, Gaussian, negative_log_likelihood

    for likelihood in (Bernoulli(), Gaussian(0.5)):
        with pytest.raises(TypeError, match=f"target images must be a tensor .*got {type(x).__name__}"):
            negative_log_likelihood(likelihood(torch.zeros(2, 1, 4, 4)), x)
