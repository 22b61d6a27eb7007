"""The Fisher autoencoder objective: every score term against closed forms (float64), gradients against
finite differences, batched against one-image-at-a-time, and the model checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

import vaerepair as vr
from vaerepair.distributions import Bernoulli, DiagonalGaussian, Gaussian, GaussianPosterior, StandardNormal
from vaerepair.flows import PlanarFlowPosterior
from vaerepair.models import LabelCondition, LatentVariableModel
from vaerepair.objectives import FisherDivergence, batch_coupling_layers, fisher_scores

SHAPE = (1, 2, 3)
DX = math.prod(SHAPE)
LATENT = 2
HIDDEN = 4


class TinyEncoder(nn.Module):
    def __init__(self, linear: bool = False, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.image_shape, self.out_features = SHAPE, HIDDEN
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(DX, HIDDEN)]
        if norm is not None:
            layers.append(norm)
        if not linear:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TinyDecoder(nn.Module):
    def __init__(self, linear: bool = False, latent_dim: int = LATENT) -> None:
        super().__init__()
        self.latent_dim, self.image_shape = latent_dim, SHAPE
        if linear:
            self.net: nn.Module = nn.Linear(latent_dim, DX)
        else:
            self.net = nn.Sequential(nn.Linear(latent_dim, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, DX))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *SHAPE)


class FixedDraw(DiagonalGaussian):
    """A Gaussian whose draw uses given noise ``eps`` (B, D), so batched and per-image runs share it."""

    def __init__(self, loc: Tensor, scale: Tensor, eps: Tensor) -> None:
        super().__init__(loc, scale)
        self.eps = eps

    def rsample(self, n_samples: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        return self.loc + self.scale * self.eps


class FixedNoiseHead(nn.Module):
    def __init__(self, eps: Tensor) -> None:
        super().__init__()
        self.head = GaussianPosterior(HIDDEN, LATENT)
        self.in_features, self.latent_dim = HIDDEN, LATENT
        self.eps = eps

    def forward(self, features: Tensor) -> FixedDraw:
        q = self.head(features)
        return FixedDraw(q.loc, q.scale, self.eps)


LIKELIHOODS = {
    "gaussian": lambda: Gaussian(sigma=0.7),
    "gaussian-sigmoid": lambda: Gaussian(sigma=1.0, link="sigmoid"),
    "gaussian-learned": lambda: Gaussian(sigma=0.5, learn_sigma=True),
    "bernoulli": lambda: Bernoulli(),
}


def tiny_model(likelihood: str = "gaussian", linear_encoder: bool = False, linear_decoder: bool = False,
               posterior: nn.Module | None = None, norm: nn.Module | None = None) -> LatentVariableModel:
    model = LatentVariableModel(
        TinyEncoder(linear_encoder, norm), posterior or GaussianPosterior(HIDDEN, LATENT),
        TinyDecoder(linear_decoder), LIKELIHOODS[likelihood](), prior=StandardNormal(LATENT),
    )
    return model.double()


def images(b: int = 3, seed: int = 0) -> Tensor:
    return torch.rand(b, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def oracle_scores(model: LatentVariableModel, likelihood: str, x_in: Tensor, x_t: Tensor, z: Tensor) -> dict:
    """MATH.md §1.2 closed forms, one image at a time, Jacobians from autograd.functional.jacobian."""
    rows: dict[str, list[Tensor]] = {k: [] for k in ("s_qz", "s_qx", "s_lik", "s_prior", "x_score", "laplacian")}
    for i in range(len(x_in)):
        q = model.encode(x_in[i : i + 1])
        mu, sigma = q.loc[0], q.scale[0]
        j_mu = jacobian(lambda x: model.encode(x[None]).loc[0], x_in[i]).reshape(LATENT, DX)
        j_log_sigma = jacobian(lambda x: model.encode(x[None]).scale[0].log(), x_in[i]).reshape(LATENT, DX)
        eps = (z[i] - mu) / sigma
        rows["s_qz"].append(-eps / sigma)
        rows["s_qx"].append((j_mu.T @ (eps / sigma) + j_log_sigma.T @ (eps.square() - 1)).view(SHAPE))
        rows["s_prior"].append(-z[i])
        out = model.decoder(z[i][None])[0].flatten()
        j_out = jacobian(lambda v: model.decoder(v[None])[0].flatten(), z[i])  # (Dx, D)
        x = x_t[i].flatten()
        if likelihood == "bernoulli":
            d_out, x_score, lap = x - torch.sigmoid(out), out, torch.zeros((), dtype=x.dtype)
        else:
            sigma_x = model.likelihood.sigma
            mean = torch.sigmoid(out) if likelihood == "gaussian-sigmoid" else out
            residual = (x - mean) / sigma_x**2
            d_out = residual * mean * (1 - mean) if likelihood == "gaussian-sigmoid" else residual
            x_score, lap = -residual, -DX / sigma_x**2 * torch.ones((), dtype=x.dtype)
        rows["s_lik"].append(j_out.T @ d_out)
        rows["x_score"].append(x_score.view(SHAPE))
        rows["laplacian"].append(torch.as_tensor(lap))
    return {k: torch.stack(v) for k, v in rows.items()}


@pytest.mark.parametrize("closed_form", [False, True], ids=["autograd", "closed-form"])
@pytest.mark.parametrize("linear", [True, False], ids=["linear", "nonlinear"])
@pytest.mark.parametrize("likelihood", list(LIKELIHOODS))
def test_scores_equal_closed_forms(likelihood: str, linear: bool, closed_form: bool) -> None:
    model = tiny_model(likelihood, linear_encoder=linear, linear_decoder=linear)
    x_t = images()
    x_in = (x_t + 0.1 * images(seed=1)).clamp(0, 1)  # a denoising pair: the encoder sees x_in
    s = fisher_scores(model, x_in, x_t, closed_form=closed_form, relax_discrete=True)
    ref = oracle_scores(model, likelihood, x_in, x_t, s.z.detach())
    close = dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s.posterior_z, ref["s_qz"], **close)
    torch.testing.assert_close(s.posterior_x, ref["s_qx"], **close)
    torch.testing.assert_close(s.prior_z, ref["s_prior"], **close)
    torch.testing.assert_close(s.likelihood_z, ref["s_lik"], **close)
    torch.testing.assert_close(s.likelihood_x, ref["x_score"], **close)
    torch.testing.assert_close(s.laplacian, ref["laplacian"], **close)
    if linear and likelihood == "gaussian":  # s_lik = D^T (x - D z - d) / sigma^2, no Jacobian at all
        weight, bias = model.decoder.net.weight, model.decoder.net.bias
        direct = (x_t.flatten(1) - s.z @ weight.T - bias) @ weight / 0.7**2
        torch.testing.assert_close(s.likelihood_z, direct, **close)
    # the reparameterisation-path derivative (the authors' code) is a different quantity
    path = -jacobian(lambda x: model.encode(x[None]).scale[0].log().sum(), x_in[0])
    assert (path - s.posterior_x[0]).abs().max() > 1e-3


def test_loss_is_the_sum_of_the_terms_from_the_scores() -> None:
    model = tiny_model("gaussian")
    x = images(5)
    torch.manual_seed(3)
    result = FisherDivergence()(model, x, x)
    torch.manual_seed(3)
    s = fisher_scores(model, x, x)
    residual = s.posterior_z - s.likelihood_z - s.prior_z
    expected = (0.5 * residual.square().sum(1) + 0.5 * s.posterior_x.square().sum((1, 2, 3))
                + 0.5 * s.likelihood_x.square().sum((1, 2, 3)) + s.laplacian)
    torch.testing.assert_close(result.loss, expected.mean(), rtol=1e-12, atol=0)
    assert set(result.terms) == {"fisher_z", "score_qx", "score_px", "laplacian", "recon"}
    assert all(t.shape == (5,) for t in result.terms.values())
    torch.testing.assert_close(result.terms["recon"], -s.log_likelihood, rtol=1e-12, atol=0)
    torch.testing.assert_close(result.terms["laplacian"], torch.full((5,), -DX / 0.7**2, dtype=torch.float64))


@pytest.mark.parametrize("closed_form", [False, True], ids=["autograd", "closed-form"])
@pytest.mark.parametrize("likelihood", ["gaussian-sigmoid", "gaussian-learned"])
def test_parameter_gradients_match_finite_differences(likelihood: str, closed_form: bool) -> None:
    model = tiny_model(likelihood)
    x_t = images(4)
    x_in = (x_t + 0.2 * images(4, seed=2)).clamp(0, 1)
    objective = FisherDivergence(closed_form=closed_form)

    def loss() -> Tensor:
        torch.manual_seed(11)  # the same draws every time
        return objective(model, x_in, x_t).loss

    params = dict(model.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(loss(), list(params.values())), strict=True))
    assert all(g.abs().sum() > 0 for g in grads.values()), "every parameter gets a gradient"
    gen = torch.Generator().manual_seed(0)
    h = 1e-6
    for name, p in params.items():
        for _ in range(min(3, p.numel())):
            i = int(torch.randint(p.numel(), (), generator=gen))
            with torch.no_grad():
                flat = p.view(-1)
                flat[i] += h
                up = float(loss())
                flat[i] -= 2 * h
                down = float(loss())
                flat[i] += h
            numeric = (up - down) / (2 * h)
            assert grads[name].view(-1)[i].item() == pytest.approx(numeric, rel=1e-5, abs=1e-6), name


def test_decoder_gets_the_z_block_gradient_through_the_likelihood_score() -> None:
    """Pitfall P2: with the likelihood score detached the decoder would get nothing from fisher_z."""
    model = tiny_model("gaussian")
    x = images()
    fisher_z = FisherDivergence()(model, x, x).terms["fisher_z"].sum()
    grads = torch.autograd.grad(fisher_z, list(model.decoder.parameters()))
    assert all(g.abs().max() > 1e-6 for g in grads)


def test_learned_scale_laplacian_is_kept_and_trains_the_scale() -> None:
    model = tiny_model("gaussian-learned")
    x = images()
    terms = FisherDivergence()(model, x, x).terms
    sigma = model.likelihood.sigma
    torch.testing.assert_close(terms["laplacian"], (-DX / sigma**2).expand(3))
    (g,) = torch.autograd.grad(terms["laplacian"].sum(), model.likelihood.raw_sigma)
    raw = model.likelihood.raw_sigma.detach()
    expected = 3 * 2 * DX / sigma.detach() ** 3 * torch.sigmoid(raw)  # d(-D/s^2)/ds * ds/draw, 3 images
    torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("closed_form", [False, True], ids=["autograd", "closed-form"])
def test_batched_scores_equal_one_image_at_a_time(closed_form: bool) -> None:
    b = 5
    eps = torch.randn(b, LATENT, dtype=torch.float64)
    head = FixedNoiseHead(eps)
    model = tiny_model("gaussian-sigmoid", posterior=head)
    x_t = images(b)
    x_in = (x_t + 0.1 * images(b, seed=4)).clamp(0, 1)
    batched = fisher_scores(model, x_in, x_t, closed_form=closed_form)
    for i in range(b):
        head.eps = eps[i : i + 1]
        single = fisher_scores(model, x_in[i : i + 1], x_t[i : i + 1], closed_form=closed_form)
        for name, a, s in zip(batched._fields, batched, single, strict=True):
            torch.testing.assert_close(a[i : i + 1], s, rtol=1e-12, atol=1e-14, msg=name)


def test_batchnorm_in_training_mode_is_refused_and_eval_mode_is_exact() -> None:
    b = 4
    eps = torch.randn(b, LATENT, dtype=torch.float64)
    head = FixedNoiseHead(eps)
    model = tiny_model("gaussian", posterior=head, norm=nn.BatchNorm1d(HIDDEN))
    x = images(b)
    assert batch_coupling_layers(model) == ["encoder.net.2"]
    with pytest.raises(ValueError, match=r"encoder\.net\.2.*BatchNorm in training mode.*GroupNorm"):
        FisherDivergence()(model, x, x)
    model.eval()  # running statistics: images are independent again
    assert batch_coupling_layers(model) == []
    batched = fisher_scores(model, x, x)
    head.eps = eps[1:2]
    single = fisher_scores(model, x[1:2], x[1:2])
    torch.testing.assert_close(batched.posterior_x[1:2], single.posterior_x, rtol=1e-12, atol=1e-14)
    no_stats = tiny_model("gaussian", norm=nn.BatchNorm1d(HIDDEN, track_running_stats=False)).eval()
    with pytest.raises(ValueError, match="batch statistics"):
        FisherDivergence()(no_stats, x, x)


def test_bernoulli_is_refused_unless_relaxed() -> None:
    model = tiny_model("bernoulli")
    x = images()
    with pytest.raises(ValueError, match="discrete pixels.*relax_discrete=True"):
        FisherDivergence()(model, x, x)
    terms = FisherDivergence(relax_discrete=True)(model, x, x).terms
    assert torch.equal(terms["laplacian"], torch.zeros(3, dtype=torch.float64))


def test_flow_posterior_scores_match_finite_differences_of_its_density() -> None:
    """Amortised planar layers depend on x: s_qx at fixed z must include them (one-pass formula)."""
    model = tiny_model("gaussian", posterior=PlanarFlowPosterior(HIDDEN, LATENT, n_flows=2, amortized=True).double())
    x = images(2)
    s = fisher_scores(model, x, x)
    z = s.z.detach()
    h = 1e-6

    def log_q(x_: Tensor) -> Tensor:  # at fixed z: the flow inverted numerically
        return model.encode(x_).log_prob(z)

    fd_x = torch.zeros_like(x)
    for j in range(DX):
        e = torch.zeros(DX, dtype=torch.float64)
        e[j] = h
        e = e.view(SHAPE)
        fd_x.view(2, DX)[:, j] = (log_q(x + e) - log_q(x - e)) / (2 * h)
    torch.testing.assert_close(s.posterior_x, fd_x, rtol=1e-5, atol=1e-7)
    q = model.encode(x)
    fd_z = torch.stack([(q.log_prob(z + h * e) - q.log_prob(z - h * e)) / (2 * h)
                        for e in torch.eye(LATENT, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(s.posterior_z, fd_z, rtol=1e-5, atol=1e-7)
    result = FisherDivergence()(model, x, x)
    result.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.posterior.parameters())


def test_conditional_model_holds_the_condition_fixed() -> None:
    condition = LabelCondition(3)
    model = LatentVariableModel(
        TinyEncoder(), GaussianPosterior(HIDDEN + 3, LATENT), TinyDecoder(latent_dim=LATENT + 3), Gaussian(0.7),
        prior=StandardNormal(LATENT), condition=condition,
    ).double()
    x = images(3)
    labels = torch.tensor([0, 2, 1])
    s = fisher_scores(model, x, x, labels)
    z = s.z.detach()
    for i in range(3):
        def log_q(x_: Tensor, i: int = i) -> Tensor:
            return model.encode(x_[None], labels[i : i + 1]).log_prob(z[i : i + 1])[0]

        torch.testing.assert_close(s.posterior_x[i], jacobian(log_q, x[i]), rtol=1e-10, atol=1e-12)
    FisherDivergence()(model, x, x, labels).loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_several_draws_average_per_image_terms() -> None:
    model = tiny_model("gaussian")
    x = images(3)
    torch.manual_seed(5)
    result = FisherDivergence(n_samples=4)(model, x, x)
    torch.manual_seed(5)
    s = fisher_scores(model, x, x, n_samples=4)
    per_draw = FisherDivergence.per_draw_terms(s)["fisher_z"].view(4, 3)
    torch.testing.assert_close(result.terms["fisher_z"], per_draw.mean(0))
    assert s.z.shape == (12, LATENT) and result.terms["fisher_z"].shape == (3,)


def test_under_no_grad_the_loss_is_computed_and_detached() -> None:
    model = tiny_model("gaussian")
    x = images()
    torch.manual_seed(0)
    with_grad = FisherDivergence()(model, x, x).loss
    torch.manual_seed(0)
    with torch.no_grad():
        without = FisherDivergence()(model, x, x).loss
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach())


def test_bad_settings_and_models_are_refused() -> None:
    with pytest.raises(ValueError, match="n_samples"):
        FisherDivergence(n_samples=0)
    ae = vr.autoencoder(likelihood="gaussian")
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="needs a model with a prior"):
        FisherDivergence()(ae, x, x)
    with pytest.raises(ValueError, match="same shape"):
        FisherDivergence()(vr.variational_autoencoder(likelihood="gaussian"), x, x[:1])


def test_trainer_trains_a_fisher_autoencoder() -> None:
    torch.manual_seed(0)
    model = vr.variational_autoencoder(latent_dim=4, hidden=(32,), likelihood="gaussian", link="sigmoid")
    data = torch.rand(64, 1, 28, 28)
    trainer = vr.Trainer(model, FisherDivergence(), vr.GaussianNoise(0.1), epochs=3, batch_size=16, lr=1e-3,
                         progress=False)
    history = trainer.fit(data, data[:16])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert all(math.isfinite(v) for v in history["val_loss"])
    assert {"val_fisher_z", "val_score_qx", "val_score_px", "val_laplacian"} <= set(history.keys())


def test_continuous_bernoulli_closed_form_equals_autograd() -> None:
    from vaerepair.distributions import ContinuousBernoulli

    model = LatentVariableModel(TinyEncoder(), GaussianPosterior(HIDDEN, LATENT), TinyDecoder(), ContinuousBernoulli(),
                                prior=StandardNormal(LATENT)).double()
    x = images(3)
    torch.manual_seed(2)
    auto = fisher_scores(model, x, x, closed_form=False)
    torch.manual_seed(2)
    closed = fisher_scores(model, x, x, closed_form=True)
    for name, a, c in zip(auto._fields, auto, closed, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12, msg=name)


def test_the_default_takes_the_closed_forms_where_the_likelihood_has_them() -> None:
    model = LatentVariableModel(TinyEncoder(), GaussianPosterior(HIDDEN, LATENT), TinyDecoder(), Gaussian(0.7),
                                prior=StandardNormal(LATENT)).double()
    x = images(3)
    results = {}
    for mode in (None, True, False):
        torch.manual_seed(2)
        results[mode] = FisherDivergence(closed_form=mode)(model, x, x)
    # the default is the closed-form path (bit for bit) and equals autograd to rounding
    assert torch.equal(results[None].loss, results[True].loss)
    torch.testing.assert_close(results[None].loss, results[False].loss, rtol=1e-10, atol=0)
    grads = {}
    for mode in (None, False):
        torch.manual_seed(2)
        grads[mode] = torch.autograd.grad(FisherDivergence(closed_form=mode)(model, x, x).loss,
                                          list(model.parameters()))
    for a, b in zip(grads[None], grads[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_closed_form_without_the_closed_forms_is_a_clear_error() -> None:
    class PlainGaussian(Gaussian):
        def forward(self, params):
            image = super().forward(params)
            return type("Bare", (), {"log_prob": image.log_prob, "mean": image.mean})()

    model = LatentVariableModel(TinyEncoder(), GaussianPosterior(HIDDEN, LATENT), TinyDecoder(), PlainGaussian(0.7),
                                prior=StandardNormal(LATENT)).double()
    x = images()
    with pytest.raises(TypeError, match="closed_form=True needs.*x_score, x_laplacian, param_score"):
        FisherDivergence(closed_form=True)(model, x, x)
    assert torch.isfinite(FisherDivergence()(model, x, x).loss)


class BatchCentering(nn.Module):
    """A layer that mixes the batch without being a BatchNorm: features minus their batch mean."""

    def forward(self, h: Tensor) -> Tensor:
        return h - h.mean(dim=0, keepdim=True)


def test_any_layer_that_mixes_the_batch_is_refused_by_the_probe() -> None:
    from vaerepair.objectives.fisher import couples_batch

    x = images(4)
    mixing = tiny_model("gaussian", norm=BatchCentering())
    assert batch_coupling_layers(mixing) == []  # not a BatchNorm: the class test cannot see it
    assert couples_batch(mixing, x)
    with pytest.raises(ValueError, match="changing one image of a batch changed the model's output for another"):
        FisherDivergence()(mixing, x, x)
    dropout = tiny_model("gaussian", norm=nn.Dropout(0.3))  # random, but per image
    assert not couples_batch(dropout, x)
    FisherDivergence()(dropout, x, x)
    frozen = tiny_model("gaussian", norm=nn.BatchNorm1d(HIDDEN)).eval()
    before = frozen.encoder.net[2].running_mean.clone()
    assert couples_batch(frozen.train(), x)  # train-mode BatchNorm couples ...
    torch.testing.assert_close(frozen.encoder.net[2].running_mean, before)  # ... and the probe moved no statistic
    assert not couples_batch(frozen.eval(), x)
