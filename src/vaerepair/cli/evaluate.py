"""``vaerepair evaluate``: PSNR/SSIM and loss of a checkpoint on its dataset's test images, or of a photo
denoiser on a folder of photographs (``--data``) under the denoising literature's protocol."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from vaerepair import corruptions as corr
from vaerepair.cli import arguments as A
from vaerepair.cli.build import VARIATIONAL, iwae_samples, named_model
from vaerepair.cli.common import CLIError
from vaerepair.cli.pictures import print_table, write_grid
from vaerepair.data import ImageFolder
from vaerepair.data import load_dataset as load
from vaerepair.models import NoiseLevel
from vaerepair.objectives import ELBO, Reconstruction
from vaerepair.protocol import evaluate_protocol
from vaerepair.training import Trainer, load_checkpoint, load_model
from vaerepair.training.history import write_json
from vaerepair.zoo import check_noise_range

__all__ = ["add_arguments", "add_samples_argument", "run"]


def add_samples_argument(p: argparse.ArgumentParser) -> None:
    """``--samples`` and ``--ensemble``: how ``evaluate`` and ``denoise`` repair."""
    p.add_argument("--samples", type=A.nonnegative_int, default=None,
                   help="a VAE: repair with the mean of N posterior samples (default: the model's own; 0: the "
                        "posterior mean decoded)")
    p.add_argument("--ensemble", type=int, choices=(1, 8), default=1,
                   help="8: average the repairs of the 8 flips and rotations of each image (8x the time)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--model", default=None, help="with --data: a shipped model (see `vaerepair models`)")
    p.add_argument("--data", type=Path, default=None,
                   help="a folder of 8-bit photographs: PSNR/SSIM at full size, NumPy seed 0 per image, unclipped "
                        "Gaussian noise of each --noise-sigma, 8-bit output")
    p.add_argument("--noise-sigma", type=A.sigmas, default=None,
                   help="with --data: noise levels in 0..255 units, comma-separated (default 15,25,50)")
    p.add_argument("--sigma", dest="_noise_sigma_spelled_sigma", type=A.sigmas, default=None,
                   help=argparse.SUPPRESS)  # before --noise-sigma; --sigma is train's likelihood scale
    p.add_argument("--tile", type=A.positive_int, default=None, help="with --data: repair tile by tile")
    p.add_argument("--estimate-sigma", action="store_true",
                   help="with --data, a non-blind model: estimate each noisy image's noise level instead of telling "
                        "the model the protocol's --noise-sigma")
    p.add_argument("--dataset", type=A.dataset, default=None, help="default: the one it was trained on")
    p.add_argument("--root", default=None)
    p.add_argument("--corruption", type=A.corruption, default=None, help="default: the one it was trained with")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--n", type=A.positive_int, default=1000, help="the first N images of the split")
    p.add_argument("--iwae-k", type=A.positive_int, default=None,
                   help="vae, ladder: importance samples for the -log p(x) estimate (default: 1000 for a vae; "
                        "none for a ladder)")
    add_samples_argument(p)
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="write the metrics as JSON here")
    p.add_argument("--grid", type=Path, default=None, help="write a clean/corrupted/repaired grid PNG here")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.data is not None:
        if args.noise_sigma is None:
            args.noise_sigma = [15.0, 25.0, 50.0]
        return _evaluate_folder(args)
    if args.checkpoint is None:
        raise CLIError("evaluate needs --checkpoint FILE (or --data DIR with --model NAME / --checkpoint)")
    if args.ensemble != 1:
        raise CLIError("--ensemble is for photographs (evaluate --data, denoise); a dataset's evaluation repairs as "
                       "training validated")
    return _evaluate_checkpoint(args)


def _evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """A checkpoint on its dataset's test images, under its corruption (or the ones given)."""
    ckpt = load_checkpoint(args.checkpoint)
    meta = ckpt.get("metadata") or {}
    dataset = args.dataset or meta.get("dataset")
    spec_text = args.corruption or meta.get("corruption")
    if dataset is None:
        raise CLIError("the checkpoint does not record its dataset; pass --dataset")
    if spec_text is None:
        raise CLIError("the checkpoint does not record a corruption; pass --corruption (e.g. gaussian:0.5)")
    model = load_model(args.checkpoint)
    test = load(dataset, args.split, root=args.root)[: args.n]
    corruption = corr.from_spec(spec_text)
    objective = ELBO() if (model.spec or {}).get("kind") in VARIATIONAL else Reconstruction()
    if args.samples is not None:
        model.repair_samples = args.samples
    trainer = Trainer(model, objective, corruption, device=args.device, progress=False, seed=args.seed)
    result = trainer.evaluate(test, seed=args.seed + 100, iwae_k=iwae_samples(args, model))
    print_table(dataset, len(test), spec_text, result)
    if args.grid:
        write_grid(args.grid, test, corruption, model, trainer.device, args.seed)
    if args.out:
        write_json(args.out, {"checkpoint": str(args.checkpoint), "dataset": dataset, "corruption": spec_text,
                              **result})
    return result


def _noise_level(model: Any, x: torch.Tensor, sigma: float, estimate: bool) -> torch.Tensor | None:
    """A non-blind model's condition: the protocol's ``sigma`` (0..255), or the estimate from each noisy image."""
    if not isinstance(model.condition, NoiseLevel):
        return None
    return model.condition.levels(x, None if estimate else sigma / 255)


def _evaluate_folder(args: argparse.Namespace) -> dict[str, Any]:
    """``vaerepair evaluate --data DIR --noise-sigma S``: the denoising literature's protocol on a photo folder."""
    model = named_model(args)
    c = model.image_shape[0]
    photos = ImageFolder(args.data, mode="L" if c == 1 else "RGB")
    if any(im.dtype != torch.uint8 for im in photos):
        raise CLIError(f"the protocol reads 8-bit images; {str(args.data)!r} holds 16-bit ones")
    results = {}
    for sigma in args.noise_sigma:
        check_noise_range(model, (sigma / 255, sigma / 255))
        def repair(x: torch.Tensor, sigma: float = sigma) -> torch.Tensor:
            return model.repair(x, _noise_level(model, x, sigma, args.estimate_sigma), tile=args.tile,
                                ensemble=args.ensemble)

        results[str(sigma)] = evaluate_protocol(repair, list(photos), sigma, names=[p.name for p in photos.paths])
    print(f"\n{str(args.data)!r}: {len(photos)} images, protocol of the denoising literature "
          "(NumPy seed 0 per image, unclipped noise, 8-bit output, peak 255)")
    print(f"{'sigma':>6}{'noisy PSNR':>12}{'PSNR':>8}{'SSIM':>8}")
    for sigma, r in results.items():
        print(f"{sigma:>6}{r['psnr_input']:12.2f}{r['psnr']:8.2f}{r['ssim']:8.3f}")
    if args.out is not None:
        write_json(args.out, {"data": str(args.data), "results": results})
    return results
