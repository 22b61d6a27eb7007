"""What a hostile or hurried user does: images on the 0-255 scale, a Trainer given another model's optimizer or a
plain nn.Module, edited checkpoints, and a block erased where the image was already black (an infinite PSNR)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import vaerepair as vr
from vaerepair import corruptions as C
from vaerepair.training import CheckpointError
from vaerepair.training.callbacks import TrainingHealth

CORRUPTIONS = [lambda: C.GaussianNoise(0.1), lambda: C.SaltAndPepper(0.1), lambda: C.BlockErasure(size=5),
               lambda: C.RandomMask(0.5), lambda: C.PixelInversion(0.5), lambda: C.Poisson(0.01)]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return vr.autoencoder((1, 28, 28), latent_dim=4, hidden=(16,))


# ------------------------------------------------------------------ image ranges


@pytest.mark.parametrize("make", CORRUPTIONS)
@pytest.mark.parametrize("scale", [255.0, -1.0])
def test_a_corruption_refuses_images_outside_the_unit_range(make, scale: float) -> None:
    x = torch.rand(2, 1, 8, 8) * scale
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got values in .*x / 255"):
        make()(x)


def test_a_compose_passes_its_intermediate_values_between_its_parts() -> None:
    """Noise takes values outside [0, 1]; the erasure after it inside a Compose must not refuse them."""
    x = torch.rand(4, 1, 8, 8)
    out = C.Compose([C.GaussianNoise(0.5), C.BlockErasure(size=3)])(x, generator=torch.Generator().manual_seed(0))
    assert out.min() < 0 or out.max() > 1


@pytest.mark.parametrize("generator", [0, "seed", 1.5])
def test_a_generator_that_is_not_one_is_a_clear_error(generator) -> None:
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None"):
        C.GaussianNoise(0.1)(torch.rand(2, 1, 8, 8), generator=generator)


def test_a_noise_sigma_on_the_0_255_scale_warns_with_the_division() -> None:
    with pytest.warns(UserWarning, match=r"divide it by 255 \(sigma=25/255 = 0.098"):
        C.GaussianNoise(25)
    with pytest.warns(UserWarning, match="above 1"):
        C.GaussianNoise((0.0, 50.0))


@pytest.mark.parametrize("call", [lambda m, x: m.repair(x), lambda m, x: m.reconstruct(x),
                                  lambda m, x: vr.psnr(x, torch.rand_like(x)),
                                  lambda m, x: vr.ssim(x, torch.rand_like(x))])
def test_repairs_and_metrics_refuse_0_255_images_and_take_noisy_ones(call) -> None:
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="0-255 scale"):
        call(_model(), x * 255)
    noisy = x + 0.5 * torch.randn_like(x)  # unclipped noise strays outside [0, 1]: accepted
    assert torch.isfinite(torch.as_tensor(call(_model(), noisy))).all()


def test_psnr_with_data_range_255_takes_0_255_images() -> None:
    x = torch.rand(2, 1, 8, 8)
    assert vr.psnr(x * 255, (x + 0.1) * 255, data_range=255.0).item() == pytest.approx(20.0, abs=1e-3)


# ------------------------------------------------------------------------ metrics


def test_metric_arguments_that_gave_silent_nonsense_are_refused() -> None:
    x, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        vr.psnr(x, y, mask=torch.ones(2, 1, 16, 16))
    for sigma in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="sigma must be finite and > 0"):
            vr.ssim(x, y, sigma=sigma)
    with pytest.raises(ValueError, match="data_range must be finite and > 0"):
        vr.ssim(x, y, data_range=0.0)
    for metric in (vr.psnr, vr.ssim):
        with pytest.raises(ValueError, match="empty batches"):
            metric(x[:0], y[:0])
    with pytest.raises(ValueError, match="'mean', 'none' or 'pooled'"):
        vr.psnr(x, y, reduction="sum")


def test_pooled_psnr_and_the_cap_against_their_definitions() -> None:
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    y = x.clone()
    y[1] += 0.1  # image 0 and 2 are perfect
    y[2, 0, 0, 0] += 0.3
    mse = ((x - y) ** 2).mean()
    assert vr.psnr(y, x, reduction="pooled").item() == pytest.approx(10 * math.log10(1 / mse.item()))
    assert math.isinf(vr.psnr(y, x).item())  # the mean of per-image PSNRs: one perfect image makes it infinite
    capped = vr.psnr(x, x, reduction="none", max_db=100.0)
    assert capped.tolist() == [100.0] * 3
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[:, :, :2] = True
    inside = ((x - y) ** 2)[mask].mean()
    assert vr.psnr(y, x, mask=mask, reduction="pooled").item() == pytest.approx(10 * math.log10(1 / inside.item()))


def test_a_block_erased_on_a_black_background_gives_finite_means_and_no_false_alarm() -> None:
    """The quickstart's BlockErasure on Fashion-MNIST: a block that falls on black background leaves the image as
    it was, so its PSNR (and the missing region's) is infinite; the means must stay finite."""
    torch.manual_seed(0)
    images = torch.rand(8, 1, 28, 28)
    images[:4] = 0.0  # black images: every erased block equals what was there
    trainer = vr.Trainer(vr.conditional_vae("image", latent_dim=4, hidden=(32,)), vr.ELBO(), C.BlockErasure(12),
                         epochs=1, batch_size=8, device="cpu", progress=False)
    result = trainer.evaluate(images)
    for key in ("psnr", "psnr_input", "psnr_missing", "psnr_missing_input", "mse", "mse_input"):
        assert math.isfinite(result[key]), key
    assert result["psnr_input"] <= vr.metrics.PSNR_CAP_DB
    # the health check compares errors: a mean input PSNR pulled up by perfect images is no alarm
    health = TrainingHealth(patience=1)
    record = {"val_psnr": 19.2, "val_psnr_input": 60.0, "val_mse": 0.01, "val_mse_input": 0.05}

    class _Run:
        epoch = 1

    health.on_epoch_end(_Run(), record)  # type: ignore[arg-type]
    assert "worse_than_input" not in record


# ------------------------------------------------------------------------ the Trainer


def _trainer(**options) -> vr.Trainer:
    model = options.pop("model", None) or _model()
    objective = options.pop("objective", vr.Reconstruction())
    corruption = options.pop("corruption", C.GaussianNoise(0.1))
    return vr.Trainer(model, objective, corruption, epochs=1, batch_size=8, device="cpu", progress=False, **options)


def test_an_optimizer_over_another_models_parameters_is_refused() -> None:
    other = _model()
    n = len(list(other.parameters()))
    with pytest.raises(ValueError, match=f"the optimizer holds {n} of {n} parameter tensors that are not the model's"):
        _trainer(optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    model = _model()
    _trainer(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))  # its own: accepted


def test_a_loss_that_does_not_require_grad_is_named_before_any_step() -> None:
    def detached(model, x_in, x_target, condition=None):
        result = vr.Reconstruction()(model, x_in, x_target, condition)
        return vr.objectives.ObjectiveResult(result.loss.detach(), result.terms)

    with pytest.raises(ValueError, match="does not require grad"):
        _trainer(objective=detached).fit(torch.rand(16, 1, 28, 28))


def test_metadata_and_seed_are_checked_at_construction() -> None:
    with pytest.raises(TypeError, match=r"metadata\['fn'\] is builtin_function_or_method"):
        _trainer(metadata={"fn": print})
    with pytest.raises(TypeError, match=r"metadata\['run'\]\[1\] is Tensor"):
        _trainer(metadata={"run": ["a", torch.zeros(1)]})
    assert _trainer(metadata={"run": ["a", 1, 2.5, None, {"b": True}]}).metadata["run"][0] == "a"
    for seed in (2**70, -1, 1.5, "3"):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63\)"):
            _trainer(seed=seed)


