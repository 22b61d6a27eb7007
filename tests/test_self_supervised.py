"""Repair without clean images: Noise2Noise, blind-spot, SURE, the noise-model VAE, and the kit's risk check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import vaerepair as vr
from vaerepair import distributions as dist
from vaerepair.corruptions import GaussianNoise, PoissonGaussian
from vaerepair.data import NoisyImages, train_val_split
from vaerepair.models import LatentVariableModel, noise_model_vae
from vaerepair.objectives import SURE, BlindSpot, Noise2Noise, denoise
from vaerepair.testing import ContractError, check_objective, check_unbiased_risk, linear_gaussian_model

# --------------------------------------------------------------- SURE


class _Flat(nn.Module):
    """A linear map on flattened images (encoder: images -> features; decoder: codes -> images)."""

    def __init__(self, shape: tuple[int, int, int], width: int, encoder: bool) -> None:
        super().__init__()
        self.image_shape, self.encoder = shape, encoder
        n = math.prod(shape)
        self.net = nn.Linear(n, width) if encoder else nn.Linear(width, n)
        if encoder:
            self.out_features = width
        else:
            self.latent_dim = width

    def forward(self, v: Tensor) -> Tensor:
        return self.net(v.flatten(1)) if self.encoder else self.net(v).view(-1, *self.image_shape)


def _linear_denoiser(shape: tuple[int, int, int] = (1, 4, 4), width: int = 12) -> LatentVariableModel:
    """f(y) = A y + c with A, c from three random linear layers (float64)."""
    model = LatentVariableModel(_Flat(shape, width, True), dist.PointMassPosterior(width, width),
                                _Flat(shape, width, False), dist.Gaussian(1.0))
    return model.double()


def _affine_parts(model: LatentVariableModel, shape: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """A (n x n) and c (n) of the linear denoiser, by the Jacobian of f (an independent oracle)."""
    n = math.prod(shape)

    def f(v: Tensor) -> Tensor:
        return denoise(model, v.view(1, *shape)).flatten()

    a = torch.autograd.functional.jacobian(f, torch.zeros(n, dtype=torch.float64))
    return a, f(torch.zeros(n, dtype=torch.float64)).detach()


@pytest.mark.parametrize("divergence", ["fd", "autograd"])
def test_sure_is_the_true_mse_in_expectation_on_a_linear_denoiser(divergence: str) -> None:
    shape, sigma = (1, 4, 4), 0.3
    model = _linear_denoiser(shape)
    a, c = _affine_parts(model, shape)
    x = torch.rand(6, *shape, dtype=torch.float64)
    n = math.prod(shape)
    # E ||A y + c - x||^2 / n for y = x + sigma eps: the bias part plus sigma^2 ||A||_F^2
    residual = x.flatten(1) @ (a - torch.eye(n, dtype=torch.float64)).T + c
    true_mse = float((residual.square().sum(1) + sigma**2 * a.square().sum()).mean() / n)
    objective = SURE(sigma, divergence=divergence)
    g = torch.Generator().manual_seed(0)
    values = []
    for _ in range(2000):
        y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
        values.append(float(objective(model, y, y).loss.detach()))
    v = torch.tensor(values)
    se = float(v.std() / math.sqrt(len(v)))
    assert abs(float(v.mean()) - true_mse) < 4 * se, (float(v.mean()), true_mse, se)
    # and its divergence probe is unbiased for the trace of A (Hutchinson)
    y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    divs = torch.stack([objective(model, y, y).terms["divergence"].detach() for _ in range(400)]) * n
    assert abs(float(divs.mean()) - float(torch.trace(a))) < 4 * float(divs.std()) / math.sqrt(divs.numel())


def test_sure_finite_difference_and_autograd_divergences_agree_on_a_nonlinear_net() -> None:
    model = vr.autoencoder(arch="unet", likelihood="gaussian", hidden=(8, 16), latent_dim=4,
                           image_shape=(1, None, None), activation="tanh").double()
    y = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    torch.manual_seed(5)
    fd = SURE(0.2, "fd")(model, y, y).terms["divergence"]
    torch.manual_seed(5)  # the same probe
    exact = SURE(0.2, "autograd")(model, y, y).terms["divergence"]
    assert torch.allclose(fd, exact, rtol=1e-3, atol=1e-6)


def test_sure_refuses_a_target_other_than_its_input() -> None:
    model = vr.autoencoder(likelihood="gaussian")
    y = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="target must be the input itself"):
        SURE(0.5)(model, y, y.clone())
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        SURE(0.0)
    with pytest.raises(ValueError, match="divergence must be"):
        SURE(0.5, divergence="exact")


# --------------------------------------------------------------- the kit's unbiasedness check


def test_check_unbiased_risk_passes_sure_and_noise2noise() -> None:
    report = check_unbiased_risk(SURE(0.3), GaussianNoise(0.3))
    assert report.ok and abs(report.numbers["z"]) < 4
    assert check_unbiased_risk(SURE(0.3, divergence="autograd"), GaussianNoise(0.3), n_draws=100).ok
    assert check_unbiased_risk(Noise2Noise(), GaussianNoise(0.3), constant=0.3**2, pairs=True).ok


class _SureWithoutDivergence(SURE):
    """A deliberately biased estimator: the divergence term dropped (it rewards the identity)."""

    def __call__(self, model, x_input, x_target, condition=None):  # type: ignore[no-untyped-def]
        mse = (denoise(model, x_input) - x_input).square().flatten(1).mean(1) - self.sigma**2
        return vr.ObjectiveResult(mse.mean(), {"sure": mse})


def test_check_unbiased_risk_fails_a_biased_estimator_with_the_numbers() -> None:
    with pytest.raises(ContractError, match=r"the estimator is biased: over 300 noise draws, .* \(z = "):
        check_unbiased_risk(_SureWithoutDivergence(0.3), GaussianNoise(0.3))
    # the noise-variance constant left out of Noise2Noise is a bias too
    report = check_unbiased_risk(Noise2Noise(), GaussianNoise(0.3), pairs=True, raise_on_failure=False)
    assert not report.ok and report.numbers["mean_difference"] == pytest.approx(0.09, rel=0.1)
    # SURE told the wrong sigma is biased
    assert not check_unbiased_risk(SURE(0.2), GaussianNoise(0.3), raise_on_failure=False).ok


# --------------------------------------------------------------- Noise2Noise


def test_noise2noise_refuses_the_input_as_its_target_and_scores_the_second_observation() -> None:
    model = vr.autoencoder(likelihood="gaussian")
    y1, y2 = torch.rand(2, 4, 1, 28, 28)
    with pytest.raises(ValueError, match="second, independent observation"):
        Noise2Noise()(model, y1, y1)
    result = Noise2Noise()(model, y1, y2)
    expected = (model.reconstruct(y1) - y2).square().flatten(1).mean(1)
    assert torch.allclose(result.terms["mse_target"], expected, atol=1e-6)


# --------------------------------------------------------------- blind spot


def _hidden_self_dependence(objective: BlindSpot, model: nn.Module | None, y: Tensor) -> tuple[Tensor, Tensor]:
    """d out_j / d y_j at every pixel (the Jacobian's diagonal) of y -> f(hide(y)) with one fixed mask, and the
    mask: a blind spot has 0 there."""
    torch.manual_seed(3)
    _, mask = objective.hide(y)

    def f(v: Tensor) -> Tensor:
        torch.manual_seed(3)  # the same mask and replacement draws
        hidden, _ = objective.hide(v.view_as(y))
        return (denoise(model, hidden) if model is not None else hidden).flatten()

    jac = torch.autograd.functional.jacobian(f, y.flatten().clone())
    return torch.diagonal(jac).view_as(y), mask.expand_as(y)


@pytest.mark.parametrize("replacement", ["neighbour", "local-mean", "median"])
def test_blind_spot_inputs_never_see_the_hidden_pixels_own_values(replacement: str) -> None:
    y = torch.rand(2, 2, 9, 11, dtype=torch.float64)
    objective = BlindSpot(spacing=3, replacement=replacement, radius=1)
    diag, mask = _hidden_self_dependence(objective, None, y)
    assert mask.any() and torch.all(diag[mask] == 0)
    assert torch.all(diag[~mask] == 1)  # the rest of the input is the observation itself
    # through a network too: the repair at a hidden pixel does not depend on that pixel
    model = vr.autoencoder(arch="unet", likelihood="gaussian", hidden=(4, 8), latent_dim=3,
                           image_shape=(2, None, None)).double()
    diag, mask = _hidden_self_dependence(objective, model, y)
    assert torch.all(diag[mask].abs() < 1e-12) and diag[~mask].abs().max() > 1e-6


class _LeakyLocalMean(BlindSpot):
    """A mutation: the hidden pixels are replaced by a 3x3 mean that includes the centre (its value leaks)."""

    def hide(self, y: Tensor) -> tuple[Tensor, Tensor]:
        _, mask = super().hide(y)
        blurred = torch.nn.functional.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=False)
        return torch.where(mask, blurred, y), mask


class _ReplicatePadded(BlindSpot):
    """A mutation: windows padded by copying the border (a border pixel's own value enters its window)."""

    def hide(self, y: Tensor) -> tuple[Tensor, Tensor]:
        _, mask = super().hide(y)
        padded = torch.nn.functional.pad(y, (1, 1, 1, 1), mode="replicate")
        ring = torch.nn.functional.unfold(padded, 3).view(y.shape[0], y.shape[1], 9, *y.shape[2:])
        mean = torch.cat([ring[:, :, :4], ring[:, :, 5:]], dim=2).mean(dim=2)
        return torch.where(mask, mean, y), mask


def test_the_self_dependence_test_catches_leaking_replacements() -> None:
    y = torch.rand(1, 1, 9, 9, dtype=torch.float64)
    diag, mask = _hidden_self_dependence(_LeakyLocalMean(3, "local-mean", radius=1), None, y)
    assert torch.all(diag[mask] > 0.1)
    torch.manual_seed(0)
    y = torch.rand(4, 1, 9, 9, dtype=torch.float64)
    diag, mask = _hidden_self_dependence(_ReplicatePadded(3, "local-mean", radius=1), None, y)
    border = torch.zeros_like(mask)
    border[..., 0, :] = border[..., -1, :] = border[..., :, 0] = border[..., :, -1] = True
    assert (diag[mask & border] > 0).any() and torch.all(diag[mask & ~border] == 0)


def test_blind_spot_masks_one_pixel_per_cell_reproducibly_and_score_only_hidden_pixels() -> None:
    objective = BlindSpot(spacing=4)
    y = torch.rand(3, 1, 16, 20)
    torch.manual_seed(1)
    _, mask = objective.hide(y)
    cells = mask.view(3, 4, 4, 5, 4).sum(dim=(2, 4))
    assert torch.all(cells == 1)  # exactly one hidden location per 4x4 cell
    torch.manual_seed(1)
    assert torch.equal(objective.hide(y)[1], mask)
    assert not torch.equal(objective.hide(y)[1], mask)  # a new batch, a new mask
    # the loss reads the target at hidden pixels only
    model = vr.autoencoder(arch="unet", likelihood="gaussian", hidden=(4, 8), latent_dim=3,
                           image_shape=(1, None, None))
    target = torch.rand_like(y)
    torch.manual_seed(2)
    loss = objective(model, y, target).loss
    torch.manual_seed(2)
    _, hidden = objective.hide(y)
    changed = torch.where(hidden, target, target + 1.0)
    torch.manual_seed(2)
    assert torch.equal(objective(model, y, changed).loss, loss)
    # cells cut by the border: the mask stays inside the image
    torch.manual_seed(0)
    assert objective.hide(torch.rand(2, 1, 5, 7))[1].shape == (2, 1, 5, 7)
    with pytest.raises(ValueError, match="replacement must be one of"):
        BlindSpot(replacement="zero")
    with pytest.raises(ValueError, match="spacing must be an integer >= 2"):
        BlindSpot(spacing=1)


# --------------------------------------------------------------- the noise-model VAE


def test_noise_model_vae_mmse_and_std_match_the_closed_form_posterior() -> None:
    sigma = 0.5
    model = linear_gaussian_model(image_shape=(1, 2, 3), latent_dim=2, sigma=sigma, exact_posterior=True)
    weight, bias = model.decoder.net.weight.detach(), model.decoder.net.bias.detach()
    y = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + weight.T @ weight / sigma**2)
    post_mean = (y.flatten(1) - bias) @ weight @ cov.T / sigma**2
    mmse = (post_mean @ weight.T + bias).view_as(y)
    std = torch.diagonal(weight @ cov @ weight.T).sqrt().expand(4, -1).reshape(y.shape)
    s = 20000
    got, got_std = model.repair(y, n_samples=s, return_std=True, generator=torch.Generator().manual_seed(0))
    assert torch.all((got - mmse).abs() < 5 * std / math.sqrt(s))
    assert torch.all((got_std / std - 1).abs() < 5 / math.sqrt(2 * s))
    # the ELBO with the exact posterior is log p(y) on every draw
    elbo = vr.ELBO(kl="mc")(model, y, y).terms["elbo"]
    assert torch.allclose(elbo, model.log_marginal(y), atol=1e-9)


def test_noise_model_vae_is_a_spatial_vae_with_the_noise_as_likelihood() -> None:
    model = noise_model_vae(sigma=0.3, latent_channels=4, widths=(8, 16))
    assert isinstance(model.likelihood, dist.Gaussian) and model.likelihood.sigma == 0.3
    assert isinstance(model.prior, dist.SpatialStandardNormal) and model.repair_samples == 100
    y = torch.rand(2, 1, 13, 10)
    q = model.encode(y)
    assert q.rsample(5).shape == (5, 2, 4, 13, 10)
    ref = torch.distributions.Independent(torch.distributions.Normal(q.loc, q.scale), 3)
    prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros_like(q.loc), 1.0), 3)
    assert torch.allclose(q.kl_standard_normal(), torch.distributions.kl_divergence(ref, prior), rtol=1e-5)
    z = q.rsample()
    assert torch.allclose(q.log_prob(z), ref.log_prob(z), rtol=1e-5)
    assert torch.allclose(model.prior.log_prob(z), prior.log_prob(z), rtol=1e-5)
    # repaired with samples by default; reproducible with a generator; samples give diverse repairs
    a = model.repair(y, generator=torch.Generator().manual_seed(1))
    b = model.repair(y, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, model.repair(y, n_samples=0))
    assert model.sample(3, size=(6, 5)).shape == (3, 1, 6, 5)
    draws = model.sample_repairs(y, 4, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (4, 2, 1, 13, 10) and not torch.equal(draws[0], draws[1])  # diverse repairs
    with pytest.raises(ValueError, match="pass size="):
        model.sample(3)
    poisson = noise_model_vae(sigma=0.02, gain=0.01, widths=(8, 16))
    assert isinstance(poisson.likelihood, dist.PoissonGaussianLikelihood)
    rebuilt = vr.models.build(poisson.spec)
    assert isinstance(rebuilt.likelihood, dist.PoissonGaussianLikelihood) and rebuilt.repair_samples == 100


def test_poisson_gaussian_likelihood_against_torch_distributions() -> None:
    like = dist.PoissonGaussianLikelihood(gain=0.05, sigma=0.1)
    s = torch.rand(3, 1, 4, 5, dtype=torch.float64) - 0.1  # some negative signal: variance sigma^2 there
    y = s + 0.2 * torch.randn_like(s)
    variance = 0.05 * s.clamp(min=0) + 0.01
    ref = torch.distributions.Normal(s, variance.sqrt()).log_prob(y).sum(dim=(1, 2, 3))
    assert torch.allclose(like(s).log_prob(y), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="both 0"):
        dist.PoissonGaussianLikelihood(0.0, 0.0)


def test_repair_with_samples_is_tiled_and_checks_its_arguments() -> None:
    model = noise_model_vae(sigma=0.3, latent_channels=2, widths=(4, 8))
    y = torch.rand(1, 1, 100, 90)
    mean, std = model.repair(y, tile=48, return_std=True, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert mean.shape == std.shape == y.shape and bool((std > 0).all())
    with pytest.raises(ValueError, match="return_std=True needs n_samples >= 2"):
        model.repair(y, n_samples=1, return_std=True)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 0"):
        model.repair(y, n_samples=-1)
    means = model.repair([torch.rand(1, 9, 9), torch.rand(1, 12, 7)], return_std=True, n_samples=2)
    assert [m.shape for m, _ in means] == [(1, 9, 9), (1, 12, 7)]


# --------------------------------------------------------------- noisy data in the Trainer


def test_noisy_images_check_their_values_and_split() -> None:
    with pytest.raises(TypeError, match="must be float"):
        NoisyImages(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    bad = torch.rand(2, 1, 4, 4)
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite pixel values .* in image 1"):
        NoisyImages(bad)
    with pytest.raises(ValueError, match="second has shape"):
        NoisyImages(torch.rand(2, 1, 4, 4), second=torch.rand(3, 1, 4, 4))
    noisy = NoisyImages.simulate(torch.rand(10, 1, 4, 4), GaussianNoise(0.5), pairs=True)
    assert float(noisy.observations.min()) < 0  # unclipped
    train, val = train_val_split(noisy, 0.2)
    assert isinstance(train, NoisyImages) and len(train) == 8 and val.pairs and val.clean is not None


def _unet() -> LatentVariableModel:
    return vr.autoencoder(arch="unet", likelihood="gaussian", hidden=(4, 8), latent_dim=3,
                          image_shape=(1, None, None))


def test_the_trainer_trains_on_noisy_observations_without_clean_images() -> None:
    clean = torch.rand(40, 1, 12, 12)
    noisy = NoisyImages.simulate(clean, GaussianNoise(0.3), keep_clean=False)
    val = NoisyImages.simulate(clean[:8], GaussianNoise(0.3), seed=1, keep_clean=False)
    trainer = vr.Trainer(_unet(), SURE(0.3), epochs=2, batch_size=16, progress=False)
    history = trainer.fit(noisy, val)
    record = history.records[-1]
    assert "val_loss" in record and "val_sure" in record and "val_psnr" not in record
    # where the clean images are known (benchmarks), validation measures the repairs too
    with_clean = NoisyImages.simulate(clean[:8], GaussianNoise(0.3), seed=1)
    record = vr.Trainer(_unet(), SURE(0.3), epochs=1, progress=False).fit(noisy, with_clean).records[-1]
    assert record["val_psnr"] > 0 and record["val_psnr_input"] == pytest.approx(
        float(vr.psnr(with_clean.observations, with_clean.clean)), abs=1e-3)
    with pytest.raises(ValueError, match="build the Trainer with corruption=None"):
        vr.Trainer(_unet(), SURE(0.3), GaussianNoise(0.3), epochs=1, progress=False).fit(noisy)


def test_pairs_reach_noise2noise_swapped_at_random_and_single_images_are_refused() -> None:
    clean = torch.rand(64, 1, 8, 8)
    pairs = NoisyImages.simulate(clean, GaussianNoise(0.3), pairs=True)
    seen: list[tuple[Tensor, Tensor]] = []

    class Spy(Noise2Noise):
        def __call__(self, model, x_input, x_target, condition=None):  # type: ignore[no-untyped-def]
            seen.append((x_input.detach().clone(), x_target.detach().clone()))
            return super().__call__(model, x_input, x_target, condition)

    vr.Trainer(_unet(), Spy(), epochs=1, batch_size=64, progress=False).fit(pairs)
    x_in, x_t = seen[-1]
    first = (x_in.unsqueeze(1) == pairs.observations.unsqueeze(0)).flatten(2).all(2).any(1)
    second = (x_in.unsqueeze(1) == pairs.second.unsqueeze(0)).flatten(2).all(2).any(1)
    assert bool((first | second).all()) and 10 < int(first.sum()) < 54  # both orders occur
    assert not torch.equal(x_in, x_t)
    with pytest.raises(RuntimeError, match="second, independent observation"):
        vr.Trainer(_unet(), Noise2Noise(), epochs=1, progress=False).fit(NoisyImages(pairs.observations))


class _StopAfterOne(vr.Callback):
    def on_epoch_end(self, trainer, record):  # type: ignore[no-untyped-def]
        trainer.stop_training = True


def test_blind_spot_training_resumes_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    noisy = NoisyImages.simulate(torch.rand(48, 1, 12, 12), GaussianNoise(0.3))
    torch.manual_seed(0)
    whole = vr.Trainer(_unet(), BlindSpot(), epochs=2, batch_size=16, progress=False, checkpoint_dir=tmp_path / "a")
    whole.fit(noisy)
    torch.manual_seed(0)
    part = vr.Trainer(_unet(), BlindSpot(), epochs=2, batch_size=16, progress=False, checkpoint_dir=tmp_path / "b",
                      callbacks=[_StopAfterOne()])
    part.fit(noisy)
    assert len(part.history) == 1
    torch.manual_seed(123)  # a different global state: the checkpoint restores it
    resumed = vr.Trainer(_unet(), BlindSpot(), epochs=2, batch_size=16, progress=False,
                         checkpoint_dir=tmp_path / "b")
    resumed.fit(noisy, resume=tmp_path / "b" / "last.pt")
    for p, q in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_noise_model_vae_trains_with_the_elbo_on_poisson_gaussian_noise() -> None:
    clean = torch.rand(32, 1, 12, 12)
    noisy = NoisyImages.simulate(clean, PoissonGaussian(0.02, 0.05))
    model = noise_model_vae(sigma=0.05, gain=0.02, latent_channels=2, widths=(4, 8), repair_samples=4)
    history = vr.Trainer(model, vr.ELBO(), epochs=3, batch_size=8, lr=3e-3, progress=False).fit(noisy, noisy[:8])
    assert history.records[-1]["val_loss"] < history.records[0]["val_loss"]
    assert "val_psnr" in history.records[-1]


def test_check_objective_runs_self_supervised_objectives_on_noisy_targets() -> None:
    assert check_objective(SURE(0.3), target="noisy", ignore_params=("likelihood.",), dtypes=(torch.float64,)).ok
    with pytest.raises(ContractError, match="second, independent observation"):
        check_objective(Noise2Noise(), target="noisy", dtypes=(torch.float64,))
    with pytest.raises(ValueError, match="target must be one of"):
        check_objective(SURE(0.3), target="dirty")


def test_patches_of_pairs_come_from_the_same_place_of_both_observations() -> None:
    from vaerepair.training import PatchSource
    from vaerepair.training.sources import SourceContext

    first = [torch.rand(1, 20, 30), torch.rand(1, 25, 18)]
    second = [im + 10.0 for im in first]  # the "other observation": the same scene, offset by 10
    source = PatchSource(first, 8, patches_per_epoch=64, targets=second)
    source.setup(SourceContext(torch.device("cpu"), torch.float32, 32, 0, None))
    batches = list(source)
    for batch in batches:
        assert torch.allclose((batch.target - batch.input).abs(), torch.full_like(batch.input, 10.0))
    swapped = torch.cat([(b.target - b.input).flatten(1)[:, 0] for b in batches])
    assert 10 < int((swapped > 0).sum()) < 54  # each order about half of the time
    with pytest.raises(ValueError, match="one image of the same shape per image"):
        PatchSource(first, 8, targets=second[:1])
    with pytest.raises(ValueError, match="build the Trainer with corruption=None"):
        PatchSource(NoisyImages(torch.rand(2, 1, 12, 12)), 8).setup(
            SourceContext(torch.device("cpu"), torch.float32, 4, 0, GaussianNoise(0.1)))
