"""Per-epoch cost of a planar-flow posterior: the same VAE with K = 5 planar layers vs K = 0.

The reports' MLP (784-400-20, Bernoulli likelihood), Adam 1e-3, batch 128, on
the first ``--n`` Fashion-MNIST training images, all trained by the Trainer
with the ELBO (closed-form KL at K = 0, Monte-Carlo KL with flows, as the
library does by default), in this process, alternating one epoch of each (in a different order each
round); the ratios are the medians of the rounds' ratios to K = 0. Two flow posteriors are timed: global
layers (shared by all images) and amortised layers (a linear head on the
400 encoder features gives each image its own layers: 5 x 41 = 205 more
outputs, +13 % multiply-adds and Adam parameters over the whole VAE, a cost
of the method, not of the implementation).

A fourth configuration takes the amortised cost apart: ``K=0 + head`` is the
K = 0 VAE that also computes the amortised flow head (the same 400 x 205 linear
layer, forward and backward, its output joined to the loss with weight 0) and
nothing else of the flow. Its ratio is what the head alone costs; the global
ratio is what the layers and the Monte-Carlo KL cost; their sum predicts the
amortised ratio.

With ``--compile`` every configuration's step is compiled (``Trainer(compile=True)``,
TorchInductor; needs a C compiler), which fuses the layers' small operations.

Run: python benchmarks/planar_overhead.py [--repeats 7] [--n 20000] [--threads 2] [--compile]
Ends with the line ``time ratio (K=5 / K=0): X.XX`` for global layers (target:
at most 1.15), after the amortised ratio and its parts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor, nn

import vaerepair as vr
from vaerepair.distributions import DiagonalGaussian


class WithUnusedHead(nn.Module):
    """A Gaussian posterior that also computes a linear head of ``extra`` outputs, joined with weight 0."""

    def __init__(self, posterior: nn.Module, in_features: int, extra: int) -> None:
        super().__init__()
        self.posterior, self.head = posterior, nn.Linear(in_features, extra)

    def forward(self, features: Tensor) -> DiagonalGaussian:
        q = self.posterior(features)
        unused = self.head(features)[:, :1]  # the full matrix product, forward and backward
        return DiagonalGaussian(q.loc + 0.0 * unused, q.scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flows", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="Trainer(compile=True): torch.compile the step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = vr.load("fashion-mnist", "train")[: args.n]
    configs = {"K=0": (0, True), "global": (args.flows, False), "amortised": (args.flows, True),
               "K=0 + head": (0, True)}
    trainers = {}
    for name, (k, amortized) in configs.items():
        torch.manual_seed(0)
        model = vr.flow_vae(k, latent_dim=20, hidden=(400,), amortized=amortized)
        if name == "K=0 + head":
            model.posterior = WithUnusedHead(model.posterior, 400, args.flows * (2 * 20 + 1))
        trainers[name] = vr.Trainer(model, vr.ELBO(), None, epochs=1, batch_size=128, lr=1e-3,
                                    device=args.device, progress=False, compile=args.compile)
    for trainer in trainers.values():  # warm-up (first-call set-up, allocator)
        trainer.fit(train[:2048])
    times: dict[str, list[float]] = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # a different order each round
            t0 = time.perf_counter()
            trainers[name].fit(train)
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    # the ratio within each round (the four timed seconds apart) cancels slow drifts of a shared machine
    ratio = {name: statistics.median(t / k0 for t, k0 in zip(v, times["K=0"], strict=True))
             for name, v in times.items()}
    for name, trainer in trainers.items():
        print(f"{name}: median epoch {med[name]:.3f} s over {args.repeats} epochs of {len(train)} images, "
              f"last train loss {trainer.history['train_loss'][-1]:.2f} ({args.threads} threads, {args.device}"
              f"{', compiled' if args.compile else ''})")
    head, layers = ratio["K=0 + head"] - 1, ratio["global"] - 1
    print(f"parts: the amortised head alone {head:+.2f}, the layers and Monte-Carlo KL (global) {layers:+.2f}; "
          f"sum {1 + head + layers:.2f}")
    print(f"time ratio (K={args.flows} amortised / K=0): {ratio['amortised']:.2f}")
    print(f"time ratio (K={args.flows} / K=0): {ratio['global']:.2f}")


if __name__ == "__main__":
    main()
