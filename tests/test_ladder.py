"""The latent path and the ladder VAE: KLs against torch.distributions, bounds against an exact log p(x),
reproducible top-down sampling, tiling, checkpoints, and the objectives on paths."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import vaerepair as vr
from vaerepair.distributions import DiagonalGaussian, StandardNormal
from vaerepair.distributions.kl import kl_divergence as registry_kl
from vaerepair.distributions.kl import register_kl
from vaerepair.models import LadderSpec, build, latent_path
from vaerepair.objectives.iwae import log_weights
from vaerepair.testing import check_bound, check_objective, linear_ladder, small_ladder


def _ladder(seed: int = 0, **kw) -> vr.LadderVAE:
    torch.manual_seed(seed)
    kw.setdefault("widths", (4, 6))
    kw.setdefault("latent_channels", 2)
    return vr.ladder_vae(sigma=0.3, **kw)


def test_the_kl_registry_matches_torch_distributions_and_falls_back_to_none() -> None:
    g = torch.Generator().manual_seed(0)
    loc, scale = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.rand(3, 4, generator=g).double() + 0.2
    loc2, scale2 = torch.randn(3, 4, generator=g).double(), torch.rand(3, 4, generator=g).double() + 0.2
    q, p = DiagonalGaussian(loc, scale), DiagonalGaussian(loc2, scale2)
    oracle = kl_divergence(Independent(Normal(loc, scale), 1), Independent(Normal(loc2, scale2), 1))
    torch.testing.assert_close(registry_kl(q, p), oracle)
    standard = kl_divergence(Independent(Normal(loc, scale), 1), Independent(Normal(0 * loc, 1 + 0 * scale), 1))
    torch.testing.assert_close(registry_kl(q, StandardNormal(4)), standard)
    assert registry_kl(object(), p) is None

    class Mine(DiagonalGaussian):
        pass

    @register_kl(Mine, DiagonalGaussian)
    def _rule(a, b):  # the most specific registered pair wins
        return torch.zeros(3)

    try:
        assert torch.equal(registry_kl(Mine(loc, scale), p), torch.zeros(3))
    finally:
        from vaerepair.distributions.kl import KL_RULES

        del KL_RULES[(Mine, DiagonalGaussian)]
    with pytest.raises(TypeError, match="two classes"):
        register_kl("Mine", DiagonalGaussian)  # type: ignore[arg-type]


def test_every_ladder_level_kl_is_the_closed_form_of_torch_distributions() -> None:
    model = _ladder().double()
    x = torch.rand(3, 1, 12, 10, dtype=torch.float64)
    path = model.path(x, n_samples=2)
    assert len(path.levels) == 2 and [lvl.z.shape for lvl in path.levels] == [(2, 3, 2, 3, 3), (2, 3, 2, 6, 6)]
    full = _ladder(full_resolution=True).path(x.float())
    assert [lvl.z.shape for lvl in full.levels] == [(3, 2, 6, 5), (3, 2, 12, 10)]  # the finest at full size
    for level in path.levels:
        q = Independent(Normal(level.q.loc, level.q.scale), 3)
        p = Independent(Normal(level.p.loc, level.p.scale), 3)
        assert level.kl.shape == (2, 3)
        torch.testing.assert_close(level.kl, kl_divergence(q, p))
        torch.testing.assert_close(level.log_q, q.log_prob(level.z))
        torch.testing.assert_close(level.log_p, p.log_prob(level.z))


def test_on_an_exact_posterior_every_importance_weight_is_log_p_x() -> None:
    model = linear_ladder(n=3, d1=1, d2=1, exact_posterior=True)
    x = torch.randn(6, 1, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = model.log_marginal(x)
    torch.testing.assert_close(log_weights(model, x, x, 9), exact.expand(9, 6))
    mc = vr.ELBO(kl="mc")(model, x, x).terms["elbo"]  # the per-draw bound is exact too
    torch.testing.assert_close(mc, exact)
    analytic = vr.ELBO(n_samples=20000)(model, x, x).terms["elbo"]
    torch.testing.assert_close(analytic, exact, atol=0.02, rtol=0)


def test_elbo_below_iwae_below_log_p_x_and_iwae_tends_to_log_p_x() -> None:
    model = linear_ladder(n=3, d1=1, d2=1, exact_posterior=True)
    with torch.no_grad():  # move the posterior away from the true one
        for p in (model.C, model.F, model.G):
            p.add_(0.3)
        model.c.sub_(0.2)
    x = torch.randn(400, 1, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    exact = model.log_marginal(x).detach()
    torch.manual_seed(0)
    with torch.no_grad():
        elbo_gap = float((exact - vr.ELBO(n_samples=100)(model, x, x).terms["elbo"]).mean())
    gaps = [float((exact + vr.iwae_nll(model, x, k=k, chunk=1000, batch_size=400)).mean()) for k in (1, 10, 100, 1000)]
    assert elbo_gap > 1.0  # the posterior is wrong: the ELBO is well below log p(x)
    assert abs(gaps[0] - elbo_gap) < 0.2  # IWAE_1 is the ELBO
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] > 0, gaps  # ELBO <= IWAE_k <= log p(x), tighter as k grows
    assert gaps[3] < 0.15 * gaps[0], gaps


def test_the_objectives_contracts_hold_on_a_ladder() -> None:
    factories = [lambda dt: small_ladder("gaussian", dtype=dt), lambda dt: small_ladder("bernoulli", dtype=dt)]
    check_objective(vr.ELBO(), models=factories)
    check_objective(vr.ELBO(free_bits=0.01), models=factories)
    check_objective(vr.IWAE(k=3), models=factories)
    check_objective(vr.ELBO(), models=factories[:1], target="noisy")
    for exact in (True, False):
        check_bound(vr.IWAE(k=3), model=linear_ladder(n=3, d1=1, d2=1, exact_posterior=exact))
        check_bound(vr.ELBO(), model=linear_ladder(n=3, d1=1, d2=1, exact_posterior=exact))


def test_free_bits_clamp_each_level_in_the_loss_and_the_terms_report_the_true_kl() -> None:
    model = _ladder()
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(1)
    plain = vr.ELBO()(model, x, x)
    torch.manual_seed(1)
    bits = 0.5
    clamped = vr.ELBO(free_bits=bits)(model, x, x)
    assert set(plain.terms) == {"recon", "kl", "elbo", "kl_0", "kl_1"}
    torch.testing.assert_close(plain.terms["kl"], plain.terms["kl_0"] + plain.terms["kl_1"])
    torch.testing.assert_close(clamped.terms["kl"], plain.terms["kl"])
    sizes = [2 * 2 * 2, 2 * 4 * 4]  # elements per image at each level (8x8 images: codes 2x2 and 4x4)
    expected = plain.terms["recon"] + sum(torch.clamp(plain.terms[f"kl_{i}"], min=bits * n) for i, n in
                                          enumerate(sizes))
    torch.testing.assert_close(clamped.loss, expected.mean())
    assert clamped.loss > plain.loss  # the new levels' KL starts near 0, under the floor
    with pytest.raises(ValueError, match="free_bits must be finite and >= 0"):
        vr.ELBO(free_bits=-1)


def test_top_down_sampling_is_reproducible_with_a_generator_and_holds_given_levels() -> None:
    model = _ladder().eval()
    x = torch.rand(2, 1, 12, 12)

    def draws(seed: int) -> torch.Tensor:
        return model.sample_repairs(x, 3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draws(0), draws(0)) and not torch.equal(draws(0), draws(1))
    assert torch.equal(model.sample(2, size=(12, 12), generator=torch.Generator().manual_seed(4)),
                       model.sample(2, size=(12, 12), generator=torch.Generator().manual_seed(4)))
    with torch.no_grad():
        first = model.path(x, n_samples=2, generator=torch.Generator().manual_seed(0))
        held = model.path(x, n_samples=2, latents=[first.levels[0].z, None],
                          generator=torch.Generator().manual_seed(9))
        again = model.path(x, n_samples=2, latents=first.latents)
    assert torch.equal(held.levels[0].z, first.levels[0].z)  # the top level held
    assert not torch.equal(held.levels[1].z, first.levels[1].z)  # the fine one drawn again
    torch.testing.assert_close(again.likelihood.mean, first.likelihood.mean)  # given latents: the same path
    torch.testing.assert_close(again.log_prior_ratio(), first.log_prior_ratio())
    with pytest.raises(ValueError, match="2 latent levels; got latents for 1"):
        model.path(x, latents=[None])
    with pytest.raises(ValueError, match=r"latents\[0\] \(level 0, top first\) must have shape \(2, 2, 2, 3, 3\)"):
        model.path(x, n_samples=2, latents=[torch.zeros(2, 2, 5, 5), None])
    with pytest.raises(ValueError, match=r"latents\[1\] holds NaN"):
        model.path(x, latents=[None, torch.full((2, 2, 6, 6), math.nan)])
    with pytest.raises(TypeError, match="latents must be a list of 2 tensors"):
        model.path(x, latents=first.levels[0].z)
    with pytest.raises(ValueError, match="pass size"):
        model.sample(2)
    with pytest.raises(TypeError, match=r"size must be a pair \(H, W\)"):
        model.sample(2, size=(8,))
    with pytest.raises(ValueError, match="size's H must be an integer >= 1, got 0"):
        model.sample(2, size=(0, 8))


@pytest.mark.parametrize("full", [False, True])
def test_ladder_repair_mean_std_and_a_tiled_repair_equal_to_the_untiled_one(full: bool) -> None:
    model = _ladder(widths=(3, 3), latent_channels=1, blocks=0, full_resolution=full).eval()
    x = torch.rand(1, 1, 260, 250)
    radius = model.receptive_radius
    assert 4 * radius + 32 < 160
    whole = model.repair(x, n_samples=0)  # every level at its posterior mean: deterministic
    torch.testing.assert_close(model.repair(x, tile=160, n_samples=0), whole, atol=1e-5, rtol=1e-5)
    mean, std = model.repair(x[..., :20, :20], n_samples=8, return_std=True,
                             generator=torch.Generator().manual_seed(0))
    assert mean.shape == std.shape == (1, 1, 20, 20) and bool((std > 0).all())
    samples = model.sample_repairs(x[..., :20, :20], 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mean[0], samples.mean(0)[0], atol=1e-5, rtol=1e-5)  # the same 8 draws
    torch.testing.assert_close(std[0], samples.std(0)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("full", [False, True])
def test_the_receptive_radius_bounds_the_true_dependence(full: bool) -> None:
    model = _ladder(widths=(3, 3), latent_channels=1, blocks=1, full_resolution=full).double()
    assert model.multiple == (2 if full else 4)
    x = torch.rand(1, 1, 200, 200, dtype=torch.float64)
    base = model.reconstruct(x)
    y = x.clone()
    y[0, 0, 100, 100] += 1.0
    changed = (model.reconstruct(y) - base).abs()[0, 0] > 1e-12
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = int(max((rows - 100).abs().max(), (cols - 100).abs().max()))
    assert 0 < reach <= model.receptive_radius


def test_a_ladder_trains_resumes_and_reloads_from_its_checkpoint(tmp_path: Path) -> None:
    model = _ladder(repair_samples=4)
    data = torch.rand(40, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    noisy = vr.data.NoisyImages(data)
    trainer = vr.Trainer(model, vr.ELBO(free_bits=0.01), None, epochs=2, batch_size=8, progress=False,
                         checkpoint_dir=tmp_path)
    history = trainer.fit(noisy)
    assert {"train_kl_0", "train_kl_1"} <= set(history.keys())
    loaded = vr.load_model(tmp_path / "last.pt")
    assert isinstance(loaded, vr.LadderVAE) and loaded.repair_samples == 4
    assert build(loaded.spec).n_levels == 2
    x = data[:3]
    torch.testing.assert_close(loaded.repair(x, n_samples=0), model.eval().repair(x, n_samples=0))


def test_ladder_spec_checks_and_round_trip() -> None:
    spec = LadderSpec(widths=(8, 8, 8), latent_channels=(4, 2, 1), likelihood=vr.models.LikelihoodSpec("gaussian", 0.2))
    assert LadderSpec.from_dict(spec.to_dict()) == spec
    assert build(spec.to_dict()).latent_channels == (4, 2, 1)
    with pytest.raises(ValueError, match="latent_channels has 2 entries but widths 3 levels"):
        LadderSpec(widths=(8, 8, 8), latent_channels=(4, 2))
    with pytest.raises(ValueError, match="unknown fields"):
        LadderSpec.from_dict({**spec.to_dict(), "hidden": [3]})
    with pytest.raises(TypeError, match="widths must be a non-empty sequence"):
        LadderSpec(widths=())
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        vr.ladder_vae(sigma=0)
    with pytest.raises(ValueError, match="unknown likelihood"):
        vr.ladder_vae(likelihood="laplace")
    with pytest.raises(ValueError, match="each with its own spec: LadderSpec"):
        vr.models.ModelSpec(kind="ladder")


def test_fisher_on_a_spatial_latent_matches_an_autograd_oracle_and_refuses_a_ladder() -> None:
    torch.manual_seed(0)
    model = vr.noise_model_vae(sigma=0.5, widths=(4, 8), latent_channels=2).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    scores = vr.objectives.fisher_scores(model, x, x, n_samples=1, generator=torch.Generator().manual_seed(0))
    terms = vr.FisherDivergence.per_draw_terms(scores)  # crashed with a reshape error before
    z = scores.z.detach()

    def joint(zz: torch.Tensor) -> torch.Tensor:  # log q(z|x) - log p(x|z) - log p(z) at fixed x
        q = model.encode(x)
        return (q.log_prob(zz) - model.decode(zz).log_prob(x) - model.prior.log_prob(zz)).sum()

    grad = torch.autograd.functional.jacobian(joint, z)
    torch.testing.assert_close(terms["fisher_z"], 0.5 * grad.square().flatten(1).sum(1))
    result = vr.FisherDivergence()(model, x, x)
    assert result.terms["fisher_z"].shape == (2,) and bool(torch.isfinite(result.loss))
    with pytest.raises(ValueError, match="one latent level; this one has 2"):
        vr.FisherDivergence()(_ladder(), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))


def test_users_single_latent_models_without_a_path_still_get_one() -> None:
    class Plain(torch.nn.Module):  # encode/decode/prior only, as users wrote models before the path
        def __init__(self) -> None:
            super().__init__()
            self.inner = vr.variational_autoencoder((1, 6, 6), latent_dim=2, hidden=(8,))
            self.prior = self.inner.prior

        def encode(self, x, condition=None):
            return self.inner.encode(x, condition)

        def decode(self, z, condition=None):
            return self.inner.decode(z, condition)

    model, x = Plain(), torch.rand(3, 1, 6, 6)
    path = latent_path(model, x, n_samples=2)
    assert len(path.levels) == 1 and path.levels[0].z.shape == (2, 3, 2)
    torch.manual_seed(0)
    a = vr.ELBO()(model, x, x).loss
    torch.manual_seed(0)
    b = vr.ELBO()(model.inner, x, x).loss
    torch.testing.assert_close(a, b)
    assert math.isfinite(float(vr.IWAE(4)(model, x, x).loss.detach()))


@pytest.mark.parametrize("name", ["vae", "flow", "noise"])
def test_a_checkpoint_written_before_the_latent_path_still_loads_and_repairs_the_same(name: str) -> None:
    folder = Path(__file__).parent / "data" / "checkpoints_eeac904"  # written by write.py there, at eeac904
    expected = torch.load(folder / "expected.pt", weights_only=True)
    model = vr.load_model(folder / f"{name}.pt")
    assert isinstance(model, vr.LatentVariableModel)
    torch.testing.assert_close(model.repair(expected["x"], n_samples=0), expected[name], rtol=1e-6, atol=1e-6)


def test_a_collapsed_level_is_named_in_a_warning_once() -> None:
    from types import SimpleNamespace

    from vaerepair.training.callbacks import TrainingHealth

    health, trainer = TrainingHealth(patience=2), SimpleNamespace(epoch=1)
    health.on_epoch_end(trainer, {"train_kl": 5.0, "train_kl_0": 4.97, "train_kl_1": 0.03})
    health.on_epoch_end(trainer, {"train_kl": 5.0, "train_kl_0": 0.01, "train_kl_1": 4.99})  # not in a row
    with pytest.warns(RuntimeWarning, match=r"latent level 1 \(top first\) has collapsed"):
        health.on_epoch_end(trainer, {"train_kl": 5.0, "train_kl_0": 4.97, "train_kl_1": 0.03})
        health.on_epoch_end(trainer, {"train_kl": 5.0, "train_kl_0": 4.97, "train_kl_1": 0.03})
    restored = TrainingHealth(patience=2)
    restored.load_state_dict(health.state_dict())
    restored.on_epoch_end(trainer, {"train_kl_0": 4.0, "train_kl_1": 0.0})  # warned once: silent now
    with pytest.warns(RuntimeWarning, match="the latent has collapsed"):  # a single-latent VAE
        for _ in range(2):
            health.on_epoch_end(trainer, {"train_kl": 0.001})


def test_training_with_a_crushing_kl_weight_warns_that_the_levels_collapsed() -> None:
    model = _ladder()
    data = vr.data.NoisyImages(torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    trainer = vr.Trainer(model, vr.ELBO(beta=1000.0), None, epochs=3, batch_size=8, progress=False, lr=1e-2)
    with pytest.warns(RuntimeWarning, match="has collapsed"):
        trainer.fit(data)


def test_interval_coverage_counts_the_targets_inside_the_central_interval() -> None:
    draws = torch.linspace(0, 1, 101).view(101, 1, 1, 1, 1).expand(101, 2, 1, 2, 2)  # quantiles 0.05 and 0.95
    target = torch.tensor([[0.5, 0.04], [0.96, 0.95]]).view(1, 1, 2, 2).expand(2, 1, 2, 2).clone()
    target[1] = 0.5
    torch.testing.assert_close(vr.metrics.interval_coverage(draws, target, 0.9, reduction="none"),
                               torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(vr.metrics.interval_coverage(draws, target, 0.99), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"samples must be draws of shape \(S, B, C, H, W\)"):
        vr.metrics.interval_coverage(draws[0], target)
    with pytest.raises(ValueError, match="level must be in"):
        vr.metrics.interval_coverage(draws, target, 1.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        vr.metrics.interval_coverage(draws[:1], target)


def test_the_closed_form_and_monte_carlo_ladder_kls_agree_in_expectation() -> None:
    model = _ladder().double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # away from q = p, where the lower levels' KL is 0
            p.add_(0.2 * torch.randn_like(p))
        torch.manual_seed(1)
        analytic = vr.ELBO(kl="analytic", n_samples=4000)(model, x, x).terms
        torch.manual_seed(1)  # the same draws: only the KL estimator differs
        mc = vr.ELBO(kl="mc", n_samples=4000)(model, x, x).terms
    torch.testing.assert_close(mc["recon"], analytic["recon"])
    for key in ("kl_0", "kl_1"):
        assert bool((analytic[key] > 0.5).all())
        torch.testing.assert_close(mc[key], analytic[key], rtol=0.05, atol=0.05)


def test_a_flow_level_log_q_matches_an_autograd_jacobian_oracle_and_its_inverse() -> None:
    from vaerepair.flows import ChannelFlowDistribution, planar_inverse, push_forward

    model = _ladder(seed=4, flows=3, latent_channels=3).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    path = model.path(x, n_samples=2)
    level = path.levels[1]
    q = level.q
    assert isinstance(q, ChannelFlowDistribution) and level.kl is None  # no closed form: Monte Carlo
    layers = q.layers
    loc, scale = q.base.loc.detach(), q.base.scale.detach()
    # invert each pixel's channel vector, then score it by hand: log N(z0) - log|det J(z0)|
    y_last = level.z.detach().movedim(-3, -1)
    for p in reversed(layers):
        y_last = planar_inverse(y_last, p)
    z0 = y_last.movedim(-1, -3)
    f = lambda v: push_forward(v, [type(p)(*(t.detach() for t in p)) for p in layers])[0]  # noqa: E731
    oracle = torch.zeros(level.z.shape[:2], dtype=torch.float64)
    for s in range(2):
        for b in range(2):
            total = Normal(loc[s, b], scale[s, b]).log_prob(z0[s, b]).sum()
            for i in range(z0.shape[-2]):
                for j in range(z0.shape[-1]):
                    jac = torch.autograd.functional.jacobian(f, z0[s, b, :, i, j])
                    total = total - torch.linalg.slogdet(jac)[1]
            oracle[s, b] = total
    torch.testing.assert_close(level.log_q.detach(), oracle)  # the draws' kept log q
    torch.testing.assert_close(q.log_prob(level.z.clone()).detach(), oracle)  # numerical inversion


def test_the_objectives_contracts_hold_on_a_ladder_with_flows_and_the_flows_train() -> None:
    check_objective(vr.ELBO(), models=[lambda dt: small_ladder("gaussian", dtype=dt, flows=2)])
    check_objective(vr.IWAE(k=3), models=[lambda dt: small_ladder("gaussian", dtype=dt, flows=2)])
    model = _ladder(flows=2)
    spec = LadderSpec.from_dict(model.spec)
    assert spec.flows == 2 and build(spec).flows == 2
    before = model.levels[0].flow.u.detach().clone()
    trainer = vr.Trainer(model, vr.ELBO(), None, epochs=1, batch_size=8, progress=False)
    history = trainer.fit(vr.data.NoisyImages(torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))))
    assert math.isfinite(history["train_loss"][-1]) and not torch.equal(model.levels[0].flow.u, before)


def test_sample_repairs_draws_in_chunks_that_bound_the_memory_and_match_repair(monkeypatch) -> None:
    """Many samples of a batch used to go through the top-down pass at once (a 100-sample calibration of 50
    images held 5000 images' activations); they now go in chunks of at most TILE_PIXELS_IN_FLIGHT pixels."""
    import vaerepair.models.path as path_module

    model = _ladder().eval()
    x = torch.rand(3, 1, 8, 8)
    monkeypatch.setattr(path_module, "TILE_PIXELS_IN_FLIGHT", 2 * x.numel())  # two draws of the batch at once
    seen: list[int] = []
    top_down = model.top_down

    def spy(features, n_samples=None, **kw):
        seen.append(n_samples)
        return top_down(features, n_samples, **kw)

    monkeypatch.setattr(model, "top_down", spy)
    draws = model.sample_repairs(x, 5, generator=torch.Generator().manual_seed(0))
    assert seen == [2, 2, 1] and draws.shape == (5, 3, 1, 8, 8)
    mean = model.repair(x, n_samples=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.mean(0), mean)
