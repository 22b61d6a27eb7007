"""Child process for the resume tests: train a tiny VAE, optionally killing itself mid-epoch.

python tests/resume_script.py OUT_DIR full|kill-at-N|resume [tensor|loader|ladder]
Writes OUT_DIR/final.pt (the final weights) when training ends. ``loader`` trains from a LoaderSource with
two worker processes instead of the in-memory source; ``ladder`` trains a two-level ladder VAE instead (its
validation repairs draw posterior samples).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

import vaerepair as vr


class KillAt:
    """The ELBO, but the process SIGKILLs itself on the N-th training step (before the update)."""

    def __init__(self, n: int | None) -> None:
        self.inner = vr.ELBO(beta=vr.objectives.LinearWarmup(20))
        self.n, self.calls = n, 0

    def __call__(self, model, x_input, x_target, condition=None):
        if model.training:
            self.calls += 1
            if self.n is not None and self.calls == self.n:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(model, x_input, x_target, condition)

    def step(self) -> None:
        self.inner.step()

    def hparams(self) -> dict:
        return self.inner.hparams()

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    data = torch.rand(150, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0 if mode != "resume" else 99)  # a resumed run must not depend on the fresh init
    source = sys.argv[3] if len(sys.argv) > 3 else "tensor"
    if source == "ladder":
        model = vr.ladder_vae(widths=(4, 4), latent_channels=2, sigma=0.3, repair_samples=3)
    else:
        model = vr.variational_autoencoder((1, 12, 12), latent_dim=3, hidden=(16,))
    kill = int(mode.split("-")[-1]) if mode.startswith("kill-at-") else None
    trainer = vr.Trainer(model, KillAt(kill), vr.GaussianNoise(0.2), epochs=3, batch_size=32, progress=False,
                         checkpoint_dir=out / "ckpt", checkpoint_every=2,
                         scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5))
    train = data[:120]
    if source == "loader":
        train = vr.training.LoaderSource(vr.ImageDataset((train * 255).round().to(torch.uint8)), num_workers=2)
    trainer.fit(train, data[120:], resume=out / "ckpt" / "last.pt" if mode == "resume" else None)
    torch.save(model.state_dict(), out / "final.pt")


if __name__ == "__main__":
    main()
