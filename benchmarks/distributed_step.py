"""Data-parallel step time: two gloo processes under torchrun (DistributedDataParallel) against one process.

The reports' 784-400-20 VAE (ELBO, batch 128 global, Adam), one epoch of
``--images`` Fashion-MNIST images after a warm-up epoch; rank 0 prints the seconds
per optimizer step. The driver runs one process at 1 and at 2 threads and two
processes at 1 thread each (the 2 cores shared), and prints the ratios. On
one 2-core machine two processes cannot beat one process with two threads:
the figure is the communication and DDP overhead, not a speed-up.

Run: python benchmarks/distributed_step.py [--images 6000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

import vaerepair as vr


def worker(n: int, threads: int) -> None:
    torch.set_num_threads(threads)
    images = vr.load("fashion-mnist", "train").images[:n]
    torch.manual_seed(0)
    model = vr.variational_autoencoder(latent_dim=20)
    trainer = vr.Trainer(model, vr.ELBO(), None, epochs=1, batch_size=128, device="cpu", progress=False)
    trainer.fit(images)  # warm-up
    t0 = time.perf_counter()
    trainer.fit(images)
    seconds = (time.perf_counter() - t0) / trainer.source.steps_per_epoch()
    if trainer.dist.is_main:
        print(f"SECONDS_PER_STEP {seconds:.6f}", flush=True)


def run(command: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return float(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("SECONDS_PER_STEP")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--worker-threads", type=int, default=None, help="(internal) run one training with N threads")
    args = parser.parse_args()
    if args.worker_threads is not None:
        worker(args.images, args.worker_threads)
        return
    me = [__file__, "--images", str(args.images), "--worker-threads"]
    one_1 = run([sys.executable, *me, "1"])
    one_2 = run([sys.executable, *me, "2"])
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *me, "1"])
    print(f"one process, 1 thread:   {one_1 * 1e3:.2f} ms/step")
    print(f"one process, 2 threads:  {one_2 * 1e3:.2f} ms/step")
    print(f"two processes (gloo, DDP), 1 thread each: {two * 1e3:.2f} ms/step")
    print(f"step time ratio (2 processes / 1 process at 1 thread): {two / one_1:.2f}")
    print(f"step time ratio (2 processes / 1 process at 2 threads): {two / one_2:.2f}")


if __name__ == "__main__":
    main()
