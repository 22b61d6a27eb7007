"""Command line: ``vaerepair train | sweep | evaluate | denoise | models | demo | fetch``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from vaerepair import corruptions as corr
from vaerepair._io import DirectoryLock, FolderLockedError, write_failure
from vaerepair.commands import (
    CLIError,
    evaluate_command,
    fetch_command,
    prepare_output_file,
    prepare_output_folder,
    sweep_command,
    train_command,
)
from vaerepair.data import DATASETS, DatasetNotFoundError
from vaerepair.models import CONDITION_KINDS
from vaerepair.models.factory import ACTIVATIONS
from vaerepair.objectives import BLIND_SPOT_REPLACEMENTS
from vaerepair.photo_commands import (
    AUTO_TILE,
    AUTO_TILE_PIXELS,
    SELF_SUPERVISED,
    denoise_command,
    evaluate_folder_command,
    models_command,
    train_folder_command,
)
from vaerepair.sweep import SELECT_METRICS, beta_range
from vaerepair.training import CheckpointError, NonFiniteLossError, TrainingInterrupted

__all__ = ["main", "build_parser"]

# The demo's defaults: chosen by measurement on 2 CPU cores (an MLP gets through more
# epochs in the budget than the conv net, and SiLU beat ReLU at equal time).
DEMO = {
    "dataset": "fashion-mnist",
    "corruption": "gaussian:0.5",
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


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 400 or 32,64, got {text!r}") from None
    if min(widths) < 1:
        raise argparse.ArgumentTypeError(f"every width must be >= 1, got {text!r}")
    return widths


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _nonnegative_int(text: str) -> int:
    return _whole_number(text, 0)


def _positive_float(text: str) -> float:
    value = _nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 like 0.2, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction strictly between 0 and 1 like 0.2, got {text!r}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"the seed must be in [0, 2**63), got {text}")
    return value


def _corruption(text: str) -> str:
    try:
        corr.from_spec(text)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _betas(text: str) -> list[float]:
    try:
        return beta_range(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _sigmas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated noise levels in 0..255 units like 15,25,50, "
                                         f"got {text!r}") from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"noise levels must be finite and >= 0, got {text!r}")
    return values


def _dataset(text: str) -> str:
    key = text.strip().lower()
    if key not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; known: {', '.join(DATASETS)}")
    return key


def _add_training_args(p: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    p.add_argument("--dataset", type=_dataset, default=defaults.get("dataset", "fashion-mnist"),
                   help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--root", default=None,
                   help="dataset root in torchvision's layout (None: search $VAEREPAIR_DATA, the cache, system places)")
    p.add_argument("--download", action="store_true", help="fetch the dataset with torchvision if missing")
    p.add_argument("--model", choices=("dae", "ae", "vae", "ladder"), default="dae",
                   help="dae: autoencoder trained on corrupted inputs; ae: plain autoencoder (no corruption); "
                        "vae: variational autoencoder trained with the (beta-)ELBO on corrupted inputs; "
                        "ladder: a hierarchical VAE (levels of spatial latents, --hidden widths per level, "
                        "--latent-dim channels per level), trained with the ELBO; with --data on noisy images only")
    p.add_argument("--beta", type=_nonnegative_float, default=1.0,
                   help="vae, ladder: the KL weight (beta > 1: beta-VAE)")
    p.add_argument("--free-bits", type=_nonnegative_float, default=0.0,
                   help="vae, ladder: nats per latent element under which a level's KL is not penalised")
    p.add_argument("--objective", choices=("elbo", "fisher", *SELF_SUPERVISED), default=None,
                   help="vae: elbo (default) or fisher (the Fisher autoencoder loss, needs --likelihood gaussian); "
                        "with --data, training on noisy images only: noise2noise (with --targets), blindspot, "
                        "sure (with --noise-sigma)")
    p.add_argument("--flows", type=_nonnegative_int, default=0,
                   help="vae: K planar-flow layers after the Gaussian posterior (report 003)")
    p.add_argument("--global-flows", action="store_true",
                   help="with --flows: layers shared by all images (default: amortised, one set per image)")
    p.add_argument("--condition", choices=CONDITION_KINDS, default=None,
                   help="a conditional model: on the class label (one-hot) or on the corrupted image and its mask "
                        "(inpainting, report 002); encoder and decoder both see it")
    p.add_argument("--arch", choices=("mlp", "conv", "unet"), default=defaults.get("arch", "mlp"),
                   help="unet: fully convolutional, any image size (for photographs, with --data)")
    p.add_argument("--latent-dim", type=_positive_int, default=defaults.get("latent_dim", 20))
    p.add_argument("--hidden", type=_widths, default=_widths(defaults.get("hidden", "400")),
                   help="MLP hidden widths or the two conv stages' widths, comma-separated")
    p.add_argument("--features", type=_positive_int, default=defaults.get("features", 256),
                   help="conv encoder feature size")
    p.add_argument("--spatial", action="store_true",
                   help="conv only: fully convolutional, the latent is a H/4 x W/4 map (latent-dim a multiple of it)")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default=defaults.get("activation", "relu"))
    p.add_argument("--likelihood", choices=("bernoulli", "continuous-bernoulli", "gaussian"),
                   default=defaults.get("likelihood", "bernoulli"))
    p.add_argument("--sigma", type=_positive_float, default=defaults.get("sigma", 1.0),
                   help="Gaussian likelihood scale")
    p.add_argument("--link", choices=("identity", "sigmoid"), default=defaults.get("link", "identity"))
    p.add_argument("--learn-sigma", action="store_true", help="learn the Gaussian likelihood's scale (from --sigma)")
    p.add_argument("--corruption", type=_corruption, default=defaults.get("corruption"),
                   help=f"e.g. gaussian:0.5, block:12, mask:0.5; known: {', '.join(corr.SPEC_NAMES)} "
                        "(default gaussian:0.5; none for noisy-only training)")
    p.add_argument("--epochs", type=_positive_int, default=defaults.get("epochs", 10))
    p.add_argument("--batch-size", type=_positive_int, default=defaults.get("batch_size", 128))
    p.add_argument("--lr", type=_positive_float, default=defaults.get("lr", 1e-3))
    p.add_argument("--patience", type=_positive_int, default=None, help="early stopping on val_loss after N epochs")
    p.add_argument("--val-fraction", type=_fraction, default=0.2)
    p.add_argument("--limit", type=_positive_int, default=None, help="train on the first N training images only")
    p.add_argument("--data", type=Path, default=None,
                   help="train on a folder of photographs (PNG, JPEG, BMP, TIFF; any size) instead of --dataset: "
                        "random --patch patches, validation on whole held-out images (needs --arch unet)")
    p.add_argument("--val-data", type=Path, default=None, help="with --data: a validation folder (default: a split)")
    p.add_argument("--mode", choices=("L", "RGB"), default=None, help="with --data: convert every image to grey/RGB")
    p.add_argument("--patch", type=_positive_int, default=48, help="with --data: the patch side")
    p.add_argument("--patches-per-epoch", type=_positive_int, default=4000, help="with --data")
    p.add_argument("--targets", type=Path, default=None,
                   help="--objective noise2noise: a folder with a second, independent noisy observation of every "
                        "image of --data, under the same file name")
    p.add_argument("--noise-sigma", type=_nonnegative_float, default=None,
                   help="the noise standard deviation of the noisy images in 0..255 units: sure, and the "
                        "noise model of --model vae with --data (Gaussian; with --noise-gain, Poisson-Gaussian)")
    p.add_argument("--noise-gain", type=_nonnegative_float, default=0.0,
                   help="--model vae with --data: the photon gain of Poisson-Gaussian noise, on the 0..1 scale")
    p.add_argument("--blind-spacing", type=_positive_int, default=4,
                   help="blindspot: one hidden pixel per SxS cell (at least 2)")
    p.add_argument("--blind-replacement", choices=BLIND_SPOT_REPLACEMENTS, default="neighbour",
                   help="blindspot: what replaces a hidden pixel (a random neighbour, the local mean or median "
                        "of its window without it)")
    p.add_argument("--eval-n", type=_positive_int, default=1000, help="evaluate on the first N test images")
    p.add_argument("--iwae-k", type=_positive_int, default=None,
                   help="vae, ladder: importance samples for the -log p(x) estimate (default: 1000 for a vae; "
                        "none for a ladder, whose 1000 top-down passes per image take long on a CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--threads", type=_positive_int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=Path, default=Path(defaults.get("out", "runs/train")))
    p.add_argument("--resume", type=Path, default=None,
                   help="continue an interrupted run exactly from its last.pt (give the same arguments)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=None,
                   help="also write last.pt every N steps (mid-epoch), so a crash loses at most N steps")


def _add_samples_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=_nonnegative_int, default=None,
                   help="a VAE: repair with the mean of N posterior samples (default: the model's own; 0: the "
                        "posterior mean decoded)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaerepair", description="Repair damaged images with autoencoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    p = command("train", help="train a model; writes checkpoints, metrics.json, grid.png, loss.png")
    _add_training_args(p, {})

    p = command("demo", help="a short denoising run on Fashion-MNIST with a before/after table")
    _add_training_args(p, DEMO)

    p = command("sweep", help="beta sweep (report 000): one beta-VAE per beta, pick beta on validation")
    _add_training_args(p, {"out": "runs/sweep"})
    p.set_defaults(model="vae")
    p.add_argument("--betas", type=_betas, default=beta_range("2:6:0.25"),
                   help="start:stop:step (stop included) or a comma-separated list")
    p.add_argument("--select", choices=tuple(SELECT_METRICS), default="neg_elbo",
                   help="neg_elbo: validation recon + KL (comparable across beta); loss: the beta-weighted "
                        "validation loss (report 000's rule, favours small beta); psnr: validation repairs")

    p = command("evaluate", help="PSNR/SSIM and loss of a checkpoint on test images, or of a photo denoiser on a "
                                 "folder (--data) under the denoising literature's protocol")
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--model", default=None, help="with --data: a shipped model (see `vaerepair models`)")
    p.add_argument("--data", type=Path, default=None,
                   help="a folder of 8-bit photographs: PSNR/SSIM at full size, NumPy seed 0 per image, unclipped "
                        "Gaussian noise of each --sigma, 8-bit output")
    p.add_argument("--sigma", type=_sigmas, default=[15.0, 25.0, 50.0], help="with --data: noise levels in 0..255 "
                   "units, comma-separated")
    p.add_argument("--tile", type=_positive_int, default=None, help="with --data: repair tile by tile")
    p.add_argument("--dataset", type=_dataset, default=None, help="default: the one it was trained on")
    p.add_argument("--root", default=None)
    p.add_argument("--corruption", type=_corruption, default=None, help="default: the one it was trained with")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--n", type=_positive_int, default=1000, help="the first N images of the split")
    p.add_argument("--iwae-k", type=_positive_int, default=None,
                   help="vae, ladder: importance samples for the -log p(x) estimate (default: 1000 for a vae; "
                        "none for a ladder)")
    _add_samples_arg(p)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="write the metrics as JSON here")
    p.add_argument("--grid", type=Path, default=None, help="write a clean/corrupted/repaired grid PNG here")

    p = command("denoise", help="repair your own image files with a shipped model or a trained checkpoint")
    p.add_argument("inputs", nargs="+", type=Path,
                   help="PNG, JPEG, BMP or TIFF files (8- or 16-bit), or .npy float arrays in [0, 1] units (unclipped)")
    p.add_argument("--model", "-m", default=None, help="a shipped model (see `vaerepair models`)")
    p.add_argument("--checkpoint", "-c", type=Path, default=None)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file (one input) or folder (several inputs)")
    p.add_argument("--convert", action="store_true",
                   help="repair a colour image with a grey model as grey (BT.601), a grey one with a colour model "
                        "as RGB (default: an error)")
    p.add_argument("--resize", action="store_true",
                   help="resize inputs to the model's size and the result back to the input's size")
    p.add_argument("--tile", type=_positive_int, nargs="?", const=AUTO_TILE, default=None,
                   help="repair tile by tile, blended: tiles of T pixels for a fully convolutional model (which "
                        f"tiles images over {AUTO_TILE_PIXELS // 2**20} MP by itself), of the model's size otherwise")
    p.add_argument("--overlap", type=_positive_int, default=None,
                   help="pixels shared by neighbouring tiles (default: from the model's receptive field; 8)")
    _add_samples_arg(p)
    p.add_argument("--std-out", type=Path, default=None,
                   help="a VAE, one input: also write the per-pixel standard deviation of the samples (in the "
                        "image's 0..1 units, as an image: bright is uncertain) to this file")
    p.add_argument("--seed", type=_seed, default=0, help="the posterior samples' seed")

    command("models", help="list the pretrained models that ship with the package")

    p = command("fetch", help="make a dataset available (Debian files or torchvision's download)")
    p.add_argument("dataset", type=_dataset)
    p.add_argument("--root", default=None)
    p.add_argument("--check", action="store_true", help="only check; exit 1 when missing")
    return parser


# ----------------------------------------------------------------- commands


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vaerepair`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command in ("train", "demo", "sweep") and args.objective is None:
        args.objective = "elbo"
    noisy_only = args.command == "train" and (args.objective in SELF_SUPERVISED or (
        args.data is not None and args.model in ("vae", "ladder")))
    if args.command in ("train", "demo", "sweep") and args.corruption is None and not noisy_only:
        args.corruption = "gaussian:0.5"
    stack = ExitStack()
    try:
        for option in ("out", "grid"):  # evaluate's output files, checked before the work
            if args.command == "evaluate" and getattr(args, option) is not None:
                prepare_output_file(getattr(args, option), f"--{option}")
        root = getattr(args, "root", None)
        if root is not None and Path(root).exists() and not Path(root).is_dir():
            raise CLIError(f"--root {root!r} is a file; give the folder that holds (or will hold) the dataset")
        if args.command in ("train", "demo", "sweep"):  # checked before any training, and locked: one writer
            prepare_output_folder(args.out, "--out")
            stack.enter_context(DirectoryLock(args.out))
        if args.command == "train" and args.data is not None:
            train_folder_command(args)
        elif args.command in ("train", "demo"):
            train_command(args)
        elif args.command == "sweep":
            sweep_command(args)
        elif args.command == "evaluate" and args.data is not None:
            evaluate_folder_command(args)
        elif args.command == "evaluate":
            if args.checkpoint is None:
                raise CLIError("evaluate needs --checkpoint FILE (or --data DIR with --model NAME / --checkpoint)")
            evaluate_command(args)
        elif args.command == "models":
            models_command(args)
        elif args.command == "denoise":
            denoise_command(args)
        elif args.command == "fetch":
            return fetch_command(args)
    except (CLIError, DatasetNotFoundError, CheckpointError, FolderLockedError, ValueError, TypeError) as err:
        print(f"vaerepair {args.command}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"vaerepair {args.command}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk or a folder gone while pictures or metrics were written
        where = err.filename or "a file"
        kept = "; the checkpoints already written are kept" if args.command in ("train", "demo", "sweep") else ""
        print(f"vaerepair {args.command}: error: {where}: {write_failure(err, where)}{kept}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        saved = (f"{err.checkpoint} holds the state; continue with the same command and --resume {err.checkpoint}"
                 if err.checkpoint else "nothing was saved")
        print(f"vaerepair {args.command}: {err.signal_name} stopped training at {err.where}; {saved}", file=sys.stderr)
        return 130
    finally:
        stack.close()
    return 0
