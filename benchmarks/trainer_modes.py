"""Training speed of the Trainer's modes: eager float32 against torch.compile and bf16 autocast.

The reports' 784-400-20 VAE (Bernoulli likelihood, ELBO), batch 128, Adam
1e-3, Gaussian noise sigma = 0.25, on ``--n`` Fashion-MNIST training images;
one epoch per mode, modes alternated, ``--repeats`` rounds, median epoch
times. The compiled mode is compiled (and warmed up) before timing. Also
timed: the same eager Trainer with a mid-epoch checkpoint every 50 steps
(``checkpoint_every=50``), the cost of crash safety.

Run: python benchmarks/trainer_modes.py [--threads 2] [--repeats 5] [--n 12800] [--device cpu]
Prints steps per second per mode and ends with the ratios
``speed ratio (compile / eager): X.XX`` and ``speed ratio (bf16 / eager): X.XX``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import vaerepair as vr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=12800)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = vr.load("fashion-mnist", "train")[: args.n]
    tmp = tempfile.TemporaryDirectory()
    modes = {
        "eager": {},
        "compile": {"compile": True},
        "bf16": {"precision": "bf16"},
        "eager + checkpoint every 50 steps": {"checkpoint_every": 50, "checkpoint_dir": tmp.name},
    }
    trainers = {}
    for name, options in modes.items():
        torch.manual_seed(0)
        model = vr.variational_autoencoder(latent_dim=20, hidden=(400,))
        trainers[name] = vr.Trainer(model, vr.ELBO(), vr.GaussianNoise(0.25), epochs=1, batch_size=128, lr=1e-3,
                                    device=args.device, progress=False, **options)
    for name, trainer in trainers.items():  # warm-up; compiles the compiled mode
        t0 = time.perf_counter()
        trainer.fit(train[:1280])
        print(f"{name}: warm-up {time.perf_counter() - t0:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            if args.device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer.fit(train)
            if args.device != "cpu":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    steps = -(-len(train) // 128)
    speed = {name: steps / statistics.median(v) for name, v in times.items()}
    print(f"{len(train)} images, batch 128, {steps} steps per epoch, {args.threads} threads, {args.device}, "
          f"median of {args.repeats} epochs")
    for name, s in speed.items():
        loss = trainers[name].history["train_loss"][-1]
        print(f"{name:>34}: {s:7.1f} steps/s  ({s / speed['eager']:.2f} x eager), last train loss {loss:.2f}")
    saving = speed["eager + checkpoint every 50 steps"] / speed["eager"]
    print(f"speed ratio (checkpoint every 50 / eager): {saving:.2f}")
    print(f"speed ratio (compile / eager): {speed['compile'] / speed['eager']:.2f}")
    print(f"speed ratio (bf16 / eager): {speed['bf16'] / speed['eager']:.2f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
