"""``vaerepair train``: a model on a dataset (Fashion-MNIST, MNIST, KMNIST, CIFAR-10) with a corruption, or a
fully convolutional denoiser on random patches of a folder of photographs (``--data``), supervised or from
noisy images only."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaerepair import corruptions as corr
from vaerepair.cli import arguments as A
from vaerepair.cli.build import (
    SELF_SUPERVISED,
    VARIATIONAL,
    build_model,
    build_objective,
    build_trainer,
    iwae_samples,
    photo_steps,
)
from vaerepair.cli.common import CLIError, config_of
from vaerepair.cli.pictures import conditions, print_table, write_grid, write_samples, write_uncertainty
from vaerepair.data import DATASETS, ImageDataset, ImageFolder, NoisyImages, train_val_split
from vaerepair.data import load_dataset as load
from vaerepair.models import CONDITION_KINDS, LadderVAE, LatentVariableModel
from vaerepair.nets.activations import ACTIVATIONS
from vaerepair.objectives import BLIND_SPOT_REPLACEMENTS
from vaerepair.plots import plot_history, plot_latent_scatter, save_image_rows
from vaerepair.training import PatchSource, load_checkpoint
from vaerepair.training.history import write_json

__all__ = ["KINDS", "add_arguments", "run", "splits", "centre_crop"]

KINDS = ("dae", "ae", "vae", "ladder")


def add_arguments(p: argparse.ArgumentParser, defaults: dict[str, Any] | None = None) -> None:
    """The options of ``train`` (``demo`` and ``sweep`` take them too, with their own ``defaults``)."""
    defaults = defaults or {}
    p.add_argument("--dataset", type=A.dataset, default=defaults.get("dataset", "fashion-mnist"),
                   help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--root", default=None,
                   help="dataset root in torchvision's layout (None: search $VAEREPAIR_DATA, the cache, system places)")
    p.add_argument("--download", action="store_true", help="fetch the dataset with torchvision if missing")
    p.add_argument("--kind", choices=KINDS, default=defaults.get("kind", "dae"),
                   help="dae: autoencoder trained on corrupted inputs; ae: plain autoencoder (no corruption); "
                        "vae: variational autoencoder trained with the (beta-)ELBO on corrupted inputs; "
                        "ladder: a hierarchical VAE (levels of spatial latents, --hidden widths per level, "
                        "--latent-dim channels per level), trained with the ELBO; with --data on noisy images only")
    p.add_argument("--beta", type=A.nonnegative_float, default=1.0,
                   help="vae, ladder: the KL weight (beta > 1: beta-VAE)")
    p.add_argument("--model", dest="_kind_spelled_model", choices=KINDS, default=None,
                   help=argparse.SUPPRESS)  # before --kind; --model names a shipped model in evaluate and denoise
    p.add_argument("--free-bits", type=A.nonnegative_float, default=0.0,
                   help="vae, ladder: nats per latent element under which a level's KL is not penalised")
    p.add_argument("--objective", choices=("elbo", "fisher", *SELF_SUPERVISED), default=None,
                   help="vae: elbo (default) or fisher (the Fisher autoencoder loss, needs --likelihood gaussian); "
                        "with --data, training on noisy images only: noise2noise (with --targets), blindspot, "
                        "sure (with --noise-sigma)")
    p.add_argument("--flows", type=A.nonnegative_int, default=0,
                   help="vae: K planar-flow layers after the Gaussian posterior (report 003); ladder: K layers on "
                        "every level's posterior, shared by its pixels")
    p.add_argument("--residual", action="store_true",
                   help="ae, dae: a residual (noise-predicting) network, as DnCNN: the repair is the input minus "
                        "its output (needs --likelihood gaussian)")
    p.add_argument("--global-flows", action="store_true",
                   help="with --flows: layers shared by all images (default: amortised, one set per image)")
    p.add_argument("--condition", choices=CONDITION_KINDS, default=None,
                   help="a conditional model: on the class label (one-hot) or on the corrupted image and its mask "
                        "(inpainting, report 002); encoder and decoder both see it. --kind ladder --condition "
                        "image: a conditional ladder whose prior sees the corrupted image and mask and whose "
                        "posterior sees the clean image too (diverse completions, uncertainty)")
    p.add_argument("--arch", choices=("mlp", "conv", "unet"), default=defaults.get("arch", "mlp"),
                   help="unet: fully convolutional, any image size (for photographs, with --data)")
    p.add_argument("--latent-dim", type=A.positive_int, default=defaults.get("latent_dim", 20))
    p.add_argument("--hidden", type=A.widths, default=A.widths(defaults["hidden"]) if "hidden" in defaults else None,
                   help="MLP hidden widths, the conv stages' widths, a U-Net's or a ladder's levels, comma-separated "
                        "(default: 400 for an MLP, 32,64 for a conv net, 32,64,128 for a U-Net, 32,32,32 for a ladder)")
    p.add_argument("--features", type=A.positive_int, default=defaults.get("features", 256),
                   help="conv encoder feature size")
    p.add_argument("--spatial", action="store_true",
                   help="conv only: fully convolutional, the latent is a H/4 x W/4 map (latent-dim a multiple of it)")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default=defaults.get("activation", "relu"))
    p.add_argument("--likelihood", choices=("bernoulli", "continuous-bernoulli", "gaussian"),
                   default=defaults.get("likelihood", "bernoulli"))
    p.add_argument("--sigma", type=A.positive_float, default=defaults.get("sigma", 1.0),
                   help="Gaussian likelihood scale")
    p.add_argument("--link", choices=("identity", "sigmoid"), default=defaults.get("link", "identity"))
    p.add_argument("--learn-sigma", action="store_true", help="learn the Gaussian likelihood's scale (from --sigma)")
    p.add_argument("--corruption", type=A.corruption, default=defaults.get("corruption"),
                   help=f"e.g. gaussian:0.5, block:12, mask:0.5; known: {', '.join(corr.SPEC_NAMES)} "
                        "(default gaussian:0.5; none for noisy-only training)")
    p.add_argument("--epochs", type=A.positive_int, default=defaults.get("epochs", 10))
    p.add_argument("--batch-size", type=A.positive_int, default=defaults.get("batch_size", 128))
    p.add_argument("--lr", type=A.positive_float, default=defaults.get("lr", 1e-3))
    p.add_argument("--patience", type=A.positive_int, default=None, help="early stopping on val_loss after N epochs")
    p.add_argument("--val-fraction", type=A.fraction, default=0.2)
    p.add_argument("--limit", type=A.positive_int, default=None, help="train on the first N training images only")
    p.add_argument("--data", type=Path, default=None,
                   help="train on a folder of photographs (PNG, JPEG, BMP, TIFF; any size) instead of --dataset: "
                        "random --patch patches, validation on whole held-out images (needs --arch unet)")
    p.add_argument("--val-data", type=Path, default=None, help="with --data: a validation folder (default: a split)")
    p.add_argument("--mode", choices=("L", "RGB"), default=None, help="with --data: convert every image to grey/RGB")
    p.add_argument("--patch", type=A.positive_int, default=48, help="with --data: the patch side")
    p.add_argument("--patches-per-epoch", type=A.positive_int, default=4000, help="with --data")
    p.add_argument("--targets", type=Path, default=None,
                   help="--objective noise2noise: a folder with a second, independent noisy observation of every "
                        "image of --data, under the same file name")
    p.add_argument("--noise-sigma", type=A.nonnegative_float, default=None,
                   help="the noise standard deviation of the noisy images in 0..255 units: sure, and the "
                        "noise model of --kind vae with --data (Gaussian; with --noise-gain, Poisson-Gaussian)")
    p.add_argument("--noise-gain", type=A.nonnegative_float, default=0.0,
                   help="--kind vae with --data: the photon gain of Poisson-Gaussian noise, on the 0..1 scale")
    p.add_argument("--blind-spacing", type=A.positive_int, default=4,
                   help="blindspot: one hidden pixel per SxS cell (at least 2)")
    p.add_argument("--blind-replacement", choices=BLIND_SPOT_REPLACEMENTS, default="neighbour",
                   help="blindspot: what replaces a hidden pixel (a random neighbour, the local mean or median "
                        "of its window without it)")
    p.add_argument("--eval-n", type=A.positive_int, default=1000, help="evaluate on the first N test images")
    p.add_argument("--iwae-k", type=A.positive_int, default=None,
                   help="vae, ladder: importance samples for the -log p(x) estimate (default: 1000 for a vae; "
                        "none for a ladder, whose 1000 top-down passes per image take long on a CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--threads", type=A.positive_int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=Path, default=Path(defaults.get("out", "runs/train")))
    p.add_argument("--resume", type=Path, default=None,
                   help="continue an interrupted run exactly from its last.pt (give the same arguments)")
    p.add_argument("--checkpoint-every", type=A.positive_int, default=None,
                   help="also write last.pt every N steps (mid-epoch), so a crash loses at most N steps")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train as the arguments ask: on a folder of photographs with ``--data``, else on a dataset."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return _train_photos(args) if args.data is not None else _train_dataset(args)


def splits(args: argparse.Namespace) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Train, validation and test sets of ``--dataset`` as the training arguments ask."""
    full = load(args.dataset, "train", root=args.root, download=args.download)
    test = load(args.dataset, "test", root=args.root, download=False)[: args.eval_n]
    if args.limit:
        full = full[: args.limit]
    train, val = train_val_split(full, args.val_fraction, seed=args.seed)
    return train, val, test


