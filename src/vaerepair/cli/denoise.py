"""``vaerepair denoise``: repair your own image files with a shipped model or a trained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaerepair.cli import arguments as A
from vaerepair.cli.build import named_model
from vaerepair.cli.common import CLIError, prepare_output_file, prepare_output_folder
from vaerepair.cli.evaluate import add_samples_argument
from vaerepair.data import IMAGE_SUFFIXES, read_image
from vaerepair.models import NoiseLevel, PathModel

__all__ = ["AUTO_TILE", "AUTO_TILE_PIXELS", "add_arguments", "run"]

AUTO_TILE_PIXELS = 1024 * 1024  # a fully convolutional model tiles larger images by itself (memory bound)
AUTO_TILE = 512


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", type=Path,
                   help="PNG, JPEG, BMP or TIFF files (8- or 16-bit), .npy float arrays in [0, 1] units (unclipped), "
                        "or folders of them (their image files, not their subfolders)")
    p.add_argument("--model", "-m", default=None, help="a shipped model (see `vaerepair models`)")
    p.add_argument("--checkpoint", "-c", type=Path, default=None)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file (one input file) or folder (several inputs, or a folder)")
    p.add_argument("--convert", action="store_true",
                   help="repair a colour image with a grey model as grey (BT.601), a grey one with a colour model "
                        "as RGB (default: an error)")
    p.add_argument("--resize", action="store_true",
                   help="resize inputs to the model's size and the result back to the input's size")
    p.add_argument("--tile", type=A.positive_int, nargs="?", const=AUTO_TILE, default=None,
                   help="repair tile by tile, blended: tiles of T pixels for a fully convolutional model (which "
                        f"tiles images over {AUTO_TILE_PIXELS // 2**20} MP by itself), of the model's size otherwise")
    p.add_argument("--overlap", type=A.positive_int, default=None,
                   help="pixels shared by neighbouring tiles (default: from the model's receptive field; 8)")
    add_samples_argument(p)
    p.add_argument("--std-out", type=Path, default=None,
                   help="a VAE, one input: also write the per-pixel standard deviation of the samples (in the "
                        "image's 0..1 units, as an image: bright is uncertain) to this file")
    p.add_argument("--seed", type=A.seed, default=0, help="the posterior samples' seed")
    p.add_argument("--noise-sigma", type=noise_level, default=None, metavar="SIGMA|auto",
                   help="a non-blind model (`vaerepair models` says which): the inputs' noise level on the 0..255 "
                        "scale, or auto (the default) to estimate it from each image")


def noise_level(text: str) -> float | None:
    """``--noise-sigma``: a level on the 0..255 scale, or ``auto`` (``None``: estimate it per image)."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a noise level on the 0..255 scale like 25, or auto, "
                                         f"got {text!r}") from None
    if not (0 <= value <= 255):
        raise argparse.ArgumentTypeError(f"a noise level on the 0..255 scale lies in [0, 255], got {text!r}")
    return value


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


def expand_inputs(inputs: list[Path]) -> tuple[list[Path], bool]:
    """The input files, a folder replaced by its image files (sorted), and whether the outputs go to a folder
    (several inputs or any folder)."""
    files: list[Path] = []
    for path in inputs:
        if not path.exists():  # before any output is written
            raise CLIError(f"input image {str(path)!r} does not exist")
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, ".npy"))
        if not found:
            raise CLIError(f"the folder {str(path)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)} or .npy)")
        files += found
    return files, len(files) > 1 or any(path.is_dir() for path in inputs)


def run(args: argparse.Namespace) -> None:
    """Repair each input file and write the result (and, for a VAE, its per-pixel uncertainty)."""
    args.inputs, to_folder = expand_inputs(args.inputs)
    model = named_model(args)
    noise_level_of = model.condition if isinstance(model.condition, NoiseLevel) else None
    takes_sigma = noise_level_of is not None
    if model.condition is not None and not takes_sigma:
        raise CLIError(
            f"{str(args.checkpoint)!r} holds a conditional model ({type(model.condition).__name__}), which needs "
            "a label or a mask per image; repair with the Python API: model.repair(x, model.condition.prepare(...))"
        )
    if args.noise_sigma is not None and not takes_sigma:
        raise CLIError(f"the model is blind: it takes no --noise-sigma (got {args.noise_sigma:g}); a non-blind "
                       "model such as --model grey-sigma does (see `vaerepair models`)")
    c, h, w = model.image_shape
    sampled = {"n_samples": args.samples, "generator": torch.Generator().manual_seed(args.seed),
               "ensemble": args.ensemble}
    if args.std_out is not None:
        if len(args.inputs) > 1:
            raise CLIError("--std-out writes the uncertainty of one input; repair several inputs without it")
        if h is not None:
            raise CLIError("--std-out needs a fully convolutional VAE (a ladder or noise-model VAE checkpoint)")
        if (model.repair_samples if args.samples is None else args.samples) < 2:
            raise CLIError("--std-out needs posterior samples: give --samples N with N >= 2 (e.g. 100)")
        prepare_output_file(args.std_out, "--std-out")
    if to_folder:
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
        condition, told = None, ""
        if noise_level_of is not None:  # the noise level given, or estimated from the image
            condition = noise_level_of.levels(x, args.noise_sigma / 255 if args.noise_sigma is not None else None)
            how = "" if args.noise_sigma is not None else ", estimated"
            told = f" (noise sigma {float(condition[0]) * 255:.1f}/255{how})"
        if h is None:  # fully convolutional: any size, tiled when large
            tile = args.tile if args.tile else (AUTO_TILE if x.shape[-2] * x.shape[-1] > AUTO_TILE_PIXELS else None)
            if args.std_out is not None:
                mean, std = model.repair(x, condition, tile=tile, overlap=args.overlap, return_std=True, **sampled)
                repaired = mean[0]
                _write(args.std_out, std[0], deep)
                print(f"{path} -> {args.std_out} (per-pixel standard deviation)")
            else:
                repaired = model.repair(x, condition, tile=tile, overlap=args.overlap, **sampled)[0]
        else:
            repaired = _repair_fixed_size(model, x, path, args, sampled)
        out = args.output / f"{path.stem}_repaired{_suffix(path)}" if to_folder else args.output
        _write(out, repaired, deep)
        print(f"{path} -> {out}{told}")


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
