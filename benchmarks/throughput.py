"""Trainer overhead: wall time of one training epoch with vaerepair.Trainer vs a plain PyTorch loop.

Same model (same initial weights), same batches (same permutation), same noise
(same generator seeds), same process; the two are alternated and the median of
several epochs is compared. The plain loop is what one writes by hand: index the
uint8 tensor, scale, add noise, forward, MSE/BCE, backward, step, and accumulate
the loss with ``.item()`` for printing.

Three Trainer configurations are timed against the plain loop: callbacks off
(``progress=False``, the headline), the progress bar and a CSV logger on, and
(for the MLP) the data read through a ``LoaderSource`` (a ``DataLoader`` over
the in-memory dataset, no workers) instead of the in-memory source. Each round
times the plain loop and the headline configuration back to back (in turn
first); every ``--extra-every``-th round also times the other configurations.
A ratio is the median of the rounds' ratios, and its 95 % interval is the
exact binomial (order-statistic) interval of that median (``timing.py``): on a shared 2-core machine
one epoch's time jumps by several per cent from one epoch to the next, so the
interval says how far the median itself can be trusted.

Run: python benchmarks/throughput.py [--threads 2 1] [--repeats 11] [--mlp-repeats 71] [--n 12000] [--conv-n 3000]
(about 6.5 minutes on 2 cores; ``--conv-n 12000`` gives the conv net the MLP's epoch, 4x longer)
Ends with the line ``time ratio (Trainer / plain): X.XX`` (for the reports' MLP
784-400-20 at the first thread count, callbacks off; other settings are printed above it).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import median_interval  # benchmarks/timing.py

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


def measure(arch: str, images: torch.Tensor, repeats: int, batch_size: int,
            extra_every: int) -> dict[str, tuple[float, float, float, float]]:
    """Per configuration: the median epoch seconds and the median (low, high) of the rounds' ratios."""
    sigma, seed = 0.5, 0
    torch.manual_seed(0)
    if arch == "mlp":
        model = vr.autoencoder(arch="mlp", latent_dim=20)  # the reports' 784-400-20
    else:
        model = vr.autoencoder(arch="conv", latent_dim=32, hidden=(32, 64), features=256)
    plain_model = copy.deepcopy(model)
    plain_opt = torch.optim.Adam(plain_model.parameters(), lr=1e-3, fused=True)  # as the Trainer's default
    log = Path(tempfile.mkdtemp()) / "log.csv"
    configs = {
        "off": (vr.Trainer(copy.deepcopy(model), vr.Reconstruction(), vr.GaussianNoise(sigma), epochs=1,
                           batch_size=batch_size, device="cpu", seed=seed, progress=False), images),
        "bar+csv": (vr.Trainer(copy.deepcopy(model), vr.Reconstruction(), vr.GaussianNoise(sigma), epochs=1,
                               batch_size=batch_size, device="cpu", seed=seed, progress=True,
                               callbacks=[vr.training.CSVLogger(log)]), images),
    }
    if arch == "mlp":
        configs["loader"] = (vr.Trainer(copy.deepcopy(model), vr.Reconstruction(), vr.GaussianNoise(sigma), epochs=1,
                                        batch_size=batch_size, device="cpu", seed=seed, progress=False),
                             vr.training.LoaderSource(vr.ImageDataset(images)))
    # Warm-up (allocator, first-call costs), and a check that all compute the same thing.
    loss_plain = plain_epoch(plain_model, plain_opt, images, sigma, batch_size, seed)
    for name, (trainer, data) in configs.items():
        trainer.fit(data)
        loss = trainer.history.last["train_loss"]
        if abs(loss_plain - loss) > 1e-3 * abs(loss_plain):
            raise SystemExit(f"the loops disagree: plain {loss_plain:.4f} vs Trainer ({name}) {loss:.4f}")
    times: dict[str, list[float]] = {"plain": [], **{name: [] for name in configs}}
    ratios: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(repeats):
        names = ["plain", "off"] + ([name for name in configs if name != "off"] if r % extra_every == 0 else [])
        shift = r % len(names)  # a different one first each round
        seconds: dict[str, float] = {}
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            if name == "plain":
                plain_epoch(plain_model, plain_opt, images, sigma, batch_size, seed)
            else:
                trainer, data = configs[name]
                trainer.fit(data)
            seconds[name] = time.perf_counter() - t0
        for name, t in seconds.items():
            times[name].append(t)
            if name != "plain":  # the ratio within a round (seconds apart) cancels slow drifts of a shared machine
                ratios[name].append(t / seconds["plain"])
    out = {"plain": (statistics.median(times["plain"]), 1.0, 1.0, 1.0)}
    out.update({name: (statistics.median(times[name]), *median_interval(ratios[name])) for name in configs})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--archs", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--repeats", type=int, default=11, help="rounds for the conv net")
    parser.add_argument("--mlp-repeats", type=int, default=71,
                        help="rounds for the MLP, whose 0.4 s epochs leave more room to the epoch-to-epoch spread")
    parser.add_argument("--extra-every", type=int, default=3,
                        help="time the configurations other than the headline every N-th round")
    parser.add_argument("--n", type=int, default=12000, help="training images per epoch (the MLP)")
    parser.add_argument("--conv-n", type=int, default=3000,
                        help="training images per epoch of the conv net (its steps are 10x the MLP's)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    if min(args.extra_every, args.repeats, args.mlp_repeats) < 1:
        parser.error("--extra-every, --repeats and --mlp-repeats must be at least 1")
    images = vr.load("fashion-mnist", "train").images[: max(args.n, args.conv_n)]
    headline = None
    print(f"{'arch':6}{'threads':>8}{'config':>9}{'Trainer s':>11}{'plain s':>10}{'ratio':>8}  {'95 % interval':>15}   "
          f"({args.mlp_repeats} rounds for the MLP, {args.repeats} for the conv net, the other configurations "
          f"in one round of {args.extra_every}; seconds: medians; ratio: the median of the rounds' ratios; "
          f"{args.n} images for the MLP, {args.conv_n} for the conv net, batch {args.batch_size})")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for arch in args.archs:
            n = args.n if arch == "mlp" else args.conv_n
            result = measure(arch, images[:n], args.mlp_repeats if arch == "mlp" else args.repeats,
                             args.batch_size, args.extra_every)
            plain_seconds = result["plain"][0]
            for name, (seconds, ratio, low, high) in result.items():
                if name == "plain":
                    continue
                print(f"{arch:6}{threads:8d}{name:>9}{seconds:11.3f}{plain_seconds:10.3f}{ratio:8.3f}  "
                      f"{low:7.3f}-{high:.3f}", flush=True)
                if headline is None:
                    headline = ratio
            if "loader" in result:
                print(f"{'':14}LoaderSource / in-memory source: {result['loader'][0] / result['off'][0]:.3f}")
    print(f"time ratio (Trainer / plain): {headline:.2f}")


if __name__ == "__main__":
    main()
