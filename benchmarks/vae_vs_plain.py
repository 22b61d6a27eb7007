"""VAE through vaerepair vs a plain hand-written PyTorch VAE: same data, budget and optimiser.

The reports' MLP (784-400-20, ReLU, Bernoulli/BCE likelihood, N(0, I) prior,
analytic KL), Adam 1e-3, batch 128, 10 epochs on the Fashion-MNIST training
set (clean images), both in this process, alternating one epoch of each.
Reports the test negative ELBO of each (nats per image, one posterior sample,
analytic KL), the median per-epoch wall time (the Trainer's includes its
per-fit set-up) and the median over epochs of the two epochs' ratio (the pair
of an epoch is timed seconds apart, which a slow drift of a shared machine
does not separate).

Run: python benchmarks/vae_vs_plain.py [--epochs 10] [--threads 2]
Ends with ``nats difference (vaerepair - plain): X.XX``, the 95 % interval of the
median ratio (more epochs narrow it) and ``time ratio (vaerepair / plain): X.XX``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from timing import median_interval  # benchmarks/timing.py
from torch import nn

import vaerepair as vr


class PlainVAE(nn.Module):
    """The textbook VAE, written out by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(784, 400)
        self.mu = nn.Linear(400, 20)
        self.logvar = nn.Linear(400, 20)
        self.dec1 = nn.Linear(20, 400)
        self.dec2 = nn.Linear(400, 784)

    def neg_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image negative ELBO ``(B,)`` for x ``(B, 784)`` in [0, 1]."""
        h = F.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.dec2(F.relu(self.dec1(z)))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)
        return recon + kl


def plain_epoch(model: PlainVAE, opt: torch.optim.Optimizer, images: torch.Tensor, batch_size: int,
                gen: torch.Generator) -> float:
    """One epoch as one writes it by hand; returns the mean training loss."""
    order = torch.randperm(len(images), generator=gen)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[order[start : start + batch_size]].float().div(255).flatten(1)
        loss = model.neg_elbo(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(x)
    return total / len(images)


@torch.no_grad()
def plain_test(model: PlainVAE, images: torch.Tensor) -> float:
    x = images.float().div(255).flatten(1)
    return float(torch.cat([model.neg_elbo(b) for b in x.split(1000)]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = vr.load("fashion-mnist", "train")
    test = vr.load("fashion-mnist", "test")

    torch.manual_seed(args.seed)
    model = vr.variational_autoencoder(latent_dim=20, hidden=(400,), likelihood="bernoulli")
    trainer = vr.Trainer(model, vr.ELBO(), None, epochs=1, batch_size=128, lr=1e-3, device="cpu",
                         seed=args.seed, progress=False)
    torch.manual_seed(args.seed)
    plain = PlainVAE()
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)  # as the Trainer's default
    plain_gen = torch.Generator().manual_seed(args.seed)
    ours_times, plain_times = [], []
    for epoch in range(args.epochs):  # alternate the two, one epoch at a time, each first every other epoch
        for which in (("ours", "plain") if epoch % 2 == 0 else ("plain", "ours")):
            t0 = time.perf_counter()
            if which == "ours":
                trainer.fit(train)  # fit continues its streams
                ours_times.append(time.perf_counter() - t0)
            else:
                plain_epoch(plain, plain_opt, train.images, 128, plain_gen)
                plain_times.append(time.perf_counter() - t0)
    torch.manual_seed(args.seed + 1)
    ours = trainer.evaluate(test)["loss"]  # ELBO(beta=1) on clean images: the negative ELBO
    torch.manual_seed(args.seed + 1)
    theirs = plain_test(plain, test.images)

    t_ours, t_plain = statistics.median(ours_times), statistics.median(plain_times)
    # each epoch's pair, timed seconds apart, cancels the slow drifts of a shared machine
    ratio, low, high = median_interval([o / p for o, p in zip(ours_times, plain_times, strict=True)])
    print(f"test negative ELBO (nats/image): vaerepair {ours:.2f}, plain {theirs:.2f}")
    print(f"median epoch time (s): vaerepair {t_ours:.3f}, plain {t_plain:.3f} ({args.threads} threads)")
    print("epoch times (s), vaerepair:", " ".join(f"{t:.2f}" for t in ours_times))
    print("epoch times (s), plain:    ", " ".join(f"{t:.2f}" for t in plain_times))
    print(f"nats difference (vaerepair - plain): {ours - theirs:.2f}")
    print(f"95 % interval of the median ratio (order statistics of {len(ours_times)} epochs): {low:.2f}-{high:.2f}")
    print(f"time ratio (vaerepair / plain): {ratio:.2f}")


if __name__ == "__main__":
    main()
