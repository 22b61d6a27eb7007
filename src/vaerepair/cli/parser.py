"""The parser of ``vaerepair``: one subcommand per module of :mod:`vaerepair.cli`, each adding its own options."""

from __future__ import annotations

import argparse

from vaerepair.cli import demo, denoise, evaluate, fetch, models, sweep, train

__all__ = ["build_parser", "COMMANDS"]

# name -> (module, one-line help); each module has add_arguments(parser) and run(args)
COMMANDS = {
    "train": (train, "train a model; writes checkpoints, metrics.json, grid.png, loss.png"),
    "demo": (demo, "a short denoising run on Fashion-MNIST with a before/after table"),
    "sweep": (sweep, "beta sweep (report 000): one beta-VAE per beta, pick beta on validation"),
    "evaluate": (evaluate, "PSNR/SSIM and loss of a checkpoint on test images, or of a photo denoiser on a folder "
                           "(--data) under the denoising literature's protocol"),
    "denoise": (denoise, "repair your own image files with a shipped model or a trained checkpoint"),
    "models": (models, "list the pretrained models that ship with the package"),
    "fetch": (fetch, "make a dataset available (Debian files or torchvision's download)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaerepair", description="Repair damaged images with autoencoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
    return parser
