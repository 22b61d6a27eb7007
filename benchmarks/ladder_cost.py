"""What a ladder VAE costs: a training step against a point-mass U-Net of the same widths, and a sampled repair.

Both steps are a forward pass, a backward pass and an Adam update on the same
batch of Fashion-MNIST-sized noisy images (the ladder: the ELBO with one
top-down draw; the U-Net: ``Reconstruction``), measured alternately in one
process; the ratio is the median of the rounds' ratios. Then the time of a
100-sample repair (posterior mean and per-pixel standard deviation; the
bottom-up pass once, 100 top-down passes) of one 256x256 image.

Run: python benchmarks/ladder_cost.py [--threads 2] [--rounds 7] [--widths 32 32 32] [--blocks 1]
     [--full-resolution]
It ends with ``time ratio (ladder ELBO step / U-Net step): X.XX``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import vaerepair as vr


def step_fn(model: torch.nn.Module, objective: Callable, x: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        objective(model, x, x).loss.backward()
        opt.step()

    return step


def timed(fn: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 32, 32])
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--full-resolution", action="store_true", help="the finest level at full resolution")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    widths = tuple(args.widths)
    ladder = vr.ladder_vae(widths=widths, latent_channels=args.latent, sigma=0.5, blocks=args.blocks,
                           full_resolution=args.full_resolution)
    unet = vr.autoencoder(arch="unet", image_shape=(1, None, None), hidden=widths, latent_dim=args.latent,
                          likelihood="gaussian", sigma=0.5, activation="silu")
    x = torch.rand(args.batch_size, 1, 28, 28) + 0.5 * torch.randn(args.batch_size, 1, 28, 28)
    steps = {"ladder": step_fn(ladder, vr.ELBO(), x), "unet": step_fn(unet, vr.Reconstruction(), x)}
    for step in steps.values():  # warm-up
        timed(step, 2)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            times[name].append(timed(steps[name], args.steps))
    ratios = [a / b for a, b in zip(times["ladder"], times["unet"], strict=True)]
    n_ladder = sum(p.numel() for p in ladder.parameters())
    n_unet = sum(p.numel() for p in unet.parameters())
    print(f"{args.threads} thread(s), batch {args.batch_size} of 28x28, widths {widths}, latent {args.latent}")
    print(f"ladder VAE ({n_ladder} parameters, {len(widths)} levels, {args.blocks} block(s), full resolution: "
          f"{args.full_resolution}): "
          f"{statistics.median(times['ladder']) * 1e3:.1f} ms per ELBO step")
    print(f"U-Net point-mass model ({n_unet} parameters): {statistics.median(times['unet']) * 1e3:.1f} ms per step")
    image = torch.rand(1, 1, 256, 256)
    ladder.eval()
    repair = timed(lambda: ladder.repair(image, n_samples=100, return_std=True,
                                         generator=torch.Generator().manual_seed(0)), 2)
    print(f"100-sample repair (mean and std) of a 256x256 image: {repair:.2f} s")
    print(f"time ratio (ladder ELBO step / U-Net step): {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
