"""Child process for the multi-process test: one data-parallel (or single-process) training run.

torchrun --nproc_per_node=2 tests/ddp_script.py OUT ddp|ddp-stop-at-N|ddp-resume|ddp-fisher
python tests/ddp_script.py OUT single|single-fisher
Rank 0 writes OUT/final.pt (weights) and OUT/history.json.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from functools import partial
from pathlib import Path

import torch

import vaerepair as vr
from vaerepair.models import LatentVariableModel
from vaerepair.testing.models import ExchangeableModel, _image_keys, _keyed_noise, small_model
from vaerepair.training import TrainingInterrupted


class StopAt:
    """Reconstruction; on rank 0's N-th training step the process sends itself SIGTERM."""

    def __init__(self, n: int | None) -> None:
        self.inner, self.n, self.calls = vr.Reconstruction(), n, 0

    def __call__(self, model, x_input, x_target, condition=None):
        if model.training and int(os.environ.get("RANK", "0")) == 0:
            self.calls += 1
            if self.calls == self.n:
                os.kill(os.getpid(), signal.SIGTERM)
        return self.inner(model, x_input, x_target, condition)


class SameDrawsEverywhere(ExchangeableModel):
    """A VAE whose posterior noise depends only on each image's bytes (one fixed salt): the same draws in
    one process and in two, so that the two runs can be compared exactly."""

    def encode(self, x, condition=None):
        q = LatentVariableModel.encode(self, x, condition)
        q.standard_noise = partial(_keyed_noise, keys=_image_keys(x), salt=0, like=q.loc)
        return q


def fisher_run(out: Path) -> None:
    """The Fisher autoencoder (autograd.grad with create_graph inside the loss) under DDP or alone."""
    data = torch.rand(100, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    model = SameDrawsEverywhere.from_model(small_model("mlp", "gaussian", "gaussian", (1, 12, 12), seed=0))
    trainer = vr.Trainer(model, vr.FisherDivergence(), vr.GaussianNoise(0.2), epochs=2, batch_size=31,
                         device="cpu", progress=False)
    trainer.fit(data[:80], data[80:])
    if trainer.dist.is_main:
        torch.save(model.state_dict(), out / "final.pt")
        (out / "history.json").write_text(json.dumps({"world_size": trainer.dist.world_size,
                                                      "records": trainer.history.records}))


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    if mode.endswith("fisher"):
        out.mkdir(parents=True, exist_ok=True)
        fisher_run(out)
        return
    data = torch.rand(100, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(32,), likelihood="gaussian", sigma=0.3)
    stop = int(mode.rsplit("-", 1)[1]) if mode.startswith("ddp-stop-at-") else None
    # batch 31: shares of 16 and 15 images, and a last batch of 18 (9 + 9)
    trainer = vr.Trainer(model, StopAt(stop), vr.GaussianNoise(0.2), epochs=3, batch_size=31, device="cpu",
                         progress=False, checkpoint_dir=out / "ckpt", checkpoint_every=2)
    try:
        trainer.fit(data[:80], data[80:], resume=out / "ckpt" / "last.pt" if mode == "ddp-resume" else None)
    except TrainingInterrupted:
        sys.exit(3)
    if trainer.dist.is_main:
        torch.save(model.state_dict(), out / "final.pt")
        (out / "history.json").write_text(json.dumps({"world_size": trainer.dist.world_size,
                                                      "records": trainer.history.records}))


if __name__ == "__main__":
    main()