def test_a_spec_string_is_a_corruption_at_every_entry_point() -> None:
    images = torch.rand(16, 1, 28, 28)
    trainer = _trainer(corruption="gaussian:0.5")
    assert isinstance(trainer.corruption, C.GaussianNoise) and trainer.corruption.sigma == (0.5, 0.5)
    by_string = trainer.evaluate(images, corruption="block:12")
    assert by_string == trainer.evaluate(images, corruption=C.BlockErasure(12))
    with pytest.raises(TypeError, match="a spec string like 'gaussian:0.5'"):
        trainer.evaluate(images, corruption=0.5)
    with pytest.raises(ValueError, match="unknown corruption 'gauss'"):
        _trainer(corruption="gauss:0.5")


def test_a_plain_module_is_refused_at_construction_naming_what_it_needs() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 784), torch.nn.Unflatten(1, (1, 28, 28)))
    with pytest.raises(TypeError, match=r"not a vaerepair model: it has no encode\(x\) and decode\(z\).*reconstruct"):
        _trainer(model=net)


def test_a_short_fit_that_ends_worse_than_its_input_says_so() -> None:
    """Two epochs at lr 1e6 repaired to 4 dB against the input's 6 dB, and exited without a word."""
    torch.manual_seed(0)
    images = torch.rand(32, 1, 28, 28)
    with pytest.warns(RuntimeWarning, match="worse than the corrupted inputs at the end of the fit"):
        history = _trainer(lr=1e6, corruption=C.GaussianNoise(0.05)).fit(images[:24], images[24:])
    assert history.records[-1]["worse_than_input"] == 1.0


