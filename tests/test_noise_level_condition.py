"""The non-blind denoiser: a noise level per image (NoiseLevel) joined to the U-Net's input as a constant map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vaerepair as vr
from vaerepair.cli import main
from vaerepair.models import NoiseLevel
from vaerepair.training import PatchSource
from vaerepair.training.checkpoint import save_checkpoint


def _model(condition: str | None = "noise_level", seed: int = 0) -> vr.models.LatentVariableModel:
    torch.manual_seed(seed)
    model = vr.models.build(vr.models.ModelSpec(kind="dae", image_shape=(1, None, None), arch="unet", hidden=(8, 16),
                                                latent_dim=4, likelihood="gaussian", condition=condition))
    with torch.no_grad():  # weights away from their initialisation, so that every input channel matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_prepare_measures_the_noise_against_the_clean_images_else_estimates_it() -> None:
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 1, 64, 64, generator=gen)
    noisy = clean + torch.tensor([0.0, 0.05, 0.2]).view(3, 1, 1, 1) * torch.randn(3, 1, 64, 64, generator=gen)
    measured = NoiseLevel().prepare(noisy, None, clean=clean)
    oracle = np.sqrt(np.mean((noisy.double().numpy() - clean.double().numpy()) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(measured.numpy(), oracle, rtol=1e-5, atol=1e-7)
    assert measured[0] == 0
    torch.testing.assert_close(NoiseLevel().prepare(noisy), vr.estimate_noise_sigma(noisy))


@pytest.mark.parametrize(("value", "message"), [
    (torch.tensor([[0.1, 0.2]]), "one sigma per image"),
    (torch.tensor([25]), "must be floats"),
    (torch.tensor([-0.1]), "finite and >= 0"),
    (torch.tensor([float("nan")]), "finite and >= 0"),
    (torch.tensor([25.0]), "divide 0..255 levels by 255"),
    ("0.1", "tensor with one row per image"),
])
def test_bad_noise_levels_are_clear_errors(value, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        _model().repair(torch.rand(1, 1, 16, 16), value)


def test_the_model_sees_the_noise_level_and_needs_it() -> None:
    model, x = _model(), torch.rand(2, 1, 24, 24)
    assert model.image_shape == (1, None, None) and model.condition.joins_input
    low, high = model.repair(x, torch.full((2,), 0.02)), model.repair(x, torch.full((2,), 0.2))
    assert (low - high).abs().max() > 1e-4
    with pytest.raises(ValueError, match="pass condition="):
        model.repair(x)
    with pytest.raises(ValueError, match="one row per image"):
        model.repair(x, torch.full((3,), 0.1))


def test_levels_gives_sigma_to_every_image_or_estimates_each() -> None:
    noisy = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(NoiseLevel().levels(noisy, 0.1), torch.full((3,), 0.1))
    torch.testing.assert_close(NoiseLevel().levels(noisy), vr.estimate_noise_sigma(noisy))


def test_noise_level_values_are_checked_outside_the_trainers_steps_only() -> None:
    """Inside the Trainer's steps (validation off) the values are not read back (a device sync per step);
    the shape check stays."""
    from vaerepair.distributions import validation

    with validation(False):
        assert NoiseLevel()(torch.tensor([-1.0, 0.1])).shape == (2, 1)
        with pytest.raises(ValueError, match="one sigma per image"):
            NoiseLevel()(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="finite and >= 0"):
        NoiseLevel()(torch.tensor([-1.0, 0.1]))


def test_a_zero_weighted_noise_map_is_the_blind_model() -> None:
    """What training from a blind model's weights starts at (scripts/train_pretrained.py's load_widened): the
    map's input weights 0, the same repairs."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_pretrained.py"
    spec = importlib.util.spec_from_file_location("train_pretrained", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    blind, sighted = _model(None), _model()
    script.load_widened(sighted, dict(blind.state_dict()))
    x = torch.rand(2, 1, 24, 24)
    torch.testing.assert_close(sighted.repair(x, torch.tensor([0.0, 0.2])), blind.repair(x), rtol=0, atol=1e-6)


def test_tiles_ensemble_and_lists_carry_each_images_noise_level() -> None:
    model, x, sigma = _model(), torch.rand(2, 1, 70, 90), torch.tensor([0.05, 0.2])
    whole = model.repair(x, sigma)
    torch.testing.assert_close(model.repair(x, sigma, tile=48), whole, rtol=0, atol=1e-5)
    assert (model.repair(x, sigma.flip(0)) - whole).abs().max() > 1e-4  # the rows are each image's own
    listed = model.repair([x[0], x[1]], sigma)
    torch.testing.assert_close(torch.stack(listed), whole)
    mean = torch.zeros_like(x)
    for turns in range(4):
        for flip in (False, True):
            seen = torch.rot90(x, turns, dims=(-2, -1))
            out = model.repair(seen.flip(-1) if flip else seen, sigma)
            mean += torch.rot90(out.flip(-1) if flip else out, -turns, dims=(-2, -1)) / 8
    torch.testing.assert_close(model.repair(x, sigma, ensemble=8), mean)


def test_an_image_condition_is_still_refused_by_tiles_and_the_ensemble() -> None:
    model = vr.conditional_vae("image", image_shape=(1, 28, 28), latent_dim=4)
    x = torch.rand(2, 1, 28, 28)
    cond = model.condition.prepare(x, x > 0.5)
    with pytest.raises(ValueError, match="no condition but one per image"):
        model.repair(x, cond, ensemble=8)
    with pytest.raises(ValueError, match="no condition but one per image"):
        model.repair(x, cond, tile=28)


def test_the_trainer_measures_each_patches_noise_level_against_its_clean_patch() -> None:
    model = _model()
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    prepare = model.condition.prepare

    def spy(corrupted, mask=None, labels=None, clean=None):
        seen.append((corrupted, clean))
        return prepare(corrupted, mask, labels, clean=clean)

    model.condition.prepare = spy  # type: ignore[method-assign]
    images = [torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    trainer = vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(0.1), epochs=1, batch_size=4, progress=False,
                         device="cpu")
    trainer.fit(PatchSource(images, 32, patches_per_epoch=8), val=torch.stack(images))
    assert seen and all(clean is not None for _, clean in seen)
    levels = torch.cat([prepare(c, None, clean=x) for c, x in seen])
    assert float(levels.min()) > 0.09 and float(levels.max()) < 0.11  # sigma 0.1, measured on 1024+ pixels


@pytest.mark.parametrize("pairs", [True, False])
def test_noisy_observations_have_no_clean_image_so_the_level_is_estimated(pairs: bool) -> None:
    """Noise2Noise pairs, and noisy images trained on as they are (no corruption): neither the second
    observation nor the input itself is a clean image, so the noise level is estimated, not measured as 0."""
    model = _model()
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(8, 1, 32, 32, generator=gen) * 0.2 + 0.4
    first, second = (clean + 0.1 * torch.randn(8, 1, 32, 32, generator=gen) for _ in range(2))
    seen: list[torch.Tensor | None] = []
    levels: list[torch.Tensor] = []
    prepare = model.condition.prepare

    def spy(c, m=None, lab=None, clean=None):
        seen.append(clean)
        levels.append(prepare(c, m, lab, clean=clean))
        return levels[-1]

    model.condition.prepare = spy  # type: ignore[method-assign]
    trainer = vr.Trainer(model, vr.Reconstruction(), None, epochs=1, batch_size=4, progress=False, device="cpu")
    trainer.fit(vr.data.NoisyImages(first, second if pairs else None))
    assert seen and all(c is None for c in seen)
    assert float(torch.cat(levels).min()) > 0.05  # the estimate of sigma 0.1, not 0


def test_noise_level_is_the_unet_denoisers_condition_only() -> None:
    with pytest.raises(ValueError, match="U-Net denoiser's"):
        vr.models.ModelSpec(kind="dae", image_shape=(1, 28, 28), arch="conv", hidden=(8, 16), condition="noise_level")
    with pytest.raises(ValueError, match="U-Net denoiser's"):
        vr.models.ModelSpec(kind="vae", image_shape=(1, None, None), arch="unet", condition="noise_level")
    spec = vr.models.ModelSpec(kind="dae", image_shape=(1, None, None), arch="unet", hidden=(8, 16), latent_dim=4,
                               likelihood="gaussian", condition="noise_level")
    rebuilt = vr.models.build(vr.models.build(spec).spec)
    assert isinstance(rebuilt.condition, NoiseLevel)


def _checkpoint(path: Path, model: torch.nn.Module) -> Path:
    return save_checkpoint(path, {"model_spec": model.spec, "model": model.state_dict()})


def _png(path: Path) -> Path:
    from PIL import Image

    pixels = (np.random.default_rng(0).random((40, 52)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_denoise_tells_a_non_blind_model_the_noise_level_or_estimates_it(tmp_path: Path, capsys) -> None:
    model, image = _model(), _png(tmp_path / "noisy.png")
    ckpt = _checkpoint(tmp_path / "sigma.pt", model)
    assert main(["denoise", "-c", str(ckpt), str(image), "-o", str(tmp_path / "given.png"), "--noise-sigma", "25"]) == 0
    assert "noise sigma 25.0/255)" in capsys.readouterr().out
    assert main(["denoise", "-c", str(ckpt), str(image), "-o", str(tmp_path / "auto.png")]) == 0
    assert ", estimated)" in capsys.readouterr().out
    from PIL import Image

    x = torch.from_numpy(np.asarray(Image.open(image), dtype=np.float32) / 255)[None, None]
    expected = (model.repair(x, torch.full((1,), 25 / 255))[0, 0].clamp(0, 1) * 255).round().to(torch.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "given.png")), expected.numpy())
    blind = _checkpoint(tmp_path / "blind.pt", _model(None))
    assert main(["denoise", "-c", str(blind), str(image), "-o", str(tmp_path / "b.png"), "--noise-sigma", "25"]) == 2
    assert "the model is blind" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["denoise", "-c", str(ckpt), str(image), "-o", str(tmp_path / "x.png"), "--noise-sigma", "loud"])


def test_evaluate_gives_a_non_blind_model_the_protocols_sigma(tmp_path: Path, capsys) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    _png(root / "a.png")
    ckpt = _checkpoint(tmp_path / "sigma.pt", _model())
    out_given, out_estimated = tmp_path / "given.json", tmp_path / "estimated.json"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(root), "--noise-sigma", "25",
                 "--out", str(out_given)]) == 0
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(root), "--noise-sigma", "25", "--estimate-sigma",
                 "--out", str(out_estimated)]) == 0
    import json

    given = json.loads(out_given.read_text())["results"]["25.0"]["psnr"]
    estimated = json.loads(out_estimated.read_text())["results"]["25.0"]["psnr"]
    assert given != estimated  # the random image's texture makes the blind estimate differ from 25
