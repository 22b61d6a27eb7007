"""``vaerepair demo``: a short denoising run on Fashion-MNIST with a before/after table (``train`` with the
defaults below)."""

from __future__ import annotations

import argparse
from typing import Any

from vaerepair.cli import train

__all__ = ["DEMO", "add_arguments", "run"]

# The demo's defaults: chosen by measurement on 2 CPU cores (an MLP gets through more
# epochs in the budget than the conv net, and SiLU beat ReLU at equal time).
DEMO = {
    "dataset": "fashion-mnist",
    # unclipped noise, or as a saved 8-bit file holds it (clipped at 0 and 1, rounded): the model repairs both
    "corruption": "gaussian:0.5|gaussian:0.5+quantize",
    "arch": "mlp",
    "latent_dim": 64,
    "hidden": "1024,512",
    "activation": "silu",
    "likelihood": "gaussian",
    "sigma": 0.1,
    "link": "sigmoid",
    "epochs": 22,
    "batch_size": 128,
    "lr": 2e-3,
    "out": "runs/demo",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    train.add_arguments(p, DEMO)


def run(args: argparse.Namespace) -> dict[str, Any]:
    return train.run(args)
