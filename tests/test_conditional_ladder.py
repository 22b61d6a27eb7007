"""The conditional ladder VAE: its posterior sees the clean target, its prior only the condition; its repairs
are drawn from the prior given the condition; the objectives, checks, spec and command line that go with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import vaerepair as vr
from vaerepair.models import LadderSpec, build
from vaerepair.objectives import SURE
from vaerepair.objectives.iwae import log_weights


def _model(seed: int = 0, dtype: torch.dtype = torch.float64, **kw) -> vr.LadderVAE:
    """A small conditional ladder whose posteriors already differ from its priors (as after training: they start
    equal, the posterior heads at zero)."""
    torch.manual_seed(seed)
    kw.setdefault("widths", (4, 6))
    kw.setdefault("latent_channels", 2)
    model = vr.ladder_vae(sigma=0.3, condition="image", **kw)
    for level in model.levels:
        torch.nn.init.normal_(level.q_head.weight, std=0.1)
    return model.to(dtype)


def _batch(seed: int = 0, b: int = 3, size: tuple[int, int] = (12, 10)):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(b, 1, *size, generator=g, dtype=torch.float64)
    out = vr.corruptions.BlockErasure(4)(clean, generator=g, return_mask=True)
    return clean, out.images, out.mask


def test_the_elbo_gives_the_posterior_the_clean_target_and_the_prior_only_the_condition() -> None:
    model = _model()
    clean, corrupted, mask = _batch()
    c = model.condition.prepare(corrupted, mask)

    def loss(x_input, x_target):
        torch.manual_seed(5)
        return vr.ELBO()(model, x_input, x_target, c)

    base = loss(corrupted, clean)
    # The posterior sees x_target: another x_input (same condition) changes nothing ...
    torch.testing.assert_close(loss(torch.rand_like(corrupted), clean).loss, base.loss, rtol=0, atol=0)
    # ... and the ELBO is the one of the path of the clean images (posterior q(z | x, c)).
    torch.manual_seed(5)
    path = model.path(clean, c, 1)
    expected = -path.likelihood.log_prob(clean).mean(0) + sum(level.kl.mean(0) for level in path.levels)
    torch.testing.assert_close(base.terms["recon"] + base.terms["kl"], expected)
    # The prior of every level, given the same latents above, does not depend on the clean image.
    other = clean.clone()
    other[mask] = 1 - other[mask]
    again = model.path(other, c, 1, latents=path.latents)
    for a, b in zip(path.levels, again.levels, strict=True):
        torch.testing.assert_close(a.p.loc, b.p.loc, rtol=0, atol=0)
        torch.testing.assert_close(a.p.scale, b.p.scale, rtol=0, atol=0)
        assert not torch.equal(a.q.loc, b.q.loc)  # while the posterior does
    # IWAE's weights use the same posterior: another x_input changes none of them.
    torch.manual_seed(1)
    w = log_weights(model, corrupted, clean, 4, c)
    torch.manual_seed(1)
    torch.testing.assert_close(log_weights(model, torch.zeros_like(corrupted), clean, 4, c), w, rtol=0, atol=0)


def test_each_level_kl_is_the_closed_form_of_torch_distributions() -> None:
    model = _model(seed=2)
    clean, corrupted, mask = _batch(1)
    path = model.path(clean, model.condition.prepare(corrupted, mask), n_samples=2)
    assert path.levels[0].q is not None and path.levels[0].p is not None  # the top prior is p(z_L | c)
    for level in path.levels:
        oracle = kl_divergence(Independent(Normal(level.q.loc, level.q.scale), 3),
                               Independent(Normal(level.p.loc, level.p.scale), 3))
        torch.testing.assert_close(level.kl, oracle)


def test_repairs_are_drawn_from_the_prior_given_the_condition_and_differ_in_the_hole() -> None:
    model = _model(seed=3).eval()
    clean, corrupted, mask = _batch(2)
    c = model.condition.prepare(corrupted, mask)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    mean, std = model.repair(corrupted, c, n_samples=8, return_std=True, generator=g())
    # x gives only the batch and the size: the repair is a function of the condition
    torch.testing.assert_close(model.repair(torch.rand_like(corrupted), c, n_samples=8, generator=g()), mean,
                               rtol=0, atol=0)
    draws = model.sample_repairs(corrupted, 8, c, generator=g())
    torch.testing.assert_close(draws.mean(0), mean)
    torch.testing.assert_close(draws.std(0), std)
    assert float(std.min()) >= 0 and float(std.max()) > 0
    # reconstruct: every level at its prior mean given the condition, the same as repair with 0 samples
    torch.testing.assert_close(model.reconstruct(corrupted, c), model.repair(corrupted, c, n_samples=0))
    # sample(n, condition): the completions of each condition, reproducible with a generator
    s = model.sample(3, c, generator=g())
    assert s.shape == clean.shape
    torch.testing.assert_close(model.sample(3, c, generator=g()), s, rtol=0, atol=0)


def test_the_conditional_ladder_refuses_what_it_cannot_take() -> None:
    model = _model()
    clean, corrupted, mask = _batch()
    c = model.condition.prepare(corrupted, mask)
    with pytest.raises(ValueError, match="needs condition=model.condition.prepare"):
        model.repair(corrupted)
    with pytest.raises(ValueError, match="must have shape \\(B, 2, H, W\\)"):
        model.repair(corrupted, corrupted)
    with pytest.raises(ValueError, match="one map per image, of the images' size"):
        model.repair(corrupted, c[:, :, :8])
    with pytest.raises(ValueError, match="condition must be a tensor with one row per image \\(3\\), got list"):
        model.repair(corrupted, [c])  # used to fail deep: 'list' object has no attribute 'shape'
    with pytest.raises(ValueError, match="mask must have the images' shape"):
        model.condition.prepare(corrupted, mask[:2])
    with pytest.raises(ValueError, match="samples given condition="):
        model.sample(2)
    with pytest.raises(ValueError, match="condition must have n=2 rows"):
        model.sample(2, c)
    with pytest.raises(ValueError, match="tiled repair takes no condition"):
        model.repair(corrupted, c, tile=8)
    with pytest.raises(ValueError, match="its repairs draw from the prior given the condition"):
        vr.Reconstruction()(model, corrupted, clean, c)
    with pytest.raises(ValueError, match="its repairs draw from the prior given the condition"):
        SURE(0.1)(model, corrupted, corrupted, c)
    with pytest.raises(ValueError, match="condition is None or 'image'"):
        vr.ladder_vae(condition="label")
    with pytest.raises(ValueError, match="not conditional, so condition must be None"):
        vr.ladder_vae(widths=(4,), latent_channels=1).repair(corrupted.float(), c.float())


def test_the_spec_round_trips_and_old_ladder_specs_load_unconditional() -> None:
    spec = LadderSpec(widths=(4, 4), latent_channels=(2, 2), condition="image")
    assert LadderSpec.from_dict(spec.to_dict()) == spec
    model = build(spec.to_dict())
    assert model.conditional and model.posterior_sees_target
    old = {k: v for k, v in LadderSpec(widths=(4, 4), latent_channels=(2, 2)).to_dict().items() if k != "condition"}
    assert not build(old).conditional  # a checkpoint written before the field existed
    with pytest.raises(ValueError, match="condition is None or 'image'"):
        LadderSpec(condition="mask")


def test_a_conditional_ladder_learns_to_fill_holes_and_its_checkpoint_reloads(tmp_path: Path) -> None:
    """A short fit on stripes whose phase the visible pixels give: the repair of the hole beats the zero fill."""
    g = torch.Generator().manual_seed(0)
    phase = torch.randint(0, 4, (256,), generator=g)
    cols = torch.arange(16)
    clean = ((cols[None, :] + phase[:, None]) % 4 < 2).float()[:, None, None, :].expand(256, 1, 16, 16).contiguous()
    model = _model(dtype=torch.float32, widths=(8, 8), latent_channels=2)
    trainer = vr.Trainer(model, vr.ELBO(), "block:6", epochs=6, batch_size=32, lr=3e-3, progress=False,
                         checkpoint_dir=tmp_path, seed=0)
    history = trainer.fit(clean[:224], clean[224:])
    assert {"train_kl_0", "train_kl_1", "val_psnr_missing"} <= set(history.keys())
    assert history["val_psnr_missing"][-1] > history["val_psnr_missing_input"][-1] + 3
    loaded = vr.load_model(tmp_path / "last.pt")
    assert isinstance(loaded, vr.LadderVAE) and loaded.conditional
    out = vr.corruptions.BlockErasure(6)(clean[224:], generator=torch.Generator().manual_seed(1), return_mask=True)
    c = loaded.condition.prepare(out.images, out.mask)
    torch.testing.assert_close(loaded.repair(out.images, c, n_samples=0), model.eval().repair(out.images, c,
                                                                                               n_samples=0))


def test_interval_coverage_inside_a_mask_matches_a_count_by_hand() -> None:
    g = torch.Generator().manual_seed(0)
    draws, target = torch.randn(50, 2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, :2] = True
    lo, hi = torch.quantile(draws, 0.05, dim=0), torch.quantile(draws, 0.95, dim=0)
    inside = (target >= lo) & (target <= hi)
    per_image = vr.metrics.interval_coverage(draws, target, 0.9, reduction="none", mask=mask)
    assert float(per_image[0]) == pytest.approx(float(inside[0][mask[0]].float().mean()))
    assert bool(per_image[1].isnan())  # no masked pixel: no coverage
    assert float(vr.metrics.interval_coverage(draws, target, 0.9, mask=mask)) == pytest.approx(float(per_image[0]))
    with pytest.raises(ValueError, match="mask must be a boolean tensor"):
        vr.metrics.interval_coverage(draws, target, mask=mask.float())
    with pytest.raises(ValueError, match="no True pixel"):
        vr.metrics.interval_coverage(draws, target, mask=torch.zeros_like(mask))


def test_the_cli_trains_a_conditional_ladder_with_flows_and_draws_its_completions(mnist_root: Path, tmp_path: Path,
                                                                         capsys) -> None:
    from vaerepair.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist", "--root", str(mnist_root), "--kind", "ladder", "--condition",
                 "image", "--corruption", "block:12", "--epochs", "1", "--hidden", "4,4", "--latent-dim", "2",
                 "--flows", "1", "--out", str(out)]) == 0
    assert {"samples.png", "uncertainty.png", "grid.png"} <= {p.name for p in out.iterdir()}
    model = vr.load_model(out / "best.pt")
    assert model.conditional and model.flows == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["condition"] == "image" and "psnr_missing" in metrics["test"]
    assert main(["train", "--dataset", "mnist", "--root", str(mnist_root), "--kind", "ladder", "--condition",
                 "label", "--epochs", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "--kind ladder takes --condition image" in capsys.readouterr().err


def test_predictive_repairs_add_the_likelihood_noise_to_the_decoded_draws() -> None:
    model = _model(seed=6).eval()
    clean, corrupted, mask = _batch(3, b=64, size=(8, 8))
    c = model.condition.prepare(corrupted, mask)
    means = model.sample_repairs(corrupted, 50, c, generator=torch.Generator().manual_seed(0))
    draws = model.sample_repairs(corrupted, 50, c, generator=torch.Generator().manual_seed(0), predictive=True)
    residual = draws - means  # the same latents (the same generator stream before each level's noise) ...
    # ... so the residual is the likelihood's own N(0, sigma^2) noise: its std is the model's sigma (0.3)
    assert abs(float(residual.std()) - 0.3) < 0.01 and abs(float(residual.mean())) < 0.01
    with pytest.raises(TypeError, match="predictive must be True or False"):
        model.sample_repairs(corrupted, 2, c, predictive="yes")
    bernoulli = vr.ladder_vae(widths=(4,), latent_channels=1, likelihood="bernoulli")
    with pytest.raises(ValueError, match="has no sample\\(\\)"):
        bernoulli.sample_repairs(torch.rand(2, 1, 8, 8), 2, predictive=True)
