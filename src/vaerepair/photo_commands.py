"""The commands for photographs: ``models``, ``denoise``, and ``train`` / ``evaluate`` on an image folder."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaerepair import corruptions as corr
from vaerepair.commands import LADDER_WIDTHS, CLIError, hidden_widths, prepare_output_file, prepare_output_folder
from vaerepair.data import ImageFolder, NoisyImages, read_image, train_val_split
from vaerepair.models import ModelSpec, PathModel, build, ladder_vae, noise_model_vae
from vaerepair.objectives import ELBO, SURE, BlindSpot, Noise2Noise, Objective, Reconstruction
from vaerepair.protocol import evaluate_protocol
from vaerepair.training import PatchSource, Trainer, load_model
from vaerepair.training.callbacks import EMA, LRSchedule
from vaerepair.training.history import write_json
from vaerepair.zoo import check_noise_range, pretrained

SELF_SUPERVISED = ("noise2noise", "blindspot", "sure")  # --objective values that train on noisy images only

__all__ = ["models_command", "denoise_command", "train_folder_command", "evaluate_folder_command", "SELF_SUPERVISED",
           "AUTO_TILE_PIXELS"]

AUTO_TILE_PIXELS = 1024 * 1024  # a fully convolutional model tiles larger images by itself (memory bound)
AUTO_TILE = 512


def models_command(args: argparse.Namespace) -> None:
    shipped = pretrained()
    if not shipped:
        print("no pretrained models are installed")
    for info in shipped:
        print(info.describe())


def _model(args: argparse.Namespace) -> PathModel:
    """The model ``--model NAME`` (shipped) or ``--checkpoint FILE`` names (exactly one of them)."""
    if (args.model is None) == (args.checkpoint is None):
        raise CLIError("give exactly one of --model NAME (a shipped model: see `vaerepair models`) and "
                       "--checkpoint FILE")
    if args.model is not None:
        return pretrained(args.model)
    return load_model(args.checkpoint)


def _read(path: Path, channels: int, convert: bool = False) -> tuple[Tensor, bool]:
    """``path`` as float ``(C, H, W)`` (unclipped for ``.npy``) and whether it held more than 8 bits; with
    ``convert`` a colour image becomes grey (BT.601) for a grey model and a grey one RGB for a colour model."""
    if not path.is_file():
        raise CLIError(f"input image {str(path)!r} does not exist")
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3 and array.shape[-1] in (1, 3) and array.shape[0] not in (1, 3):
            array = np.moveaxis(array, -1, 0)  # (H, W, C) -> (C, H, W)
        if array.ndim != 3 or array.shape[0] not in (1, 3) or not np.issubdtype(array.dtype, np.floating):
            raise CLIError(f"{str(path)!r} must hold a float array (H, W), (C, H, W) or (H, W, C) with C = 1 or 3 "
                           f"in [0, 1] units, got {array.dtype} of shape {array.shape}")
        if not np.isfinite(array).all():
            raise CLIError(f"{str(path)!r} holds NaN or infinite values; repair only finite images")
        image, deep = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), True
    else:
        raw = read_image(path)  # uint8, or float32 for 16-bit files
        deep = raw.dtype != torch.uint8
        image = raw.float() / 255 if raw.dtype == torch.uint8 else raw
    if image.shape[0] == 3 and channels == 1 and bool((image[1:] == image[:1]).all()):
        image = image[:1]  # a grey picture stored as RGB (three equal channels) is grey
    if image.shape[0] != channels:
        kinds = {1: "grey", 3: "colour (RGB)"}
        if not convert:
            raise CLIError(f"{str(path)!r} is {kinds[image.shape[0]]} but the model repairs {kinds[channels]} "
                           f"images; use a {kinds[image.shape[0]].split()[0]} model (see `vaerepair models`), or "
                           f"pass --convert to repair it as {kinds[channels].split()[0]}")
        if channels == 1:  # ITU-R BT.601 luma, as ImageFolder(mode="L")
            image = (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
        else:
            image = image.expand(3, -1, -1).contiguous()
    return image, deep


def _write(path: Path, image: Tensor, deep: bool) -> None:
    """A repair ``(C, H, W)``: ``.npy`` float32 as computed; other suffixes 8-bit images (16-bit grey PNG/TIFF when
    the input had more than 8 bits)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, image.numpy().astype(np.float32))
        return
    clipped = image.clamp(0, 1).numpy()
    if deep and image.shape[0] == 1 and path.suffix.lower() in (".png", ".tif", ".tiff"):
        Image.fromarray((clipped[0] * 65535).round().astype(np.uint16)).save(path)
        return
    pixels = (clipped * 255).round().astype(np.uint8)
    Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)).save(path)


