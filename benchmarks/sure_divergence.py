"""SURE's Monte-Carlo divergence: finite difference vs autograd, cost per training step and agreement.

Times one training step (forward + backward) of the U-Net of benchmarks/self_supervised.py on a batch of
128 Fashion-MNIST-sized images for the supervised loss, SURE with the finite-difference divergence and SURE
with the exact (double-backpropagation) one; the three are alternated and the medians are printed as ratios
to the supervised step. Then compares the two divergence estimates under the same probe.

Run: python benchmarks/sure_divergence.py [--threads 2] [--repeats 11]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import vaerepair as vr
from vaerepair.objectives import SURE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--widths", default="16,32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    widths = tuple(int(w) for w in args.widths.split(","))
    torch.manual_seed(0)
    model = vr.autoencoder(arch="unet", image_shape=(1, None, None), hidden=widths, latent_dim=16,
                           likelihood="gaussian", sigma=0.1, activation="silu")
    clean = torch.rand(128, 1, 28, 28)
    noisy = clean + 0.5 * torch.randn_like(clean)
    cases = {"supervised": (vr.Reconstruction(), clean), "SURE fd": (SURE(0.5), noisy),
             "SURE autograd": (SURE(0.5, divergence="autograd"), noisy)}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats + 1):
        for name, (objective, target) in cases.items():
            model.zero_grad()
            start = time.perf_counter()
            objective(model, noisy, target if name == "supervised" else noisy).loss.backward()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["supervised"][1:])
    print(f"{args.threads} thread(s), U-Net widths {widths}, batch 128 of 28x28, median of {args.repeats}:")
    for name, ts in times.items():
        median = statistics.median(ts[1:])
        print(f"  {name:14s} {1000 * median:7.1f} ms per step  ({median / base:.2f}x the supervised step)")
    torch.manual_seed(1)
    fd = SURE(0.5)(model, noisy, noisy).terms["divergence"].detach()
    torch.manual_seed(1)
    exact = SURE(0.5, divergence="autograd")(model, noisy, noisy).terms["divergence"].detach()
    print(f"  same probe: |fd - autograd| / |autograd| = {float((fd - exact).abs().max() / exact.abs().max()):.2e}; "
          f"probe spread of the divergence (std over images) {float(exact.std()):.3g} around {float(exact.mean()):.3g}")


if __name__ == "__main__":
    main()
