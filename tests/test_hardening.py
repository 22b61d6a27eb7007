"""Values that used to be accepted and give wrong results, or hang, now refused or applied with a message."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaerepair as vr
from vaerepair import corruptions as C
from vaerepair.cli import main
from vaerepair.sweep import beta_range
from vaerepair.training import CheckpointError, NonFiniteLossError

DATA = torch.rand(64, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def _trainer(tmp_path: Path, epochs: int = 2, corruption=None) -> vr.Trainer:
    torch.manual_seed(0)
    model = vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(16,))
    return vr.Trainer(model, vr.Reconstruction(), corruption or C.GaussianNoise(0.2), epochs=epochs, batch_size=32,
                      progress=False, checkpoint_dir=tmp_path)


def test_resume_with_more_epochs_trains_them_and_says_so(tmp_path: Path) -> None:
    _trainer(tmp_path, epochs=2).fit(DATA)
    longer = _trainer(tmp_path, epochs=3)
    message = r"with epochs=3 \(the run was started with epochs=2\): it now ends at epoch 3"
    with pytest.warns(UserWarning, match=message):
        history = longer.fit(DATA, resume=tmp_path / "last.pt")
    assert len(history) == 3


def test_resume_with_another_corruption_is_refused(tmp_path: Path) -> None:
    _trainer(tmp_path).fit(DATA)
    message = r"written with the corruption GaussianNoise\(sigma=0.2.*this Trainer has"
    with pytest.raises(CheckpointError, match=message):
        _trainer(tmp_path, corruption=C.GaussianNoise(0.5)).fit(DATA, resume=tmp_path / "last.pt")


def test_a_mask_patch_as_large_as_the_image_is_refused_before_any_allocation() -> None:
    x = torch.rand(2, 1, 32, 32)  # before: the cells were upsampled to 10**5 x 10**5 (40 GB), then cropped;
    for k in (32, 10**5):  # then: one cell per image, all missing or none, without a word
        with pytest.raises(ValueError, match=rf"patch_size={k} makes one cell of a whole 32x32 image"):
            C.RandomMask(0.5, patch_size=k)(x)
    edge = C.RandomMask(0.5, patch_size=31)(x, generator=torch.Generator().manual_seed(0), return_mask=True).mask
    assert edge.shape == x.shape  # 2 x 2 cells, the last ones cut by the border
    small = C.RandomMask(0.5, patch_size=4)(x, generator=torch.Generator().manual_seed(1), return_mask=True).mask
    blocks = small[:, 0].unfold(1, 4, 4).unfold(2, 4, 4)  # (B, 8, 8, 4, 4): constant within each 4x4 cell
    assert bool((blocks == blocks[..., :1, :1]).all())


def test_a_beta_grid_that_cannot_be_trained_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match=r"asks for .* betas, more than 1000; use a larger step"):
        beta_range("0:1:1e-300")
    assert len(beta_range("0:1:0.01")) == 101


def test_numbers_of_every_kind_are_numbers() -> None:
    assert C.GaussianNoise(np.float32(0.25)).sigma == (pytest.approx(0.25), pytest.approx(0.25))
    assert C.SaltAndPepper(np.float64(0.1)).amount == pytest.approx(0.1)
    assert vr.psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1), data_range=np.float32(1.0)) > 0


def test_integer_arguments_take_numpy_integers_and_refuse_floats_and_bools() -> None:
    k = np.int64(2)
    assert C.RandomMask(0.5, patch_size=k).patch_size == 2 and C.BlockErasure(size=np.int32(3)).size == 3
    assert vr.ELBO(n_samples=k).n_samples == 2 and vr.objectives.IWAE(k=k) is not None
    spec = vr.autoencoder((1, 12, 12), latent_dim=np.int64(4), hidden=(np.int64(8),)).spec
    assert type(spec["latent_dim"]) is int and spec["latent_dim"] == 4 and spec["hidden"] == [8]  # plain values
    for bad in (1.5, True, float("inf"), float("nan")):
        with pytest.raises((ValueError, TypeError), match="latent_dim must be an integer >= 1"):
            vr.autoencoder((1, 12, 12), latent_dim=bad)
        with pytest.raises((ValueError, TypeError), match="every hidden width"):
            vr.autoencoder((1, 12, 12), hidden=(bad,))
    with pytest.raises(TypeError, match="hidden must be a non-empty sequence"):
        vr.autoencoder((1, 12, 12), hidden="3")


@pytest.mark.parametrize("where", [(0, 0, 3, 3), (1, 0, 0, 0)])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_metrics_and_repair_refuse_non_finite_pixels_and_name_the_image(where, value: float) -> None:
    x = torch.rand(3, 1, 12, 12)
    bad = x.clone()
    bad[where] = value
    for metric in (vr.psnr, vr.ssim):  # before: a NaN score, as if it were a result
        with pytest.raises(ValueError, match=rf"x has non-finite pixel values \(NaN or Inf\) in image {where[0]}"):
            metric(bad, x)
        with pytest.raises(ValueError, match="y has non-finite"):
            metric(x, bad)
    model = vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(16,))
    with pytest.raises(ValueError, match=rf"in image {where[0]}; a NaN or Inf pixel would spread"):
        model.repair(bad)
    with pytest.raises(ValueError, match=rf"in image {where[0]}; a NaN or Inf pixel would spread"):
        model.repair(bad, tile=12)  # named before tiling: the image, not a tile


def test_repair_of_a_list_that_holds_no_images_is_a_clear_error() -> None:
    model = vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(16,))
    with pytest.raises(TypeError, match="must hold tensors \\(C, H, W\\), got list at index 0"):
        model.repair(torch.rand(2, 1, 12, 12).tolist())
    with pytest.raises(TypeError, match=r"got shape \(2, 1, 12, 12\) at index 0"):
        model.repair([torch.rand(2, 1, 12, 12)])


@pytest.mark.parametrize(("call", "message"), [
    (lambda: vr.psnr(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), data_range=0), "data_range must be finite"),
    (lambda: C.OneOf([C.GaussianNoise(0.1), C.SaltAndPepper(0.1)], [float("inf"), 1]), "weights must be finite"),
    (lambda: vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(16,)).repair(DATA, batch_size=0),
     "batch_size must be an integer >= 1"),
])
def test_values_that_gave_wrong_results_are_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("args", [["--limit", "0"], ["--limit", "-5"], ["--eval-n", "-1"], ["--iwae-k", "0"],
                                  ["--patience", "0"], ["--epochs", "0"], ["--latent-dim", "-1"],
                                  ["--checkpoint-every", "0"]])
def test_cli_counts_must_be_positive(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", *args])
    assert stop.value.code == 2 and "expected a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--corruption", "block:inf"], "use block:SIZE"),
    (["--corruption", "block:nan"], "use block:SIZE"),
    (["--corruption", "mask:0.5:inf"], "PATCH_SIZE must be a whole number"),
    (["--threads", "-1"], "expected a whole number >= 1"),
    (["--beta", "-1"], "expected a finite number >= 0"),  # before: accepted (ignored by a dae, or a negative KL)
    (["--beta", "nan"], "expected a finite number >= 0"),
    (["--lr", "0"], "expected a finite number > 0"),
    (["--sigma", "inf"], "expected a finite number >= 0"),
    (["--val-fraction", "1"], "strictly between 0 and 1"),
    (["--flows", "-2"], "expected a whole number >= 0"),
    (["--hidden", "16,0"], "every width must be >= 1"),
    (["--seed", str(2**70)], r"the seed must be in \[0, 2\*\*63\)"),
])
def test_cli_mistakes_are_one_line(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert re.search(message, err.strip().splitlines()[-1])


def test_an_output_folder_that_cannot_be_one_is_refused_before_training(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", "--out", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["train", "--out", str(afile / "run")]) == 2
    assert "is under" in capsys.readouterr().err


def test_a_read_only_output_folder_is_refused_before_training(tmp_path: Path, monkeypatch, capsys) -> None:
    # root passes every permission check, so the file system's answers are simulated
    import vaerepair.cli.common as commands

    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(commands.os, "access", lambda p, mode: False if Path(p) == ro else real_access(p, mode))
    assert main(["train", "--out", str(ro)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(ro)!r} is not writable; choose another --out" in err and err.count("\n") == 1

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert main(["train", "--out", str(tmp_path / "new")]) == 2
    assert "cannot create --out" in (err := capsys.readouterr().err) and "Permission denied" in err


def test_a_diverging_run_is_an_error_line_with_exit_1(mnist_root: Path, tmp_path: Path, capsys) -> None:
    code = main(["train", "--dataset", "mnist", "--root", str(mnist_root), "--epochs", "2", "--lr", "1e6",
                 "--likelihood", "gaussian", "--latent-dim", "4", "--hidden", "32", "--no-progress",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "error: non-finite" in err and "Traceback" not in err


def test_denoise_refuses_two_inputs_that_would_overwrite_each_other(tmp_path: Path, capsys) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / folder / "photo.png")
    torch.manual_seed(0)
    model = vr.autoencoder((1, 28, 28), latent_dim=4, hidden=(16,))
    vr.training.save_checkpoint(tmp_path / "m.pt", {"model_spec": model.spec, "model": model.state_dict()})
    code = main(["denoise", "-c", str(tmp_path / "m.pt"), str(tmp_path / "a" / "photo.png"),
                 str(tmp_path / "b" / "photo.png"), "-o", str(tmp_path / "out")])
    assert code == 2 and "would both be written to photo_repaired.png" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "bad magic", "random bytes", "labels of 200"])
def test_damaged_dataset_files_are_named_with_the_fix(tmp_path, damage):
    from tests.conftest import make_mnist_like, write_idx

    folder = tmp_path / "MNIST" / "raw"
    make_mnist_like(folder, n_train=20, n_test=10)
    images = folder / "train-images-idx3-ubyte"
    if damage == "truncated":
        images.write_bytes(images.read_bytes()[:5000])
    elif damage == "bad magic":
        images.write_bytes(b"\x01\x02" + images.read_bytes()[2:])
    elif damage == "random bytes":
        images.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    else:
        write_idx(folder / "train-labels-idx1-ubyte", np.full(20, 200, dtype=np.uint8))
    with pytest.raises(vr.data.DatasetNotFoundError, match="delete .*MNIST/raw.* and fetch it again"):
        vr.data.load("mnist", root=tmp_path)


def test_a_damaged_system_archive_is_a_clear_error(tmp_path, monkeypatch):
    import dataclasses

    from tests.conftest import make_mnist_like
    from vaerepair.data import registry

    system = tmp_path / "system"
    make_mnist_like(system, n_train=20, n_test=10, compress=True)
    archive = system / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:200])  # a truncated .gz: EOFError inside gzip
    entry = dataclasses.replace(registry.DATASETS["fashion-mnist"], system_dirs=(str(system),))
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist", entry)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(vr.data.DatasetNotFoundError, match="could not extract it .*damaged: reinstall"):
        vr.data.locate("fashion-mnist")


def test_two_runs_into_one_out_folder_are_refused(tmp_path, mnist_root, capsys):
    import subprocess
    import sys

    from vaerepair._io import LOCK_NAME, DirectoryLock

    out = tmp_path / "run"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.mkdir()
        (out / LOCK_NAME).write_text(str(other.pid))  # a live process holds the folder
        args = ["train", "--dataset", "mnist", "--root", str(mnist_root), "--epochs", "1", "--limit", "40",
                "--eval-n", "8", "--no-progress", "--out", str(out)]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"is in use by another vaerepair run (pid {other.pid})" in err and err.count("\n") == 1
        assert not (out / "best.pt").exists()
    finally:
        other.kill()
        other.wait()
    assert main(args) == 0  # the owner is gone: a stale lock is taken over
    assert (out / "best.pt").is_file() and not (out / LOCK_NAME).exists()  # released at the end
    with DirectoryLock(out), DirectoryLock(out):  # this process may nest its own lock
        assert (out / LOCK_NAME).read_text() == str(__import__("os").getpid())


def test_a_full_disk_says_so_and_names_the_file(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from vaerepair.training.checkpoint import save_checkpoint

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9, 0))
    with pytest.raises(CheckpointError, match="no space left on device .*last.pt"):
        save_checkpoint(tmp_path / "last.pt", {"model": {}})
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


@pytest.mark.parametrize("where", ["picture", "metrics"])
def test_a_disk_that_fills_while_the_cli_writes_its_results_names_the_file(mnist_root, tmp_path, monkeypatch, capsys,
                                                                          where):
    """The checkpoints survived, but a raw OSError traceback ended the run."""
    import errno

    import vaerepair.plots
    import vaerepair.training.history

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "picture":
        monkeypatch.setattr(vaerepair.plots, "save_image", full)
    else:
        monkeypatch.setattr(vaerepair.training.history.json, "dump", full)
    out = tmp_path / "run"
    code = main(["train", "--dataset", "mnist", "--root", str(mnist_root), "--epochs", "1", "--limit", "64",
                 "--latent-dim", "4", "--hidden", "16", "--eval-n", "16", "--iwae-k", "2", "--no-progress",
                 "--out", str(out)])
    err = capsys.readouterr().err
    name = r"\w+\.png" if where == "picture" else r"metrics\.json"
    assert code == 1 and "Traceback" not in err, err
    assert re.search(rf"error: \S*{name}: no space left on device .*checkpoints already written are kept", err), err
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()


def test_repairs_worse_than_the_input_for_epochs_warn_and_are_marked():
    torch.manual_seed(0)
    images = torch.rand(64, 1, 16, 16)
    model = vr.autoencoder((1, 16, 16), latent_dim=4, hidden=(16,))
    trainer = vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(0.5), epochs=4, batch_size=16, lr=1e6,
                         device="cpu", progress=False)
    with pytest.warns(RuntimeWarning, match="worse than the corrupted inputs for 3 epochs .*smaller learning rate"):
        history = trainer.fit(images[:48], images[48:])
    assert all(r["val_psnr"] < r["val_psnr_input"] for r in history.records)
    assert [r.get("worse_than_input") for r in history.records] == [1.0] * 4


def test_training_without_a_corruption_validates_without_an_infinite_input_psnr():
    # the input is the clean image: its PSNR is inf, and was logged and warned about as a non-finite term
    trainer = vr.Trainer(vr.autoencoder((1, 16, 16), latent_dim=4, hidden=(16,)), vr.Reconstruction(), None,
                         epochs=1, batch_size=16, device="cpu", progress=False)
    record = trainer.fit(torch.rand(32, 1, 16, 16), torch.rand(16, 1, 16, 16)).records[-1]
    assert "val_psnr" in record and "val_psnr_input" not in record


def test_a_non_finite_logged_term_is_named():
    from vaerepair.objectives import ObjectiveResult

    def objective(model, x_in, x_target, condition=None):
        loss = (model.reconstruct(x_in) - x_target).square().mean()
        return ObjectiveResult(loss, {"mse": loss.detach().expand(len(x_in)),
                                      "log_ratio": torch.full((len(x_in),), float("nan"))})

    trainer = vr.Trainer(vr.autoencoder((1, 8, 8), latent_dim=4, hidden=(16,)), objective, epochs=1,
                         batch_size=16, device="cpu", progress=False)
    with pytest.warns(RuntimeWarning, match="'train_log_ratio' was nan in epoch 1 although the loss was finite"):
        trainer.fit(torch.rand(32, 1, 8, 8))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_and_double_images_are_cast_by_repair_and_named_by_reconstruct(dtype):
    model = vr.autoencoder((1, 28, 28), latent_dim=4, hidden=(16,))
    x = torch.rand(3, 1, 28, 28)
    out = model.repair(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out, model.repair(x.to(dtype).float()).to(dtype), atol=0, rtol=0)
    with pytest.raises(TypeError, match=f"x is {dtype} but the model's weights are torch.float32: cast the images"):
        model.reconstruct(x.to(dtype))


def test_output_files_and_roots_that_cannot_be_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    cases = [
        (["evaluate", "--checkpoint", "x.pt", "--out", str(tmp_path)], "is a folder; give a file name"),
        (["evaluate", "--checkpoint", "x.pt", "--grid", str(a_file / "g.png")], "is a file, not a folder"),
        (["fetch", "mnist", "--root", str(a_file)], "is a file; give the folder"),
        (["fetch", "mnist", "--root", str(a_file / "under")], "(Not a directory); give a root that is"),
        (["denoise", "--model", "grey", str(a_file), "-o", str(a_file / "x.png")], "is a file, not a folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


@pytest.mark.parametrize("name", [3, None, 0.5])
def test_load_names_what_it_takes(name) -> None:
    with pytest.raises(TypeError, match=r"name must be a dataset name \(mnist.* or a folder of images, got"):
        vr.load(name)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.5])
def test_likelihood_targets_are_checked_in_one_pass_and_non_finite_ones_named(value: float) -> None:
    from vaerepair.distributions import Bernoulli, ContinuousBernoulli

    x = torch.rand(3, 1, 6, 6)
    x[1, 0, 2, 2] = value
    for likelihood in (Bernoulli(), ContinuousBernoulli()):
        p = likelihood(torch.zeros(3, 1, 6, 6))
        message = "non-finite pixel values \\(NaN or Inf\\) in image 1" if value != 1.5 else r"got values in \[0"
        with pytest.raises(ValueError, match=message):  # before: a NaN target passed the range check
            p.log_prob(x)
    assert torch.isfinite(Bernoulli()(torch.zeros(3, 1, 6, 6)).log_prob(torch.rand(3, 1, 6, 6))).all()


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), -float("inf")])
def test_the_gradient_check_flags_any_non_finite_gradient_of_any_dtype(bad: float | None) -> None:
    """The NaN guard's one-pass check (the gradient scaler's) against the oracle isfinite().all(), with
    gradients of two dtypes; a non-finite value in either group is found, and the flag it keeps between
    checks (set to 1 by the kernel, back to 0 only after a check that found it) reads 0 on the next clean
    step."""
    from vaerepair.training.guard import Guard

    params = [torch.nn.Parameter(torch.zeros(300, 7)), torch.nn.Parameter(torch.zeros(5, dtype=torch.float64)),
              torch.nn.Parameter(torch.zeros(2))]
    model = torch.nn.ParameterList(params)
    for p in params[:2]:
        p.grad = torch.randn_like(p)
    guard = Guard("skip")
    loss, running = torch.tensor(1.0), torch.tensor(2.0)
    for where in (0, 1, 0):
        if bad is not None:
            params[where].grad.view(-1)[3] = bad
        flag = guard._gradient_flags(params)
        oracle = all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)
        assert flag is not None and (float(flag) == 0) == oracle == (bad is None)
        assert guard.verify(loss, running, {}, params, model, True, "here") == oracle
        params[where].grad = torch.randn_like(params[where])
        assert guard.verify(loss, running, {}, params, model, True, "there")  # a clean step after a bad one
        assert float(guard._gradient_flags(params)) == 0
    assert guard._gradient_flags([torch.nn.Parameter(torch.zeros(2))]) is None


def test_the_gradient_check_falls_back_to_sums_where_torch_lacks_the_scaler_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from vaerepair.training.guard import Guard

    def missing(*args: object) -> None:
        raise RuntimeError("not supported here")

    monkeypatch.setattr(torch, "_amp_foreach_non_finite_check_and_unscale_", missing)
    param = torch.nn.Parameter(torch.zeros(4))
    param.grad = torch.ones(4)
    assert float(Guard()._gradient_flags([param])) == 0
    param.grad[2] = float("nan")
    assert float(Guard()._gradient_flags([param])) > 0


def test_a_refused_gradient_list_leaves_no_stale_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's kernel may set the kept flag and then refuse a later gradient (one on another device): the
    guard falls back to sums, and the flag it keeps between checks does not carry that 1 to the next step."""
    from vaerepair.training.guard import Guard

    real = torch._amp_foreach_non_finite_check_and_unscale_
    calls = []

    def sets_then_refuses(grads: list[torch.Tensor], found: torch.Tensor, scale: torch.Tensor) -> None:
        calls.append(1)
        if len(calls) == 1:
            found.fill_(1.0)
            raise RuntimeError("one of scaled_grads was not a CPU tensor.")
        real(grads, found, scale)

    monkeypatch.setattr(torch, "_amp_foreach_non_finite_check_and_unscale_", sets_then_refuses)
    model = torch.nn.Linear(3, 2)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.ones_like(p)
    guard = Guard("skip")
    assert guard.verify(torch.tensor(1.0), torch.tensor(1.0), {}, params, model, True, "first")  # the sums' answer
    assert guard.verify(torch.tensor(1.0), torch.tensor(1.0), {}, params, model, True, "second")  # the kernel's


