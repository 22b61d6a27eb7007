"""Trainer overhead: wall time of one training epoch with vaerepair.Trainer vs a plain PyTorch loop.

Same model (same initial weights), same batches (same permutation), same noise
(same generator seeds), same process; the two are alternated and the median of
several epochs is compared. The plain loop is what one writes by hand: index the
uint8 tensor, scale, add noise, forward, MSE/BCE, backward, step, and accumulate
the loss with ``.item()`` for printing.

Run: python benchmarks/throughput.py [--threads 1 2] [--repeats 7] [--n 12000]
Ends with the line ``time ratio (Trainer / plain): X.XX`` (for the reports' MLP
784-400-20 at the first thread count; other settings are printed above it).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import vaerepair as vr


def plain_epoch(model: vr.LatentVariableModel, opt: torch.optim.Optimizer, images: torch.Tensor,
                sigma: float, batch_size: int, seed: int) -> float:
    """One epoch as one writes it by hand (the same batches and noise as the Trainer's)."""
    model.train()
    batch_gen = torch.Generator().manual_seed(seed + 2)
    noise_gen = torch.Generator().manual_seed(seed + 3)
    order = torch.randperm(len(images), generator=batch_gen)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[order[start : start + batch_size]].float() / 255
        noisy = x + sigma * torch.randn(x.shape, generator=noise_gen)
        logits = model.decoder(model.posterior.head(model.encoder.net(noisy.flatten(1) if isinstance(
            model.encoder, vr.nets.MLPEncoder) else noisy)))
        loss = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(x)
    return total / len(images)


def measure(arch: str, images: torch.Tensor, repeats: int, batch_size: int) -> tuple[float, float, float]:
    sigma, seed = 0.5, 0
    torch.manual_seed(0)
    if arch == "mlp":
        model = vr.autoencoder(arch="mlp", latent_dim=20)  # the reports' 784-400-20
    else:
        model = vr.autoencoder(arch="conv", latent_dim=32, hidden=(32, 64), features=256)
    plain_model = copy.deepcopy(model)
    plain_opt = torch.optim.Adam(plain_model.parameters(), lr=1e-3)
    trainer = vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(sigma), epochs=1, batch_size=batch_size,
                         device="cpu", seed=seed, progress=False)
    # Warm-up (allocator, first-call costs), and a check that both compute the same thing.
    trainer.fit(images)
    loss_plain = plain_epoch(plain_model, plain_opt, images, sigma, batch_size, seed)
    loss_trainer = trainer.history.last["train_loss"]
    if abs(loss_plain - loss_trainer) > 1e-3 * abs(loss_plain):
        raise SystemExit(f"the two loops disagree: plain {loss_plain:.4f} vs Trainer {loss_trainer:.4f}")
    t_trainer, t_plain = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.fit(images)
        t_trainer.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain_epoch(plain_model, plain_opt, images, sigma, batch_size, seed)
        t_plain.append(time.perf_counter() - t0)
    mt, mp = statistics.median(t_trainer), statistics.median(t_plain)
    return mt, mp, mt / mp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--archs", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--n", type=int, default=12000, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    images = vr.load("fashion-mnist", "train").images[: args.n]
    headline = None
    print(f"{'arch':6}{'threads':>8}{'Trainer s':>11}{'plain s':>10}{'ratio':>8}   (median of {args.repeats}, "
          f"{args.n} images, batch {args.batch_size})")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for arch in args.archs:
            mt, mp, ratio = measure(arch, images, args.repeats, args.batch_size)
            print(f"{arch:6}{threads:8d}{mt:11.3f}{mp:10.3f}{ratio:8.3f}", flush=True)
            if headline is None:
                headline = ratio
    print(f"time ratio (Trainer / plain): {headline:.2f}")


if __name__ == "__main__":
    main()