def denoise_command(args: argparse.Namespace) -> None:
    model = _model(args)
    if model.condition is not None:
        raise CLIError(
            f"{str(args.checkpoint)!r} holds a conditional model ({type(model.condition).__name__}), which needs "
            "a label or a mask per image; repair with the Python API: model.repair(x, model.condition.prepare(...))"
        )
    c, h, w = model.image_shape
    sampled = {"n_samples": args.samples, "generator": torch.Generator().manual_seed(args.seed)}
    if args.std_out is not None:
        if len(args.inputs) > 1:
            raise CLIError("--std-out writes the uncertainty of one input; repair several inputs without it")
        if h is not None:
            raise CLIError("--std-out needs a fully convolutional VAE (a ladder or noise-model VAE checkpoint)")
        if (model.repair_samples if args.samples is None else args.samples) < 2:
            raise CLIError("--std-out needs posterior samples: give --samples N with N >= 2 (e.g. 100)")
        prepare_output_file(args.std_out, "--std-out")
    if len(args.inputs) > 1:
        stems: dict[str, Path] = {}
        for path in args.inputs:  # NAME_repaired.png each: two inputs of one name would overwrite each other
            if path.stem in stems:
                raise CLIError(f"{str(stems[path.stem])!r} and {str(path)!r} would both be written to "
                               f"{path.stem}_repaired.png in {str(args.output)!r}; repair them in separate runs")
            stems[path.stem] = path
        prepare_output_folder(args.output, "-o")
    else:
        prepare_output_file(args.output, "-o")
    for path in args.inputs:
        image, deep = _read(path, c, args.convert)
        x = image.unsqueeze(0)
        if h is None:  # fully convolutional: any size, tiled when large
            tile = args.tile if args.tile else (AUTO_TILE if x.shape[-2] * x.shape[-1] > AUTO_TILE_PIXELS else None)
            if args.std_out is not None:
                mean, std = model.repair(x, tile=tile, overlap=args.overlap, return_std=True, **sampled)
                repaired = mean[0]
                _write(args.std_out, std[0], deep)
                print(f"{path} -> {args.std_out} (per-pixel standard deviation)")
            else:
                repaired = model.repair(x, tile=tile, overlap=args.overlap, **sampled)[0]
        else:
            repaired = _repair_fixed_size(model, x, path, args, sampled)
        out = args.output if len(args.inputs) == 1 else args.output / f"{path.stem}_repaired{_suffix(path)}"
        _write(out, repaired, deep)
        print(f"{path} -> {out}")


def _suffix(path: Path) -> str:
    return ".npy" if path.suffix.lower() == ".npy" else ".png"


def _repair_fixed_size(model: PathModel, x: Tensor, path: Path, args: argparse.Namespace,
                       sampled: dict[str, Any]) -> Tensor:
    from torchvision.transforms.v2 import functional as TF

    c, fixed_h, fixed_w = model.image_shape
    assert fixed_h is not None and fixed_w is not None  # a model of one size (a fully convolutional one tiles)
    h, w = fixed_h, fixed_w
    size = tuple(x.shape[-2:])
    tiled = args.tile is not None and size != (h, w)
    if tiled and (size[0] < h or size[1] < w):
        raise CLIError(f"{str(path)!r} is {size[0]}x{size[1]} pixels, smaller than the model's {h}x{w} tiles; "
                       "pass --resize instead of --tile")
    if size != (h, w) and not tiled:
        if not args.resize:
            raise CLIError(
                f"{str(path)!r} is {size[0]}x{size[1]} pixels but the model takes {h}x{w} "
                f"({'grey' if c == 1 else 'RGB'}) images; pass --tile to repair it tile by tile, --resize "
                f"to scale it, or crop it to {h}x{w}"
            )
        x = TF.resize(x.clamp(0, 1), [h, w], antialias=True)
    else:
        x = x.clamp(0, 1)  # a fixed-size model was trained on images in [0, 1]
    repaired = (model.repair(x, tile=(h, w), overlap=args.overlap or 8, **sampled) if tiled
                else model.repair(x, **sampled))[0]
    if size != (h, w) and not tiled:
        repaired = TF.resize(repaired.clamp(0, 1), list(size), antialias=True)
    return repaired.clamp(0, 1)


def centre_crop(image: Tensor, side: int) -> Tensor:
    """The ``side x side`` centre of an image ``(C, H, W)`` (validation batches need one size)."""
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    return image[:, top : top + side, left : left + side]


def _noisy_only_checks(args: argparse.Namespace) -> bool:
    """Whether ``train --data`` trains on noisy images only, after refusing the options that contradict it."""
    variational = args.model in ("vae", "ladder")
    noisy = args.objective in SELF_SUPERVISED or variational
    if variational and args.objective != "elbo":
        raise CLIError(f"--model {args.model} with --data is a noise-model VAE, trained with the ELBO on noisy images; "
                       f"drop --objective {args.objective}")
    if args.objective == "fisher":
        raise CLIError("--objective fisher trains vector-latent VAEs on a --dataset, not photo folders")
    if not noisy:
        if args.targets is not None or args.noise_sigma is not None:
            raise CLIError("--targets and --noise-sigma are for noisy-only training: add --objective noise2noise, "
                           "blindspot or sure (or --model vae or ladder)")
        return False
    what = f"--objective {args.objective}" if not variational else f"--model {args.model}"
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