@pytest.mark.parametrize("free_reads", [True, False])
@pytest.mark.parametrize("bad", ["none", "loss", "running", "gradient"])
def test_the_guard_finds_every_non_finite_value_whether_it_reads_them_apart_or_gathered(free_reads: bool,
                                                                                         bad: str) -> None:
    """The CPU reads the loss, the running sum and the gradient flag one by one; a device where a read is a
    synchronisation (CUDA) gathers them into one read: both find the same bad values, and a clean step after
    a bad one passes (the flag is kept between checks and zeroed)."""
    from vaerepair.training.guard import Guard

    model = torch.nn.Linear(3, 2)
    params = list(model.parameters())
    for policy in ("skip", "raise"):
        guard = Guard(policy, device=torch.device("cpu"))
        guard.free_reads = free_reads
        for p in params:
            p.grad = torch.ones_like(p)
        loss, running = torch.tensor(1.5), torch.tensor(3.0)
        if bad == "loss":
            loss = torch.tensor(float("nan"))
        elif bad == "running":
            running = torch.tensor(float("inf"))
        elif bad == "gradient":
            params[1].grad[0] = -float("inf")
        if bad == "none":
            assert guard.verify(loss, running, {}, params, model, True, "here")
        elif policy == "skip":
            assert not guard.verify(loss, running, {}, params, model, True, "here")
        else:
            what = "gradient at here .* in bias" if bad == "gradient" else "loss at here"
            with pytest.raises(NonFiniteLossError, match=f"non-finite {what}"):
                guard.verify(loss, running, {}, params, model, True, "here")
        for p in params:
            p.grad = torch.ones_like(p)
        assert guard.verify(torch.tensor(1.0), torch.tensor(2.0), {}, params, model, True, "there")
        assert guard.verify(torch.tensor(1.0), torch.tensor(2.0), {}, params, model, False, "there")
