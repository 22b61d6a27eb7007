"""Training without clean images, Fashion-MNIST: supervised DAE vs Noise2Noise, blind-spot, SURE, noise-model VAEs.

For each sigma the training images are corrupted once with unclipped Gaussian
noise (a fixed seed; Noise2Noise gets a second, independent observation of each
image) and the self-supervised methods never see a clean image. The supervised
DAE is the library's usual one: clean images, fresh noise every epoch (so the
comparison is, if anything, in its favour). Every method trains the same
U-Net (``arch="unet"``, widths 16/32, a 16-channel code per pixel; the VAE's
posterior head gives a mean and a scale per channel) for the same number of
epochs and steps with the same optimiser (Adam 2e-3, cosine decay). The
repairs of the first 1000 test images (noise from a fixed seed) are scored by
PSNR/SSIM; the VAEs repair with the MMSE estimate (the mean of 32 decoded
posterior samples). The ladder VAE (``ladder-vae``: three levels of 16-channel
spatial latents at 1, 1/2 and 1/4 of the resolution, widths 32, two gated
blocks per level and direction, trained with the ELBO on the same noisy images
for the same epochs and steps) is the
hierarchical answer to the single-level VAE. For both VAEs the script also
measures calibration: the fraction of clean pixels inside the central 90 %
interval of 100 posterior samples (the first 1000 test images) and the mean
per-pixel standard deviation, and writes an uncertainty picture. The default
run is a quick version (sigma 0.5, the first 12 000 training images, one epoch,
calibration on 200 test images; about 6 minutes on 2 CPU cores); ``--full`` is
the published protocol (both sigmas, 60 000 images, two epochs, calibration on
1000 test images: about an hour and a half). ``--methods``, ``--sigmas``,
``--n-train`` and ``--epochs`` pick parts of either.

Run: python benchmarks/self_supervised.py [--full] [--sigmas 0.25 0.5] [--epochs 2] [--threads 2] [--methods ...]
     [--vae-samples 32] [--ladder-blocks 2]
It ends with ``best self-supervised minus supervised at sigma 0.5: X.XX dB`` and
``ladder VAE minus supervised at sigma 0.5: X.XX dB``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import vaerepair as vr
from vaerepair.data import NoisyImages
from vaerepair.objectives import SURE, BlindSpot, Noise2Noise
from vaerepair.training.callbacks import LRSchedule

METHODS = ("supervised", "noise2noise", "blindspot", "sure", "noise-model-vae", "ladder-vae")
VAES = ("noise-model-vae", "ladder-vae")
WIDTHS, LATENT = (16, 32), 16
LADDER_WIDTHS, LADDER_LATENT = (32, 32, 32), 16  # levels at 1, 1/2, 1/4 of the resolution


def make(method: str, sigma: float, samples: int = 32, blocks: int = 1) -> tuple[torch.nn.Module, object]:
    """The model and objective of a method (the same U-Net for all but the ladder; the VAEs repair with the
    mean of ``samples`` posterior samples; the ladder has ``blocks`` gated blocks per level and direction)."""
    torch.manual_seed(0)
    if method == "noise-model-vae":
        return vr.noise_model_vae(sigma, widths=WIDTHS, latent_channels=LATENT, activation="silu",
                                  repair_samples=samples), vr.ELBO()
    if method == "ladder-vae":
        return vr.ladder_vae(widths=LADDER_WIDTHS, latent_channels=LADDER_LATENT, sigma=sigma, blocks=blocks,
                             full_resolution=True, repair_samples=samples), vr.ELBO()
    model = vr.autoencoder(arch="unet", image_shape=(1, None, None), hidden=WIDTHS, latent_dim=LATENT,
                           likelihood="gaussian", sigma=0.1, activation="silu")
    objective = {"supervised": vr.Reconstruction(), "noise2noise": Noise2Noise(), "blindspot": BlindSpot(),
                 "sure": SURE(sigma)}[method]
    return model, objective


@torch.no_grad()
def calibration(model: torch.nn.Module, test: NoisyImages, generator: torch.Generator, samples: int = 100,
                batch: int = 50) -> dict[str, float]:
    """Coverage of the central 90 % interval of ``samples`` posterior draws, mean std and RMS error of their mean."""
    inside, stds, errors, psnrs = [], [], [], []
    for i in range(0, len(test.observations), batch):
        noisy, clean = test.observations[i : i + batch], test.clean[i : i + batch]
        draws = model.sample_repairs(noisy, samples, generator=generator)  # type: ignore[operator]
        inside.append(vr.metrics.interval_coverage(draws, clean, 0.9, reduction="none"))
        stds.append(draws.std(0).flatten(1).mean(1))
        errors.append((draws.mean(0) - clean).square().flatten(1).mean(1))
        psnrs.append(vr.psnr(draws.mean(0), clean, reduction="none"))
    return {"coverage": float(torch.cat(inside).mean()), "mean_std": float(torch.cat(stds).mean()),
            "rms_error": float(torch.cat(errors).mean().sqrt()), f"psnr_{samples}": float(torch.cat(psnrs).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="the published protocol: both sigmas, 60000 images, 2 epochs (about an hour); the "
                             "default is a quick version (sigma 0.5, 12000 images, 1 epoch: within 10 minutes)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--calibration-n", type=int, default=None,
                        help="test images behind the VAEs' calibration (default: 1000 with --full, 200 otherwise)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--vae-samples", type=int, default=32, help="posterior samples per VAE repair")
    parser.add_argument("--ladder-blocks", type=int, default=2, help="gated blocks per ladder level and direction")
    parser.add_argument("--out", type=Path, default=Path("runs/self_supervised"))
    args = parser.parse_args()
    for name, quick, full in (("sigmas", [0.5], [0.25, 0.5]), ("n_train", 12000, 60000), ("epochs", 1, 2),
                              ("calibration_n", 200, 1000)):
        if getattr(args, name) is None:
            setattr(args, name, full if args.full else quick)
    torch.set_num_threads(args.threads)
    train = vr.load("fashion-mnist", "train")[: args.n_train]
    test = vr.load("fashion-mnist", "test")[:1000]
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, float]]] = {}
    steps = args.epochs * -(-len(train) // args.batch_size)

    def cosine(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=args.lr / 50)

    for sigma in args.sigmas:
        noisy = NoisyImages.simulate(train, vr.GaussianNoise(sigma), seed=1, pairs=True, keep_clean=False)
        single = NoisyImages(noisy.observations)  # what blind-spot, SURE and the VAE see: one observation each
        test_noisy = NoisyImages.simulate(test, vr.GaussianNoise(sigma), seed=2)
        row = results.setdefault(str(sigma), {})
        row["noisy input"] = {"psnr": float(vr.psnr(test_noisy.observations, test_noisy.clean)),
                              "ssim": float(vr.ssim(test_noisy.observations, test_noisy.clean))}
        for method in args.methods:
            model, objective = make(method, sigma, args.vae_samples, args.ladder_blocks)
            data = {"supervised": train, "noise2noise": noisy}.get(method, single)
            trainer = vr.Trainer(
                model, objective, vr.GaussianNoise(sigma) if method == "supervised" else None,
                epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=0,
                progress=False, callbacks=[LRSchedule(cosine, interval="step")])
            start = time.perf_counter()
            trainer.fit(data)
            seconds = time.perf_counter() - start
            generator = torch.Generator(device=trainer.device).manual_seed(0)
            repaired = trainer.model.repair(test_noisy.observations, generator=generator)  # type: ignore[operator]
            row[method] = {"psnr": float(vr.psnr(repaired, test_noisy.clean)),
                           "ssim": float(vr.ssim(repaired, test_noisy.clean)), "seconds": seconds}
            print(f"sigma {sigma}  {method:16s} PSNR {row[method]['psnr']:.2f} dB  SSIM {row[method]['ssim']:.3f}  "
                  f"({seconds:.0f} s)", flush=True)
            if method in VAES:
                row[method].update(calibration(trainer.model, test_noisy[: args.calibration_n], generator))
                print(f"sigma {sigma}  {method:16s} 90% intervals of 100 samples (first {args.calibration_n} test "
                      f"images) hold {row[method]['coverage']:.3f} "
                      f"of the clean pixels; mean std {row[method]['mean_std']:.3f}, RMS error "
                      f"{row[method]['rms_error']:.3f}; PSNR of the 100-sample mean {row[method]['psnr_100']:.2f} dB",
                      flush=True)
                mean, std = trainer.model.repair(  # type: ignore[operator]
                    test_noisy.observations[:8], n_samples=64, return_std=True, generator=generator)
                vr.plots.save_image_rows(args.out / f"uncertainty_{method}_sigma{sigma}.png", {
                    "clean": test_noisy.clean[:8], "noisy": test_noisy.observations[:8], "MMSE repair": mean,
                    "posterior std (x4)": (4 * std).clamp(0, 1)})
    (args.out / "self_supervised.json").write_text(json.dumps(results, indent=2))
    print("\n| sigma | noisy | " + " | ".join(args.methods) + " |")
    print("|---|---|" + "---|" * len(args.methods))
    for sigma, row in results.items():
        cells = [f"{row[m]['psnr']:.2f} / {row[m]['ssim']:.3f}" for m in ["noisy input", *args.methods]]
        print(f"| {sigma} | " + " | ".join(cells) + " |")
    for sigma, row in results.items():
        if "supervised" not in row:
            continue
        others = [m for m in args.methods if m != "supervised"]
        if others:
            best = max(others, key=lambda m: row[m]["psnr"])
            print(f"best self-supervised at sigma {sigma}: {best}")
            print(f"best self-supervised minus supervised at sigma {sigma}: "
                  f"{row[best]['psnr'] - row['supervised']['psnr']:.2f} dB")
    for sigma, row in results.items():
        if "supervised" in row and "ladder-vae" in row:
            print(f"ladder VAE minus supervised at sigma {sigma}: "
                  f"{row['ladder-vae']['psnr'] - row['supervised']['psnr']:.2f} dB")


if __name__ == "__main__":
    main()