def train_folder_command(args: argparse.Namespace) -> dict[str, Any]:
    """``vaerepair train --data DIR``: a fully convolutional denoiser on random patches of a photo folder.

    Supervised (clean photos, ``--corruption``), or on noisy images only
    (``--objective noise2noise|blindspot|sure``, ``--model vae``: the noise-model VAE)."""
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.arch != "unet":
        raise CLIError(f"--data trains on photographs of any size, which needs --arch unet, got --arch {args.arch}")
    noisy = _noisy_only_checks(args)
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
    hidden = hidden_widths(args, LADDER_WIDTHS if args.model == "ladder" else (32, 64, 128))
    c = channels.pop()
    objective: Objective
    model: PathModel
    if args.model == "vae":
        model = noise_model_vae(args.noise_sigma / 255, channels=c, gain=args.noise_gain,
                                latent_channels=args.latent_dim, widths=hidden, activation=args.activation)
        objective = ELBO(beta=args.beta, free_bits=args.free_bits)
    elif args.model == "ladder":
        model = ladder_vae(c, widths=hidden, latent_channels=args.latent_dim, sigma=args.noise_sigma / 255,
                           gain=args.noise_gain, activation=args.activation)
        objective = ELBO(beta=args.beta, free_bits=args.free_bits)
    else:
        model = build(ModelSpec(kind="dae", image_shape=(c, 0, 0), latent_dim=args.latent_dim, arch="unet",
                                hidden=hidden, likelihood=args.likelihood, sigma=args.sigma, link=args.link,
                                learn_sigma=args.learn_sigma, activation=args.activation))
        if args.objective == "noise2noise":
            objective = Noise2Noise()
        elif args.objective == "sure":
            objective = SURE(args.noise_sigma / 255)
        elif args.objective == "blindspot":
            objective = BlindSpot(args.blind_spacing, args.blind_replacement)
        else:
            objective = Reconstruction()
    corruption = corr.from_spec(args.corruption) if not noisy else None
    steps = args.epochs * math.ceil(args.patches_per_epoch / args.batch_size)
    trainer = Trainer(
        model, objective, corruption, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        device=args.device, seed=args.seed, checkpoint_dir=args.out, progress=not args.no_progress,
        monitor="val_loss" if noisy else "val_psnr", eval_batch_size=1, checkpoint_every=args.checkpoint_every,
        callbacks=[EMA(0.999), LRSchedule(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, steps, eta_min=args.lr / 100), interval="step")],
        metadata={"data": str(args.data), "corruption": args.corruption, "objective": repr(objective)},
    )
    variational = args.model in ("vae", "ladder")
    method = f"the noise-model {args.model} VAE (ELBO)" if variational else args.objective
    what = (f"{method} on noisy images only"
            if noisy else f"corruption {args.corruption}")
    print(f"training unet {args.model} on {len(train)} photos of {str(args.data)!r} ({args.patch}x{args.patch} "
          f"patches, {args.patches_per_epoch} per epoch; {len(val)} validation images at full size), {what}, "
          f"{args.epochs} epochs on {trainer.device}", flush=True)
    train_targets = _counterparts(train, targets) if targets is not None else None
    val_data: Any = list(val)
    if noisy:
        val_data = _noisy_groups(list(val), _counterparts(val, targets) if targets is not None else None)
    history = trainer.fit(PatchSource(list(train), args.patch, patches_per_epoch=args.patches_per_epoch,
                                      augment=True, targets=train_targets), val_data, resume=args.resume)
    metrics = {"best_epoch": history.best_epoch, "seconds": time.perf_counter() - t_start,
               "history": history.to_dict(),
               "config": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                          for k, v in vars(args).items()}}
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


def evaluate_folder_command(args: argparse.Namespace) -> dict[str, Any]:
    """``vaerepair evaluate --data DIR --sigma S``: the denoising literature's protocol on a photo folder."""
    model = _model(args)
    c = model.image_shape[0]
    photos = ImageFolder(args.data, mode="L" if c == 1 else "RGB")
    if any(im.dtype != torch.uint8 for im in photos):
        raise CLIError(f"the protocol reads 8-bit images; {str(args.data)!r} holds 16-bit ones")
    results = {}
    for sigma in args.sigma:
        check_noise_range(model, (sigma / 255, sigma / 255))
        results[str(sigma)] = evaluate_protocol(lambda x: model.repair(x, tile=args.tile), list(photos), sigma,
                                                names=[p.name for p in photos.paths])
    print(f"\n{str(args.data)!r}: {len(photos)} images, protocol of the denoising literature "
          "(NumPy seed 0 per image, unclipped noise, 8-bit output, peak 255)")
    print(f"{'sigma':>6}{'noisy PSNR':>12}{'PSNR':>8}{'SSIM':>8}")
    for sigma, r in results.items():
        print(f"{sigma:>6}{r['psnr_input']:12.2f}{r['psnr']:8.2f}{r['ssim']:8.3f}")
    if args.out is not None:
        write_json(args.out, {"data": str(args.data), "results": results})
    return results
