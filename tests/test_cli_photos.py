"""The photo commands: models, train/evaluate on a folder, denoise any size, 16-bit and .npy, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vaerepair as vr
from vaerepair.cli import main


def _png(path: Path, h: int, w: int, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, w)[None, :] * np.ones((h, 1))
    pixels = np.clip(ramp + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels if channels == 1 else np.stack([pixels] * 3, -1) // np.array([1, 2, 3], np.uint8)).save(
        path)
    return path


def _shape(path: Path) -> tuple[int, ...]:
    with Image.open(path) as image:
        return np.asarray(image).shape


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for i, (h, w) in enumerate([(37, 53), (64, 40), (33, 71), (48, 48)]):
        _png(root / f"p{i}.png", h, w, seed=i)
    return root


def test_models_lists_the_shipped_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "grey: blind Gaussian denoiser for grey photos of any size, sigma 0-55/255, trained on train400" in out
    assert "colour: blind Gaussian denoiser for colour photos" in out
    assert "grey-sigma: non-blind (told sigma, or estimating it) Gaussian denoiser for grey photos" in out


def test_train_evaluate_and_denoise_on_a_folder(folder: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(folder), "--arch", "unet", "--hidden", "8,16", "--latent-dim", "4",
                 "--likelihood", "gaussian", "--patch", "16", "--patches-per-epoch", "32", "--batch-size", "8",
                 "--epochs", "2", "--corruption", "gaussian:0-55/255", "--val-fraction", "0.25", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    assert "validation images at full size" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]["records"]) == 2 and "val_psnr" in metrics["history"]["records"][0]

    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--data", str(folder), "--noise-sigma", "15,25",
                 "--out", str(report)]) == 0
    results = json.loads(report.read_text())["results"]
    assert set(results) == {"15.0", "25.0"} and results["25.0"]["n"] == 4
    assert results["15.0"]["psnr_input"] > results["25.0"]["psnr_input"]  # the protocol's noise is as asked
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--data", str(folder), "--out", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err

    odd = _png(tmp_path / "odd.png", 29, 83)
    assert main(["denoise", "-c", str(out / "best.pt"), str(odd), "-o", str(tmp_path / "odd_fixed.png")]) == 0
    assert _shape(tmp_path / "odd_fixed.png") == (29, 83)


def test_folder_training_errors_are_one_line(folder: Path, tmp_path: Path, capsys):
    base = ["train", "--arch", "unet", "--patch", "16", "--epochs", "1", "--out", str(tmp_path / "r")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, "--data", str(empty)]) == 2
    assert "no images (PNG, JPEG, BMP, TIFF) under" in capsys.readouterr().err
    assert main([*base, "--data", str(folder), "--patch", "40"]) == 2
    assert "smaller than the 40x40 patches; use a smaller --patch" in capsys.readouterr().err
    assert main(["train", "--data", str(folder), "--arch", "mlp", "--out", str(tmp_path / "r")]) == 2
    assert "needs --arch unet" in capsys.readouterr().err
    (folder / "notes.png").write_text("not an image")
    assert main([*base, "--data", str(folder)]) == 2
    assert "notes.png" in capsys.readouterr().err


def test_denoise_with_a_shipped_model_16_bit_and_npy(tmp_path: Path, capsys):
    deep = tmp_path / "deep.png"
    rng = np.random.default_rng(0)
    Image.fromarray((np.linspace(0.2, 0.8, 60)[None] * np.ones((45, 1)) * 65535 + rng.normal(0, 2000, (45, 60)))
                    .clip(0, 65535).astype(np.uint16)).save(deep)
    assert main(["denoise", "--model", "grey", str(deep), "-o", str(tmp_path / "deep_fixed.png")]) == 0
    with Image.open(tmp_path / "deep_fixed.png") as fixed:
        assert fixed.mode.startswith("I") and fixed.size == (60, 45)  # 16 bits in, 16 bits out

    array = tmp_path / "noisy.npy"
    np.save(array, (np.linspace(0, 1, 30)[None] * np.ones((20, 1)) + rng.normal(0, 0.2, (20, 30))).astype(np.float32))
    assert main(["denoise", "--model", "grey", str(array), "-o", str(tmp_path / "clean.npy")]) == 0
    repaired = np.load(tmp_path / "clean.npy")
    assert repaired.shape == (1, 20, 30) and repaired.dtype == np.float32

    colour = _png(tmp_path / "colour.png", 30, 40, channels=3)
    assert main(["denoise", "--model", "grey", str(colour), "-o", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "is colour (RGB) but the model repairs grey images; use a colour model" in err and "--convert" in err
    assert main(["denoise", "--model", "grey", str(colour), "-o", str(tmp_path / "c.png"), "--convert"]) == 0
    assert main(["denoise", "--model", "colour", str(colour), "-o", str(tmp_path / "c3.png")]) == 0
    assert _shape(tmp_path / "c3.png") == (30, 40, 3)
    assert main(["denoise", "--model", "gray", str(colour), "-o", str(tmp_path / "c.png")]) == 2
    assert "no pretrained model 'gray'" in capsys.readouterr().err
    assert main(["denoise", "--model", "grey", "-c", "x.pt", str(colour), "-o", str(tmp_path / "c.png")]) == 2
    assert "exactly one of --model NAME" in capsys.readouterr().err
    assert main(["denoise", "--model", "grey", str(colour), "-o", str(tmp_path)]) == 2
    assert "is a folder; give a file name such as" in capsys.readouterr().err


def test_a_large_photo_is_tiled_by_itself(tmp_path: Path, monkeypatch):
    import vaerepair.cli.denoise as pc

    calls: list[object] = []
    real = pc.PathModel.repair

    def spy(self, x, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs.get("tile"))
        return real(self, x, *args, **kwargs)

    monkeypatch.setattr(pc.PathModel, "repair", spy)
    monkeypatch.setattr(pc, "AUTO_TILE_PIXELS", 100 * 100)  # the same rule, on a small image
    big = _png(tmp_path / "big.png", 120, 130)
    assert main(["denoise", "--model", "grey", str(big), "-o", str(tmp_path / "b.png")]) == 0
    assert calls[0] == pc.AUTO_TILE and _shape(tmp_path / "b.png") == (120, 130)


def test_evaluate_warns_outside_the_training_noise_range(tmp_path: Path):
    root = tmp_path / "one"
    root.mkdir()
    _png(root / "a.png", 24, 24)
    with pytest.warns(UserWarning, match="sigma 75-75/255 is outside it"):
        assert main(["evaluate", "--model", "grey", "--data", str(root), "--noise-sigma", "75"]) == 0
    # no warning: an error
    assert main(["evaluate", "--model", "grey", "--data", str(root), "--noise-sigma", "25"]) == 0


def test_ensemble_8_from_the_command_line(tmp_path: Path, capsys):
    """denoise --ensemble 8 writes the model's self-ensemble; evaluate --data --ensemble 8 scores it."""
    import torch

    from vaerepair.data import read_image

    image = _png(tmp_path / "a.png", 24, 28)
    assert main(["denoise", "--model", "grey", str(image), "-o", str(tmp_path / "e.png"), "--ensemble", "8"]) == 0
    x = read_image(image).float()[None] / 255
    expected = (vr.pretrained("grey").repair(x, ensemble=8)[0].clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(read_image(tmp_path / "e.png"), expected)
    root = tmp_path / "one"
    root.mkdir()
    _png(root / "a.png", 24, 24)
    assert main(["evaluate", "--model", "grey", "--data", str(root), "--noise-sigma", "25", "--ensemble", "8"]) == 0
    with pytest.raises(SystemExit):
        main(["denoise", "--model", "grey", str(image), "-o", str(tmp_path / "f.png"), "--ensemble", "4"])
    assert "invalid choice: 4" in capsys.readouterr().err


# --------------------------------------------------------------- training on noisy images only

_SMALL = ["--arch", "unet", "--hidden", "8,16", "--latent-dim", "4", "--patch", "16", "--patches-per-epoch", "32",
          "--batch-size", "8", "--epochs", "1", "--val-fraction", "0.25", "--no-progress"]


@pytest.mark.parametrize("extra", [["--objective", "sure", "--noise-sigma", "10"],
                                   ["--objective", "blindspot", "--blind-replacement", "median"],
                                   ["--kind", "vae", "--noise-sigma", "10", "--noise-gain", "0.01"],
                                   ["--kind", "ladder", "--noise-sigma", "10", "--free-bits", "0.01"]])
def test_train_on_a_folder_of_noisy_images_only(folder: Path, tmp_path: Path, capsys, extra: list[str]):
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), *_SMALL, *extra, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "on noisy images only" in text and "validation loss" in text
    record = json.loads((out / "metrics.json").read_text())["history"]["records"][0]
    assert "val_loss" in record and "val_psnr" not in record  # nothing clean to measure against
    from vaerepair import load_model

    model = load_model(out / "best.pt")
    if "vae" in extra:
        assert model.repair_samples == 100 and type(model.likelihood).__name__ == "PoissonGaussianLikelihood"
    if "ladder" in extra:
        assert type(model).__name__ == "LadderVAE" and model.widths == (8, 16) and model.latent_channels == (4, 4)
    assert main(["denoise", "--checkpoint", str(out / "best.pt"), str(folder / "p0.png"), "-o",
                 str(tmp_path / "clean.png")]) == 0
    assert _shape(tmp_path / "clean.png") == (37, 53)


