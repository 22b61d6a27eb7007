"""Checkpoint integrity and non-finite data: damaged files, NaN weights, NaN pixels, stale temporary files,
epochs whose every step was skipped."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vaerepair as vr
from vaerepair.training import CheckpointError, NonFiniteLossError, load_checkpoint, load_model, save_checkpoint

DATA = torch.rand(64, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def _trained(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(16,))
    vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(0.2), epochs=1, batch_size=32, progress=False,
               checkpoint_dir=tmp_path).fit(DATA)
    return tmp_path / "last.pt"


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)  # NaN == NaN here


def test_no_single_bit_flip_changes_what_loads(tmp_path: Path) -> None:
    path = _trained(tmp_path)
    good, original = path.read_bytes(), load_checkpoint(path)
    rng = random.Random(0)
    refused = 0
    for trial in range(40):
        damaged = bytearray(good)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        flipped = tmp_path / f"flip{trial}.pt"
        flipped.write_bytes(bytes(damaged))
        try:
            loaded = load_checkpoint(flipped)
        except CheckpointError as err:
            assert "corrupted" in str(err) or "not a vaerepair" in str(err)
            refused += 1
            continue
        # a flip the zip's CRCs cannot see lies in padding that nothing reads: what loads is unchanged
        assert _same(loaded, original), f"flip {trial} loaded changed contents"
    assert refused >= 30  # most bytes are tensor data, covered by the CRCs


def test_non_finite_weights_are_refused_on_load(tmp_path: Path) -> None:
    state = load_checkpoint(_trained(tmp_path))
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] * float("nan")
    save_checkpoint(tmp_path / "nan.pt", {k: v for k, v in state.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match=rf"non-finite \(NaN or Inf\) weights in model: {name}"):
        load_model(tmp_path / "nan.pt")


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".last.pt.tmp-{int(dead.stdout)}"
    stale.write_bytes(b"x" * 1000)  # what a kill during a checkpoint write leaves
    mine = tmp_path / f".best.pt.tmp-{os.getppid()}"  # a live process's file is left alone
    mine.write_bytes(b"y")
    _trained(tmp_path)
    assert not stale.exists() and mine.exists()


def test_nan_pixels_are_refused_naming_the_image() -> None:
    images = DATA.clone()
    images[5, 0, 3, 4] = float("nan")
    trainer = vr.Trainer(vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(16,)), vr.Reconstruction(),
                         epochs=1, batch_size=32, progress=False)
    with pytest.raises(ValueError, match=r"train has non-finite pixel values \(NaN or Inf\) in image 5"):
        trainer.fit(images)
    with pytest.raises(ValueError, match=r"val has non-finite pixel values \(NaN or Inf\) in image 5"):
        trainer.fit(DATA, images)
    with pytest.raises(ValueError, match=r"x has non-finite pixel values \(NaN or Inf\) in image 5"):
        vr.GaussianNoise(0.1)(images)


def test_an_epoch_whose_every_step_was_skipped_is_an_error() -> None:
    class NaNAfterTheFirstCall:  # the first call is the Trainer's first-batch check
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, model, x_input, x_target, condition=None):
            self.calls += 1
            result = vr.Reconstruction()(model, x_input, x_target)
            return result if self.calls == 1 else vr.ObjectiveResult(result.loss * float("nan"), result.terms)

    trainer = vr.Trainer(vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(16,)), NaNAfterTheFirstCall(), epochs=2,
                         batch_size=32, progress=False, nan_policy="skip")
    with pytest.raises(NonFiniteLossError, match=r"all 2 steps of epoch 1 were skipped"):
        trainer.fit(DATA)
