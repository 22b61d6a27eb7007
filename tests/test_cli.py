"""The command line on a small fake MNIST: train, evaluate, denoise, fetch, and its error messages."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor
from torchvision.utils import save_image

import vaerepair as vr
from vaerepair.cli import main


def _read(path: str) -> torch.Tensor:
    with Image.open(path) as img:
        return pil_to_tensor(img)


TRAIN = ["train", "--dataset", "mnist", "--epochs", "2", "--latent-dim", "4", "--hidden", "32",
         "--corruption", "gaussian:0.3", "--eval-n", "16", "--no-progress", "--device", "cpu"]


@pytest.fixture
def trained(mnist_root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert main([*TRAIN, "--root", str(mnist_root), "--out", str(out)]) == 0
    return out


def test_train_writes_everything(trained: Path, capsys):
    for name in ["best.pt", "last.pt", "metrics.json", "grid.png", "loss.png"]:
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test"]["n"] == 16 and metrics["test"]["corruption"] == "gaussian:0.3"
    assert len(metrics["history"]["records"]) == 2
    grid = _read(str(trained / "grid.png"))
    assert grid.shape[-2] == 3 * 112 + 4 * 2  # three rows (clean / corrupted / repaired) of 28 px x4
    ckpt = torch.load(trained / "best.pt", weights_only=True)
    assert ckpt["metadata"] == {"dataset": "mnist", "corruption": "gaussian:0.3"}


def test_evaluate_uses_recorded_dataset_and_corruption(trained: Path, mnist_root: Path, tmp_path: Path, capsys):
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--checkpoint", str(trained / "best.pt"), "--root", str(mnist_root), "--n", "10",
                 "--out", str(out), "--grid", str(tmp_path / "g.png"), "--device", "cpu"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["n"] == 10 and result["corruption"] == "gaussian:0.3" and "psnr" in result
    assert "repaired" in capsys.readouterr().out and (tmp_path / "g.png").is_file()


def test_denoise_own_image_and_errors(trained: Path, tmp_path: Path, capsys):
    img = tmp_path / "mine.png"
    save_image(torch.rand(3, 28, 28), img)  # RGB: an error for a 1-channel model, unless converted
    out = tmp_path / "fixed.png"
    assert main(["denoise", "--checkpoint", str(trained / "best.pt"), str(img), "-o", str(out)]) == 2
    assert "is colour (RGB) but the model repairs grey images" in capsys.readouterr().err
    assert main(["denoise", "--checkpoint", str(trained / "best.pt"), str(img), "-o", str(out), "--convert"]) == 0
    assert _read(str(out)).shape[-2:] == (28, 28)

    big = tmp_path / "big.png"
    save_image(torch.rand(1, 40, 50), big)
    assert main(["denoise", "-c", str(trained / "best.pt"), str(big), "-o", str(tmp_path / "x.png")]) == 2
    assert "is 40x50 pixels but the model takes 28x28" in capsys.readouterr().err
    assert main(["denoise", "-c", str(trained / "best.pt"), str(big), "-o", str(tmp_path / "y.png"), "--resize"]) == 0
    assert _read(str(tmp_path / "y.png")).shape[-2:] == (40, 50)
    tiled = tmp_path / "t.png"
    assert main(["denoise", "-c", str(trained / "best.pt"), str(big), "-o", str(tiled), "--tile"]) == 0
    assert _read(str(tiled)).shape[-2:] == (40, 50)  # full size, no rescaling
    small = tmp_path / "small.png"
    save_image(torch.rand(1, 20, 50), small)
    assert main(["denoise", "-c", str(trained / "best.pt"), str(small), "-o", str(tiled), "--tile"]) == 2
    assert "smaller than the model's 28x28 tiles" in capsys.readouterr().err

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["denoise", "-c", str(trained / "best.pt"), str(text), "-o", str(tmp_path / "z.png")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_bad_names_are_refused_clearly(mnist_root: Path, tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--corruption", "blur:2"])
    assert "unknown corruption 'blur'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "svhn"])
    assert "unknown dataset 'svhn'" in capsys.readouterr().err
    code = main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_fetch_check(mnist_root: Path, tmp_path: Path, capsys):
    assert main(["fetch", "mnist", "--root", str(mnist_root), "--check"]) == 0
    assert main(["fetch", "kmnist", "--root", str(tmp_path / "empty"), "--check"]) == 1
    assert "vaerepair fetch kmnist" in capsys.readouterr().err


def test_train_and_evaluate_a_vae(mnist_root: Path, tmp_path: Path):
    out = tmp_path / "vae"
    args = [a if a != "2" else "1" for a in TRAIN]  # one epoch
    assert main([*args, "--kind", "vae", "--beta", "4", "--root", str(mnist_root), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "kl" in metrics["test"] and metrics["config"]["beta"] == 4.0
    assert metrics["test"]["nll_iwae"] > 0 and (out / "samples.png").is_file() and (out / "latent.png").is_file()
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--root", str(mnist_root), "--n", "8",
                 "--out", str(tmp_path / "e.json"), "--device", "cpu"]) == 0
    assert "elbo" in json.loads((tmp_path / "e.json").read_text())


@pytest.mark.parametrize("condition", ["label", "image"])
def test_train_evaluate_a_conditional_vae(mnist_root: Path, tmp_path: Path, condition: str, capsys):
    out = tmp_path / condition
    args = [a if a not in ("2", "gaussian:0.3") else {"2": "1", "gaussian:0.3": "block:10"}[a] for a in TRAIN]
    assert main([*args, "--kind", "vae", "--condition", condition, "--iwae-k", "10", "--root", str(mnist_root),
                 "--out", str(out)]) == 0
    assert "missing region only" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["psnr_missing"] > metrics["test"]["psnr_missing_input"] - 50  # a number, not NaN
    samples = _read(str(out / "samples.png"))
    rows = 10  # one row per class / clean, corrupted, eight completions
    scale = 64 // 28 + 1 if condition == "label" else 96 // 28 + 1
    assert samples.shape[-2] == rows * 28 * scale + (rows + 1) * 2
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--root", str(mnist_root), "--n", "8",
                 "--iwae-k", "10", "--out", str(tmp_path / "e.json"), "--device", "cpu"]) == 0
    assert "psnr_missing" in json.loads((tmp_path / "e.json").read_text())
    save_image(torch.rand(1, 28, 28), tmp_path / "in.png")
    assert main(["denoise", str(tmp_path / "in.png"), "-c", str(out / "best.pt"), "-o", str(tmp_path / "o.png")]) == 2
    assert "conditional model" in capsys.readouterr().err


def test_beta_sweep_writes_table_plot_and_names_the_best(mnist_root: Path, tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    args = [a for a in TRAIN if a != "train"]
    args = [a if a != "2" else "1" for a in args]
    assert main(["sweep", *args, "--betas", "0.5,4", "--root", str(mnist_root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["beta"]) for r in rows] == [0.5, 4.0]
    best = min(rows, key=lambda r: float(r["val_neg_elbo"]))
    assert f"best beta: {float(best['beta']):g} (by validation neg_elbo)" in printed
    for r in rows:  # the beta-weighted loss is recon + beta * KL of the same epoch
        assert float(r["val_loss"]) == pytest.approx(float(r["val_recon"]) + float(r["beta"]) * float(r["val_kl"]),
                                                     rel=1e-4)
    assert (out / "sweep.png").is_file() and "| β |" in (out / "sweep.md").read_text()
    with pytest.raises(SystemExit):
        main(["sweep", *args, "--betas", "6:2:1", "--root", str(mnist_root)])
    assert "expected betas as start:stop:step" in capsys.readouterr().err
    assert main(["sweep", *args, "--kind", "dae", "--root", str(mnist_root), "--out", str(out)]) == 2


def test_flow_vae_trains_from_the_command_line(mnist_root, tmp_path):
    out = tmp_path / "flow"
    assert main(["train", "--dataset", "mnist", "--root", str(mnist_root), "--kind", "vae", "--flows", "3",
                 "--epochs", "1", "--latent-dim", "4", "--hidden", "32", "--eval-n", "16", "--iwae-k", "10",
                 "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["flows"] == 3 and metrics["test"]["nll_iwae"] > 0


def test_fisher_autoencoder_trains_from_the_command_line(mnist_root, tmp_path, capsys):
    out = tmp_path / "fisher"
    args = ["train", "--dataset", "mnist", "--root", str(mnist_root), "--kind", "vae", "--objective", "fisher",
            "--epochs", "1", "--latent-dim", "4", "--hidden", "32", "--eval-n", "16", "--iwae-k", "10",
            "--no-progress", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "bad")]) == 2
    assert "--likelihood gaussian" in capsys.readouterr().err
    assert main([*args, "--likelihood", "gaussian", "--link", "sigmoid", "--learn-sigma", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["objective"] == "fisher" and metrics["config"]["learn_sigma"] is True
    first = metrics["history"]["records"][0]
    assert all(f"{split}_{term}" in first for split in ("train", "val")
               for term in ("fisher_z", "score_qx", "score_px", "laplacian"))


def test_train_resume_after_sigterm_continues_exactly(mnist_root, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from vaerepair.cli import train as commands

    args = [*TRAIN, "--root", str(mnist_root), "--epochs", "3", "--checkpoint-every", "1"]
    out = tmp_path / "run"
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    make_objective = commands.build_objective

    def stopping_objective(parsed):
        inner, calls = make_objective(parsed), []

        def objective(model, x_input, x_target, condition=None):
            if model.training:
                calls.append(1)
                if len(calls) == 4:  # call 1 is the first-batch check; 2 steps per epoch: epoch 2, step 1
                    os.kill(os.getpid(), signal.SIGTERM)
            return inner(model, x_input, x_target, condition)

        return objective

    monkeypatch.setattr(commands, "build_objective", stopping_objective)
    assert main([*args, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "SIGTERM stopped training at epoch 2, step 1" in err and f"--resume {out / 'last.pt'}" in err
    assert torch.load(out / "last.pt", weights_only=True)["progress"]["step"] == 1
    monkeypatch.setattr(commands, "build_objective", make_objective)
    assert main([*args, "--out", str(out), "--resume", str(out / "last.pt")]) == 0
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    resumed = torch.load(out / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert main([*args, "--latent-dim", "5", "--out", str(out), "--resume", str(out / "last.pt")]) == 2
    assert "latent_dim=4 in the checkpoint, 5 in this model" in capsys.readouterr().err


def test_train_a_ladder_on_a_dataset_then_evaluate_and_denoise_with_samples(mnist_root: Path, tmp_path: Path,
                                                                            capsys):
    out = tmp_path / "ladder"
    args = ["train", "--dataset", "mnist", "--root", str(mnist_root), "--kind", "ladder", "--hidden", "4,4",
            "--latent-dim", "2", "--likelihood", "gaussian", "--sigma", "0.3", "--free-bits", "0.01", "--epochs", "1",
            "--corruption", "gaussian:0.3", "--eval-n", "8", "--no-progress", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    for name in ["best.pt", "metrics.json", "grid.png", "loss.png", "uncertainty.png", "samples.png"]:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"train_kl_0", "train_kl_1"} <= set(metrics["history"]["records"][0])
    assert "nll_iwae" not in metrics["test"]  # no 1000-sample IWAE for a ladder unless asked
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--root", str(mnist_root), "--n", "8",
                 "--samples", "0", "--iwae-k", "3", "--out", str(tmp_path / "e.json"), "--device", "cpu"]) == 0
    assert "nll_iwae" in json.loads((tmp_path / "e.json").read_text())
    image = tmp_path / "noisy.png"
    save_image(torch.rand(1, 30, 26), image)
    std = tmp_path / "std.png"
    assert main(["denoise", "-c", str(out / "best.pt"), str(image), "-o", str(tmp_path / "r.png"), "--samples", "4",
                 "--std-out", str(std), "--seed", "1"]) == 0
    assert _read(str(std)).shape == (1, 30, 26) and _read(str(tmp_path / "r.png")).shape == (1, 30, 26)
    capsys.readouterr()
    assert main(["denoise", "-c", str(out / "best.pt"), str(image), "-o", str(tmp_path / "r.png"), "--samples", "0",
                 "--std-out", str(std)]) == 2
    assert "--samples N with N >= 2" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "x"), "--arch", "conv"]) == 2
    assert "--kind ladder has its own network" in capsys.readouterr().err


def test_one_module_per_command_and_one_meaning_per_option() -> None:
    """train's model kind is --kind and evaluate's noise levels --noise-sigma (as train's); --model names a
    shipped model in evaluate and denoise only. The old spellings still parse."""
    from vaerepair.cli import build_parser
    from vaerepair.cli.parser import COMMANDS

    for name, (module, _) in COMMANDS.items():
        assert module.__name__ == f"vaerepair.cli.{name}" and callable(module.run) and callable(module.add_arguments)
    parser = build_parser()
    assert parser.parse_args(["train", "--kind", "vae"]).kind == "vae"
    assert parser.parse_args(["train"]).hidden is None  # no sentinel: the default follows the kind
    assert parser.parse_args(["evaluate", "--data", "x", "--noise-sigma", "15,25"]).noise_sigma == [15.0, 25.0]


def test_old_spellings_work_with_a_note(mnist_root: Path, tmp_path: Path, capsys) -> None:
    from vaerepair.cli.build import widths
    from vaerepair.cli.main import _settle

    args = build_parser_args(["train", "--model", "ladder"])
    _settle(args)
    assert args.kind == "ladder" and widths(args) == (32, 32, 32)
    assert "note: --model ladder names the model kind here as --kind does" in capsys.readouterr().err
    args = build_parser_args(["evaluate", "--model", "grey", "--data", "d", "--sigma", "25"])
    _settle(args)
    assert args.noise_sigma == [25.0] and args.model == "grey"
    assert "use --noise-sigma" in capsys.readouterr().err
    assert main([*TRAIN[:1], "--model", "dae", *TRAIN[1:], "--epochs", "1", "--root", str(mnist_root),
                 "--out", str(tmp_path / "old")]) == 0
    assert "deprecated in train, demo and sweep" in capsys.readouterr().err


def build_parser_args(argv: list[str]):
    from vaerepair.cli import build_parser

    return build_parser().parse_args(argv)


def test_a_conv_net_with_its_default_widths_and_a_residual_dae_train(mnist_root: Path, tmp_path: Path, capsys):
    """--arch conv without --hidden used to fail ("the conv arch needs hidden=(C1, C2), got (400,)"): its
    default widths are the factory's (32, 64)."""
    i = TRAIN.index("--hidden")
    args = [a if a != "2" else "1" for a in TRAIN[:i] + TRAIN[i + 2 :]]  # one epoch, the default widths
    assert main([*args, "--arch", "conv", "--root", str(mnist_root), "--out", str(tmp_path / "c")]) == 0
    assert vr.load_model(tmp_path / "c" / "best.pt").spec["hidden"] == [32, 64]
    assert main([*args, "--arch", "unet", "--residual", "--likelihood", "gaussian", "--sigma", "0.1", "--root",
                 str(mnist_root), "--out", str(tmp_path / "r")]) == 0
    assert vr.load_model(tmp_path / "r" / "best.pt").residual
    assert main([*args, "--kind", "vae", "--residual", "--root", str(mnist_root), "--out", str(tmp_path / "v")]) == 2
    assert "--residual is a point-mass model's" in capsys.readouterr().err
