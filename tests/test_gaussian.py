"""Diagonal Gaussian posterior, standard normal prior and the ELBO, against independent oracles."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as td

import vaerepair as vr
from vaerepair.distributions import DiagonalGaussian, GaussianPosterior, StandardNormal


def _q(b: int = 4, d: int = 3) -> DiagonalGaussian:
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(b, d, generator=g, dtype=torch.float64) * 2
    scale = torch.rand(b, d, generator=g, dtype=torch.float64) * 2 + 0.05
    return DiagonalGaussian(loc, scale)


def test_log_prob_matches_torch_normal_with_sample_dimension():
    q = _q()
    z = torch.randn(7, 4, 3, dtype=torch.float64)
    ref = td.Normal(q.loc, q.scale).log_prob(z).sum(-1)
    torch.testing.assert_close(q.log_prob(z), ref)
    assert q.log_prob(z).shape == (7, 4)


def test_analytic_kl_matches_torch_and_monte_carlo():
    q = _q()
    ref = td.kl_divergence(td.Normal(q.loc, q.scale), td.Normal(torch.zeros_like(q.loc), 1.0)).sum(-1)
    torch.testing.assert_close(q.kl_standard_normal(), ref)
    torch.manual_seed(0)
    z = q.rsample(200_000)
    mc = q.log_prob(z) - StandardNormal(3).log_prob(z)  # (S, B)
    se = mc.std(dim=0) / math.sqrt(mc.shape[0])
    assert ((mc.mean(dim=0) - ref).abs() < 4 * se).all()


def test_scores_match_autograd():
    q, prior = _q(), StandardNormal(3)
    z = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)
    (g_q,) = torch.autograd.grad(q.log_prob(z).sum(), z)
    (g_p,) = torch.autograd.grad(prior.log_prob(z).sum(), z)
    torch.testing.assert_close(q.score(z), g_q)
    torch.testing.assert_close(prior.score(z), g_p)
    torch.testing.assert_close(prior.log_prob(z), td.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_rsample_is_reparameterised_with_the_right_moments():
    loc = torch.tensor([[1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([[0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    z = DiagonalGaussian(loc, scale).rsample(100_000, generator=torch.Generator().manual_seed(1))
    assert z.shape == (100_000, 1, 2)
    torch.testing.assert_close(z.mean(0), loc.detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), scale.detach(), atol=0.05, rtol=0)
    z.mean().backward()
    assert loc.grad is not None and scale.grad is not None


@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 1e4])
def test_posterior_scale_stays_positive_and_finite(magnitude):
    head = GaussianPosterior(6, 3).double()
    with torch.no_grad():
        head.head.weight.mul_(magnitude)
    q = head(torch.randn(10, 6, dtype=torch.float64) * magnitude)
    assert (q.scale >= head.min_scale).all() and torch.isfinite(q.scale).all()
    assert torch.isfinite(q.kl_standard_normal()).all() and torch.isfinite(q.score(q.rsample())).all()


@pytest.mark.parametrize(("beta", "n_samples", "free_bits"), [(2.5, 3, 0.0), (1.0, 1, 0.0), (0.5, 1, 0.0),
                                                              (1.0, 1, 0.8), (1.0, 2, 0.8)])
def test_elbo_terms_equal_a_hand_written_elbo(beta: float, n_samples: int, free_bits: float) -> None:
    """One draw per image takes a path without a sample dimension: the same draws and values as (1, B)."""
    torch.set_default_dtype(torch.float64)
    try:
        model = vr.variational_autoencoder(latent_dim=4, hidden=(32,))
        x_in, x_t = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
        torch.manual_seed(3)
        result = vr.ELBO(beta=beta, n_samples=n_samples, free_bits=free_bits)(model, x_in, x_t)
        torch.manual_seed(3)
        h = model.encoder(x_in)
        loc, raw = model.posterior.head(h).chunk(2, dim=-1)
        scale = torch.nn.functional.softplus(raw) + 1e-4
        z = loc + scale * torch.randn(n_samples, *loc.shape)
        logits = model.decoder(z.reshape(-1, 4)).reshape(n_samples, 5, 1, 28, 28)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x_t.expand_as(logits), reduction="none")
        recon = bce.sum(dim=(2, 3, 4)).mean(0)
        kl = td.kl_divergence(td.Normal(loc, scale), td.Normal(torch.zeros_like(loc), 1.0)).sum(-1)
        torch.testing.assert_close(result.terms["recon"], recon)
        torch.testing.assert_close(result.terms["kl"], kl)
        penalty = kl.clamp(min=free_bits * 4)  # free bits: at least free_bits nats for each of the 4 latents
        assert free_bits == 0 or bool((penalty > kl).any())
        torch.testing.assert_close(result.loss, (recon + beta * penalty).mean())
        torch.testing.assert_close(result.terms["elbo"], -(recon + kl))
        assert all(t.shape == (5,) for t in result.terms.values())
    finally:
        torch.set_default_dtype(torch.float32)


def test_monte_carlo_kl_agrees_with_analytic_in_expectation():
    model = vr.variational_autoencoder(latent_dim=4, hidden=(32,)).double()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    torch.manual_seed(0)
    mc = vr.ELBO(kl="mc", n_samples=20_000)(model, x, x).terms["kl"]
    exact = vr.ELBO(kl="analytic")(model, x, x).terms["kl"]
    assert ((mc - exact).abs() < 0.05 * exact.abs().clamp(min=0.1)).all()
    torch.testing.assert_close(vr.ELBO()(model, x, x).terms["kl"], exact)  # kl="auto" takes the closed form


def test_elbo_arguments_and_models_are_checked():
    with pytest.raises(ValueError, match="kl must be 'auto', 'analytic' or 'mc'"):
        vr.ELBO(kl="exact")
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        vr.ELBO(n_samples=0)
    with pytest.raises(ValueError, match="beta must be finite and >= 0"):
        vr.ELBO(beta=-1.0)
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="needs a model with a prior"):
        vr.ELBO()(vr.autoencoder(latent_dim=4, hidden=(16,)), x, x)
    with pytest.raises(ValueError, match="point-mass autoencoder"):
        vr.variational_autoencoder(arch="conv", latent_dim=49, spatial=True)


def test_vae_trains_with_the_trainer_and_reloads(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(128, 1, 28, 28, generator=g) > 0.7).to(torch.uint8) * 255
    torch.manual_seed(0)
    model = vr.variational_autoencoder(latent_dim=4, hidden=(64,))
    trainer = vr.Trainer(model, vr.ELBO(), vr.GaussianNoise(0.2), epochs=3, batch_size=32, lr=3e-3,
                         progress=False, device="cpu", checkpoint_dir=tmp_path)
    history = trainer.fit(images[:96], images[96:])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert {"train_recon", "train_kl", "train_elbo", "val_kl"} <= set(history.keys())
    reloaded = vr.load_model(tmp_path / "last.pt")
    assert isinstance(reloaded.prior, StandardNormal)
    x = images[:4].float() / 255
    torch.testing.assert_close(reloaded.reconstruct(x), trainer.model.eval().reconstruct(x))
