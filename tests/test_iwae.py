"""The importance-weighted bound: k = 1 is the ELBO, it rises with k, and it reaches log p(x) where that is known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as td
from torch import nn

import vaerepair as vr
from vaerepair import distributions as D
from vaerepair import nets
from vaerepair.models import LatentVariableModel
from vaerepair.objectives import IWAE, iwae_nll, log_weights


def _vae() -> LatentVariableModel:
    torch.manual_seed(0)
    return vr.variational_autoencoder(latent_dim=3, hidden=(16,)).double()


def test_k1_equals_the_elbo_with_monte_carlo_kl():
    model, x = _vae(), torch.rand(5, 1, 28, 28, dtype=torch.float64)
    torch.manual_seed(7)
    iwae = IWAE(k=1)(model, x, x)
    torch.manual_seed(7)
    elbo = vr.ELBO(kl="mc")(model, x, x)
    torch.testing.assert_close(iwae.terms["nll"], -elbo.terms["elbo"])
    torch.testing.assert_close(iwae.loss, elbo.loss)


def test_bound_rises_with_k():
    model, x = _vae(), torch.rand(4, 1, 28, 28, dtype=torch.float64)
    torch.manual_seed(0)
    with torch.no_grad():
        lw = log_weights(model, x, x, 20_000)  # (N, B), regrouped into N/k groups of k
    means = []
    for k in (1, 10, 100, 1000):
        groups = lw.reshape(-1, k, lw.shape[-1])
        means.append((torch.logsumexp(groups, dim=1) - math.log(k)).mean(dim=0))
    for smaller, larger in zip(means[:-1], means[1:], strict=True):
        assert (larger >= smaller - 1e-6).all()
    assert (means[-1] - means[0] > 0.1).all()  # a real gain, not just equality


class _LinearDecoder(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.latent_dim = weight.shape[1]
        self.linear = nn.Linear(weight.shape[1], weight.shape[0]).double()
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z).view(-1, 1, 2, 2)


def test_linear_gaussian_model_reaches_the_exact_log_likelihood():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 2, generator=g, dtype=torch.float64) * 0.7
    bias = torch.randn(4, generator=g, dtype=torch.float64) * 0.3
    torch.manual_seed(0)
    model = LatentVariableModel(
        nets.MLPEncoder((1, 2, 2), hidden=(8,)).double(), D.GaussianPosterior(8, 2).double(),
        _LinearDecoder(weight, bias), D.Gaussian(sigma=1.0), prior=D.StandardNormal(2),
    )
    x = torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64)
    exact = -td.MultivariateNormal(bias, weight @ weight.T + torch.eye(4, dtype=torch.float64)).log_prob(x.view(6, 4))
    torch.manual_seed(1)
    nll_1 = iwae_nll(model, x, k=1, batch_size=3)
    nll_big = iwae_nll(model, x, k=50_000, chunk=5_000, batch_size=3)
    assert (nll_big - exact).abs().max() < 0.02
    assert ((nll_1 - exact).abs() > (nll_big - exact).abs()).all()


def test_iwae_trains_and_checks_arguments():
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        IWAE(k=0)
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="needs? a model with a prior"):
        IWAE()(vr.autoencoder(latent_dim=4, hidden=(16,)), x, x)
    images = (torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.7).to(torch.uint8) * 255
    torch.manual_seed(0)
    trainer = vr.Trainer(vr.variational_autoencoder(latent_dim=4, hidden=(32,)), IWAE(k=4), None, epochs=3,
                         batch_size=16, lr=3e-3, progress=False, device="cpu")
    history = trainer.fit(images)
    assert history["train_nll"][-1] < history["train_nll"][0]


def test_evaluate_reports_clean_image_likelihoods_for_variational_models():
    images = (torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.7).to(torch.uint8) * 255
    torch.manual_seed(0)
    model = vr.variational_autoencoder(latent_dim=3, hidden=(16,))
    trainer = vr.Trainer(model, vr.ELBO(), vr.GaussianNoise(0.2), progress=False, device="cpu")
    out = trainer.evaluate(images, iwae_k=200)
    assert out["nll_iwae"] <= out["neg_elbo"] + 0.5  # the bound tightens with k (within MC error)
    assert out["nll_iwae"] > 0 and model.training
    assert "nll_iwae" not in vr.Trainer(vr.autoencoder(latent_dim=3, hidden=(16,)), vr.Reconstruction(),
                                        progress=False, device="cpu").evaluate(images, iwae_k=200)
