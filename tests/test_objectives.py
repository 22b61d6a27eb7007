"""The reconstruction objective against hand-written losses; input vs target roles."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vaerepair import models
from vaerepair.objectives import Objective, ObjectiveResult, Reconstruction


def test_bernoulli_reconstruction_is_summed_bce_mean_over_batch():
    torch.set_default_dtype(torch.float64)
    try:
        model = models.autoencoder(latent_dim=4, hidden=(16,))
        x_in, x_t = torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28)
        result = Reconstruction()(model, x_in, x_t)
        logits = model.decoder(model.posterior.head(model.encoder(x_in)))
        per_image = F.binary_cross_entropy_with_logits(logits, x_t, reduction="none").sum(dim=(1, 2, 3))
        torch.testing.assert_close(result.terms["recon"], per_image)
        torch.testing.assert_close(result.loss, per_image.mean())
    finally:
        torch.set_default_dtype(torch.float32)


def test_gaussian_reconstruction_is_scaled_mse_plus_constant():
    model = models.autoencoder(latent_dim=4, hidden=(16,), likelihood="gaussian", sigma=0.5).double()
    x_in, x_t = torch.rand(3, 1, 28, 28, dtype=torch.float64), torch.rand(3, 1, 28, 28, dtype=torch.float64)
    result = Reconstruction()(model, x_in, x_t)
    mean = model.reconstruct(x_in)
    ref = (x_t - mean).square().sum(dim=(1, 2, 3)) / (2 * 0.25) + 784 * (math.log(0.5) + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(result.terms["recon"], ref)


def test_encoder_sees_the_input_and_likelihood_scores_the_target():
    model = models.autoencoder(latent_dim=4, hidden=(16,))
    seen = []
    model.encoder.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x_in, x_t = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    a = Reconstruction()(model, x_in, x_t)
    assert torch.equal(seen[0], x_in)
    b = Reconstruction()(model, x_in, x_in)
    assert not torch.allclose(a.loss, b.loss)


def test_gradients_reach_every_parameter_and_contract():
    model = models.autoencoder(arch="conv", latent_dim=4, hidden=(8, 8), features=16)
    objective = Reconstruction()
    assert isinstance(objective, Objective)
    result = objective(model, torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28))
    assert isinstance(result, ObjectiveResult) and result.loss.dim() == 0
    result.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
