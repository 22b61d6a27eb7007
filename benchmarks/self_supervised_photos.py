"""Training on noisy photographs only: Train400 at sigma = 25 (noise drawn once), Set12 under the standard protocol.

The 400 grey 180x180 Train400 images get unclipped Gaussian noise of
sigma = 25/255 once (a fixed seed); the clean images are never used again
(20 noisy images are held out: validation reports the objective's own loss,
which for SURE estimates the MSE). The U-Net of the shipped photo models
(widths 32/64/128, a 32-channel code per pixel) trains on random 48x48 patches
of the noisy images with the 8 flips/rotations, Adam with a cosine decay and
an EMA of the weights, under SURE (default) or the blind-spot objective; or
(``--objective ladder``) a ladder VAE (``--ladder-widths``, 16-channel codes per
level, the finest at full resolution) whose likelihood is the noise model, trained with the ELBO and repairing
with the mean of ``--samples`` posterior samples; or (``--objective vae``) the
single-level noise-model VAE on the same U-Net (a 32-channel Gaussian code per
pixel, the same likelihood and repair). The budget is set with ``--minutes``:
training stops at the first epoch end past it. Set12
is then denoised under the protocol of ``../shared/datasets/README.md``
(``vaerepair.protocol``), and the table compares with the published figures.

Run: python benchmarks/self_supervised_photos.py [--objective sure|blindspot|ladder|vae] [--epochs 8]
     [--patches-per-epoch 2000] [--threads 2] [--minutes M]
Writes runs/self_supervised_photos/<objective>/ (checkpoints, result.json).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import vaerepair as vr
from vaerepair.data import ImageFolder, NoisyImages
from vaerepair.objectives import SURE, BlindSpot
from vaerepair.protocol import evaluate_protocol
from vaerepair.training import PatchSource
from vaerepair.training.callbacks import EMA, LRSchedule
from vaerepair.training.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
PUBLISHED = {"BM3D (Set12)": 29.97, "DnCNN-S supervised (Set12)": 30.44, "Noise2Void (BSD68)": 27.71,
             "BM3D (BSD68)": 28.57, "DnCNN-S supervised (BSD68)": 29.23}


class TimeBudget(vr.Callback):
    """Stops training at the first epoch end after ``seconds`` of training."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def on_epoch_end(self, trainer: vr.Trainer, record: dict[str, float]) -> None:
        if time.perf_counter() - self.start > self.seconds:
            trainer.stop_training = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objective", choices=("sure", "blindspot", "ladder", "vae"), default="sure")
    parser.add_argument("--ladder-widths", type=int, nargs="+", default=[32, 32, 32, 32])
    parser.add_argument("--samples", type=int, default=32, help="ladder, vae: posterior samples per repair")
    parser.add_argument("--minutes", type=float, default=None, help="stop at the first epoch end past this")
    parser.add_argument("--sigma", type=float, default=25.0, help="0..255 units")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patches-per-epoch", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "self_supervised_photos")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sigma = args.sigma / 255
    photos = ImageFolder(args.data / "train400", mode="L")
    clean = torch.stack(list(photos)).float() / 255  # (400, 1, 180, 180)
    noisy = NoisyImages.simulate(clean, vr.GaussianNoise(sigma), seed=0, keep_clean=False)
    del clean
    train, val = noisy[20:], noisy[:20]
    torch.manual_seed(0)
    model: torch.nn.Module
    if args.objective == "ladder":
        model = vr.ladder_vae(widths=tuple(args.ladder_widths), latent_channels=16, sigma=sigma,
                              full_resolution=True, repair_samples=args.samples)
        objective: object = vr.ELBO()
    elif args.objective == "vae":  # the single-level noise-model VAE, on the SURE model's U-Net
        model = vr.noise_model_vae(sigma, widths=(32, 64, 128), latent_channels=32, repair_samples=args.samples)
        objective = vr.ELBO()
    else:
        model = vr.models.build(vr.models.ModelSpec(kind="dae", image_shape=(1, None, None), arch="unet",
                                                    hidden=(32, 64, 128), latent_dim=32, likelihood="gaussian"))
        objective = SURE(sigma) if args.objective == "sure" else BlindSpot()
    callbacks: list[vr.Callback] = []
    if args.minutes is not None:
        callbacks.append(TimeBudget(args.minutes * 60))
    steps = args.epochs * math.ceil(args.patches_per_epoch / args.batch_size)
    out = args.out / args.objective
    trainer = vr.Trainer(
        model, objective, None, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=0,
        checkpoint_dir=out, monitor="val_loss", eval_batch_size=4, progress=False,
        callbacks=[EMA(0.999), LRSchedule(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, steps, eta_min=args.lr / 100), interval="step"), *callbacks])
    start = time.perf_counter()
    trainer.fit(PatchSource(train, args.patch, patches_per_epoch=args.patches_per_epoch, augment=True), val=val)
    minutes = (time.perf_counter() - start) / 60
    for record in trainer.history.records:
        print(f"epoch {record['epoch']:.0f}: train {record['train_loss']:.5f}  val {record['val_loss']:.5f}  "
              f"({record['seconds']:.0f} s)", flush=True)
    best = load_model(out / "best.pt", ema=True).to(trainer.device)
    set12 = ImageFolder(args.data / "set12", mode="L")
    images = [im for im in set12]
    generator = torch.Generator(trainer.device).manual_seed(0)
    result = evaluate_protocol(lambda y: best.repair(y, generator=generator), images, args.sigma,
                               names=[p.stem for p in set12.paths])
    summary = {"objective": args.objective, "sigma": args.sigma, "train_minutes": round(minutes, 1),
               "patches_seen": args.epochs * args.patches_per_epoch, "set12_psnr": result["psnr"],
               "set12_ssim": result["ssim"], "set12_psnr_input": result["psnr_input"], "published": PUBLISHED,
               "images": result["images"]}
    (out / "result.json").write_text(json.dumps(summary, indent=2))
    print(f"\n| Set12, sigma {args.sigma:g} | PSNR (dB) | SSIM |\n|---|---|---|")
    print(f"| noisy input | {result['psnr_input']:.2f} | |")
    print(f"| vaerepair, noisy-only {args.objective} ({minutes:.0f} min on CPU) | {result['psnr']:.2f} | "
          f"{result['ssim']:.3f} |")
    for name, value in PUBLISHED.items():
        print(f"| {name} (published) | {value:.2f} | |")
    print(f"noisy-only {args.objective} minus BM3D on Set12 at sigma {args.sigma:g}: {result['psnr'] - 29.97:.2f} dB")


if __name__ == "__main__":
    main()