def _each_choice(args: argparse.Namespace, trainer: Any, test: ImageDataset, model: Any) -> dict[str, dict[str, Any]]:
    """For a corruption of several choices (``"a|b"``), the test figures of each choice alone, by its spec."""
    if args.corruption is None or "|" not in args.corruption or args.kind == "ae":
        return {}
    out = {}
    for spec in (c.strip() for c in args.corruption.split("|")):
        r = trainer.evaluate(test, corruption=spec, seed=args.seed + 100, iwae_k=None)
        out[spec] = {"n": int(r.pop("n")), **r}
    return out


def _train_dataset(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    objective = build_objective(args)
    train, val, test = splits(args)
    torch.manual_seed(args.seed)
    model = build_model(args, train.image_shape, n_classes=max(10, int(train.labels.max()) + 1))
    corruption = corr.from_spec(args.corruption) if args.kind != "ae" else None
    trainer = build_trainer(args, model, objective, corruption,
                            metadata={"dataset": args.dataset, "corruption": args.corruption if corruption else None})
    arch = "" if args.kind == "ladder" else f"{args.arch} "  # a ladder has its own network
    print(f"training {arch}{args.kind} (latent {args.latent_dim}) on {args.dataset} "
          f"({len(train)} train / {len(val)} val), corruption {args.corruption if corruption else 'none'}, "
          f"{args.epochs} epochs on {trainer.device}" + (f", resuming {args.resume}" if args.resume else ""),
          flush=True)
    history = trainer.fit(train, val, resume=args.resume)
    # Report on the best epoch's weights, which best.pt holds.
    model.load_state_dict(load_checkpoint(args.out / "best.pt", map_location=trainer.device)["model"])
    test_corruption = corruption or corr.from_spec(args.corruption)
    result = trainer.evaluate(test, corruption=test_corruption, seed=args.seed + 100,
                              iwae_k=iwae_samples(args, model))
    write_grid(args.out / "grid.png", test, test_corruption, model, trainer.device, args.seed)
    plot_history(history, args.out / "loss.png", title=f"{args.kind} on {args.dataset}, {args.corruption}")
    pictures = "grid.png, loss.png"
    if isinstance(model, LadderVAE):
        write_uncertainty(args.out / "uncertainty.png", model, test, test_corruption, trainer.device, args.seed)
        if model.conditional:  # 8 completions of 8 incomplete test images
            write_samples(args.out / "samples.png", model, test, test_corruption, trainer.device, args.seed)
        else:
            size = (int(test.image_shape[1]), int(test.image_shape[2]))
            generator = torch.Generator(trainer.device).manual_seed(args.seed)
            save_image_rows(args.out / "samples.png",  # 32 prior samples, 8 per row
                            {f"samples {8 * i + 1}-{8 * i + 8}": model.sample(8, size=size, generator=generator)
                             for i in range(4)})
        pictures += ", uncertainty.png, samples.png"
    elif isinstance(model, LatentVariableModel) and model.prior is not None:
        write_samples(args.out / "samples.png", model, test, test_corruption, trainer.device, args.seed)
        images = test.float_images().to(trainer.device)
        condition = (conditions(model, test, test_corruption, trainer.device, args.seed)[1]
                     if model.condition is not None else None)
        plot_latent_scatter(args.out / "latent.png", model, images, test.labels,
                            title=f"{args.dataset} test images, latent means", condition=condition)
        pictures += ", samples.png, latent.png"
    metrics = {
        "config": config_of(args),
        "test": {"n": int(result.pop("n")), "corruption": args.corruption, **result},
        "best_epoch": history.best_epoch,
        "seconds": time.perf_counter() - t_start,
        "history": history.to_dict(),
    }
    by_choice = _each_choice(args, trainer, test, model)  # a "a|b" corruption: each choice on its own too
    if by_choice:
        metrics["test_by_corruption"] = by_choice
    write_json(args.out / "metrics.json", metrics)
    print_table(args.dataset, len(test), args.corruption, result)
    for spec, r in by_choice.items():
        print_table(args.dataset, len(test), spec, r)
    print(f"wrote {args.out}/best.pt, last.pt, metrics.json, {pictures} ({metrics['seconds']:.0f} s)")
    return metrics


def centre_crop(image: Tensor, side: int) -> Tensor:
    """The ``side x side`` centre of an image ``(C, H, W)`` (validation batches need one size)."""
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    return image[:, top : top + side, left : left + side]


def _noisy_only_checks(args: argparse.Namespace) -> bool:
    """Whether ``train --data`` trains on noisy images only, after refusing the options that contradict it."""
    variational = args.kind in VARIATIONAL
    noisy = args.objective in SELF_SUPERVISED or variational
    if variational and args.objective != "elbo":
        raise CLIError(f"--kind {args.kind} with --data is a noise-model VAE, trained with the ELBO on noisy images; "
                       f"drop --objective {args.objective}")
    if not noisy:
        if args.targets is not None or args.noise_sigma is not None:
            raise CLIError("--targets and --noise-sigma are for noisy-only training: add --objective noise2noise, "
                           "blindspot or sure (or --kind vae or ladder)")
        return False
    what = f"--objective {args.objective}" if not variational else f"--kind {args.kind}"
    if args.corruption is not None:
        raise CLIError(f"{what} trains on the noisy images of --data as they are: drop --corruption")
    if (args.objective == "sure" or variational) and args.noise_sigma is None:
        raise CLIError(f"{what} needs the noise level: give --noise-sigma S (0..255 units, e.g. 25)")
    if (args.objective == "sure" or variational) and args.noise_sigma == 0 and args.noise_gain == 0:
        raise CLIError(f"{what} needs noise: --noise-sigma 0 (and no --noise-gain) says the images are clean")
    if (args.objective == "noise2noise") != (args.targets is not None):
        raise CLIError("--objective noise2noise needs --targets DIR (a second noisy observation of every image, "
                       "same file names), and --targets is for noise2noise only")
    return True


def _counterparts(photos: ImageFolder, targets: ImageFolder) -> list[Tensor]:
    """The image of ``targets`` with each photo's relative name and size (Noise2Noise's second observations)."""
    by_name = {p.relative_to(targets.root): i for i, p in enumerate(targets.paths)}
    out = []
    for path, size in zip(photos.paths, photos.sizes, strict=True):
        i = by_name.get(path.relative_to(photos.root))
        if i is None:
            raise CLIError(f"--targets {str(targets.root)!r} has no {str(path.relative_to(photos.root))!r}: every "
                           "image of --data needs its second observation under the same name")
        if tuple(targets.sizes[i]) != tuple(size):
            raise CLIError(f"{str(targets.paths[i])!r} is {targets.sizes[i][0]}x{targets.sizes[i][1]} but "
                           f"{str(path)!r} is {size[0]}x{size[1]}: the two observations of a scene must match")
        out.append(targets[i])
    return out


def _noisy_groups(images: list[Tensor], seconds: list[Tensor] | None) -> list[NoisyImages]:
    """Noisy validation images (8/16-bit or float) as one :class:`NoisyImages` per size."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)

    def unit(x: Tensor) -> Tensor:
        return x.float() / 255 if x.dtype == torch.uint8 else x.float()

    return [NoisyImages(torch.stack([unit(images[i]) for i in idx]),
                        torch.stack([unit(seconds[i]) for i in idx]) if seconds is not None else None)
            for idx in groups.values()]


def _train_photos(args: argparse.Namespace) -> dict[str, Any]:
    """A fully convolutional denoiser on random patches of a photo folder: supervised (clean photos,
    ``--corruption``), or on noisy images only (``--objective noise2noise|blindspot|sure``, ``--kind vae|ladder``:
    a noise-model VAE)."""
    t_start = time.perf_counter()
    if args.arch != "unet" and args.kind not in VARIATIONAL:
        raise CLIError(f"--data trains on photographs of any size, which needs --arch unet, got --arch {args.arch}")
    noisy = _noisy_only_checks(args)
    objective = build_objective(args)
    photos = ImageFolder(args.data, mode=args.mode)
    if args.limit:
        photos = photos.subset(range(min(args.limit, len(photos))))
    if args.val_data is not None:
        train, val = photos, ImageFolder(args.val_data, mode=args.mode)
    else:
        if len(photos) < 2:
            raise CLIError(f"{str(args.data)!r} holds one image: give --val-data DIR, or add images")
        train, val = train_val_split(photos, args.val_fraction, seed=args.seed)
    channels = {int(im.shape[0]) for im in train}
    if len(channels) > 1:
        raise CLIError(f"{str(args.data)!r} mixes grey and colour images: pass --mode L or --mode RGB")
    small = [(p, s) for p, s in zip(train.paths, train.sizes, strict=True) if min(s) < args.patch]
    if small:
        raise CLIError(f"{str(small[0][0])!r} is {small[0][1][0]}x{small[0][1][1]} pixels, smaller than the "
                       f"{args.patch}x{args.patch} patches; use a smaller --patch or remove it")
    targets = ImageFolder(args.targets, mode=args.mode) if args.targets is not None else None
    torch.manual_seed(args.seed)
    model = build_model(args, (channels.pop(), 0, 0))
    corruption = corr.from_spec(args.corruption) if not noisy else None
    trainer = build_trainer(
        args, model, objective, corruption, steps_per_epoch=photo_steps(args),
        monitor="val_loss" if noisy else "val_psnr", eval_batch_size=1,
        metadata={"data": str(args.data), "corruption": args.corruption, "objective": repr(objective)})
    variational = args.kind in VARIATIONAL
    method = f"the noise-model {args.kind} VAE (ELBO)" if variational else args.objective
    what = f"{method} on noisy images only" if noisy else f"corruption {args.corruption}"
    print(f"training unet {args.kind} on {len(train)} photos of {str(args.data)!r} ({args.patch}x{args.patch} "
          f"patches, {args.patches_per_epoch} per epoch; {len(val)} validation images at full size), {what}, "
          f"{args.epochs} epochs on {trainer.device}", flush=True)
    train_targets = _counterparts(train, targets) if targets is not None else None
    val_data: Any = list(val)
    if noisy:
        val_data = _noisy_groups(list(val), _counterparts(val, targets) if targets is not None else None)
    history = trainer.fit(PatchSource(list(train), args.patch, patches_per_epoch=args.patches_per_epoch,
                                      augment=True, targets=train_targets), val_data, resume=args.resume)
    metrics = {"best_epoch": history.best_epoch, "seconds": time.perf_counter() - t_start,
               "history": history.to_dict(), "config": config_of(args)}
    write_json(args.out / "metrics.json", metrics)
    best = history.records[history.best_epoch - 1] if history.best_epoch else history.records[-1]
    if noisy:
        score = f"validation loss {best['val_loss']:.5g} (the objective's own, on noisy images)"
    else:
        score = (f"validation PSNR {best['val_psnr']:.2f} dB (input "
                 f"{best.get('val_psnr_input', float('nan')):.2f})")
    print(f"best epoch {history.best_epoch}: {score}; wrote {args.out}/best.pt, last.pt, metrics.json "
          f"({metrics['seconds']:.0f} s)")
    return metrics