def test_noise2noise_from_two_folders_matched_by_name(folder: Path, tmp_path: Path, capsys):
    second = tmp_path / "second"
    second.mkdir()
    for i, (h, w) in enumerate([(37, 53), (64, 40), (33, 71), (48, 48)]):
        _png(second / f"p{i}.png", h, w, seed=10 + i)
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--targets", str(second), "--objective", "noise2noise", *_SMALL,
                 "--out", str(out)]) == 0
    (second / "p3.png").unlink()
    _png(second / "p3.png", 40, 40)
    assert main(["train", "--data", str(folder), "--targets", str(second), "--objective", "noise2noise", *_SMALL,
                 "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the two observations of a scene must match" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--objective", "sure"], "needs the noise level: give --noise-sigma"),
    (["--objective", "sure", "--noise-sigma", "10", "--corruption", "gaussian:0.1"], "drop --corruption"),
    (["--objective", "noise2noise"], "needs --targets DIR"),
    (["--objective", "blindspot", "--targets", "x"], "--targets is for noise2noise only"),
    (["--noise-sigma", "10"], "are for noisy-only training"),
    (["--kind", "vae", "--objective", "fisher"], "drop --objective fisher"),
])
def test_noisy_only_training_mistakes_are_one_line(folder: Path, tmp_path: Path, capsys, args, message):
    code = main(["train", "--data", str(folder), *_SMALL, *args, "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.strip().count("\n") <= 2


def test_a_negative_noise_level_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--objective", "sure", "--noise-sigma", "-1"])
    assert exit_info.value.code == 2 and "expected a finite number >= 0, got '-1'" in capsys.readouterr().err


def test_self_supervised_objectives_need_a_folder(capsys):
    assert main(["train", "--objective", "sure", "--noise-sigma", "25", "--limit", "10"]) == 2
    assert "trains on noisy images only, from a folder: give --data DIR" in capsys.readouterr().err


def test_denoise_takes_folders_and_files_and_writes_one_output_per_input(tmp_path: Path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    _png(one / "a.png", 24, 20), _png(one / "b.png", 18, 30)
    (one / "notes.txt").write_text("not an image")
    (one / "sub").mkdir()
    _png(one / "sub" / "deep.png", 16, 16)  # subfolders are not read
    _png(two / "c.png", 20, 20)
    out = tmp_path / "out"
    assert main(["denoise", "--model", "grey", str(one), str(two / "c.png"), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_repaired.png", "b_repaired.png", "c_repaired.png"]
    assert _shape(out / "b_repaired.png") == (18, 30)
    single = tmp_path / "single"
    single.mkdir()
    _png(single / "only.png", 20, 20)
    assert main(["denoise", "--model", "grey", str(single), "-o", str(tmp_path / "out2")]) == 0  # a folder: a folder
    assert (tmp_path / "out2" / "only_repaired.png").exists()

    _png(two / "a.png", 20, 20)  # same name as one/a.png: refused, nothing overwritten
    before = (out / "a_repaired.png").read_bytes()
    assert main(["denoise", "--model", "grey", str(one), str(two), "-o", str(out)]) == 2
    assert "would both be written to a_repaired.png" in capsys.readouterr().err
    assert (out / "a_repaired.png").read_bytes() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["denoise", "--model", "grey", str(empty), "-o", str(out)]) == 2
    assert "holds no image files" in capsys.readouterr().err
    fresh = tmp_path / "fresh"  # a missing input is named before any output is written
    assert main(["denoise", "--model", "grey", str(single), str(tmp_path / "missing.png"), "-o", str(fresh)]) == 2
    assert "missing.png' does not exist" in capsys.readouterr().err and not fresh.exists()