# ------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    model = vr.models.build({"kind": "ae", "image_shape": [1, 28, 28], "latent_dim": 4, "hidden": [16]})
    vr.Trainer(model, vr.Reconstruction(), C.GaussianNoise(0.1), epochs=1, batch_size=8, device="cpu",
               progress=False, checkpoint_dir=folder).fit(torch.rand(16, 1, 28, 28))
    return folder / "last.pt"


EDITS = {
    "model_spec": (lambda d: d.update(model_spec=[1, 2]), r"model_spec must be a dict, got list"),
    "model missing": (lambda d: d.pop("model"), r"model is missing"),
    "model a list": (lambda d: d.update(model=[1]), r"model must be a dict of name -> tensor"),
    "history a list": (lambda d: d.update(history=[1]), r"history must be a dict, got list"),
    "trainer field": (lambda d: d["trainer"].pop("global_step"), r"trainer\['global_step'\] must be int, got None"),
    "garbage rng": (lambda d: d.update(rng={"cpu": torch.zeros(3, dtype=torch.uint8)}), r"rng\['cpu'\] must be"),
    "no optimizer": (lambda d: d.pop("optimizer"), r"optimizer is missing"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_checkpoint_is_refused_on_load_naming_the_field(written: Path, tmp_path: Path, edit: str) -> None:
    data = torch.load(written, weights_only=True)
    change, message = EDITS[edit]
    change(data)
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=r"does not fit the checkpoint schema: " + message):
        vr.load_checkpoint(tmp_path / "edited.pt")


def test_an_unknown_map_location_is_named(written: Path) -> None:
    with pytest.raises(ValueError, match="map_location 'tpu:7' is not a device torch knows"):
        vr.load_checkpoint(written, map_location="tpu:7")
    assert vr.load_checkpoint(written, map_location="cpu")["format"] == "vaerepair-checkpoint"


def test_sample_refuses_a_count_that_is_not_one() -> None:
    vae = vr.variational_autoencoder((1, 28, 28), latent_dim=4, hidden=(16,))
    for n in (-1, 1.5, "3"):
        with pytest.raises((TypeError, ValueError), match="n must be an integer"):
            vae.sample(n)


def test_the_nan_guard_checks_every_cpu_step_and_leaves_the_gradients_as_backward_wrote_them() -> None:
    """The gradient check (the gradient scaler's, at scale 1) runs before every update on the CPU and the
    optimizer steps with exactly the gradients backward wrote (bit for bit), with no hook left on the model."""
    seen: list[bool] = []

    class Spy(vr.training.Callback):
        def __init__(self) -> None:
            self.written: list[torch.Tensor] = []

        def on_before_optimizer_step(self, trainer: vr.Trainer) -> None:  # after the check
            grads = [p.grad for p in trainer.trainable if p.grad is not None]
            seen.append(all(torch.equal(g, w) for g, w in zip(grads, self.written, strict=True)))

    spy = Spy()
    model = _model()
    trainer = _trainer(model=model, callbacks=[spy])
    checks = []
    real = trainer.guard._gradient_flags

    def recording(params: list[torch.nn.Parameter]) -> torch.Tensor | None:
        spy.written = [p.grad.clone() for p in params if p.grad is not None]
        checks.append(1)
        return real(params)

    trainer.guard._gradient_flags = recording  # type: ignore[method-assign]
    trainer.fit(torch.rand(16, 1, 28, 28))
    assert seen == [True, True] and len(checks) == 2  # two steps, each checked
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())
