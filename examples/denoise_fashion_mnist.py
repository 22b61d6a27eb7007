"""Denoise Fashion-MNIST with the public API: corrupt, train, evaluate, look.

Trains the demo's denoising autoencoder for a few epochs at each noise level,
prints PSNR/SSIM before and after repair on the first 1000 test images, and
writes one repair grid per noise level and the loss curves to runs/example/.

Run: python examples/denoise_fashion_mnist.py [--epochs 5] [--sigmas 0.25 0.5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import vaerepair as vr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--out", type=Path, default=Path("runs/example"))
    args = parser.parse_args()

    train, val = vr.train_val_split(vr.load("fashion-mnist", split="train"), val_fraction=0.2, seed=0)
    test = vr.load("fashion-mnist", split="test")[:1000]
    print(f"{'sigma':>6}{'noisy dB':>10}{'repaired dB':>13}{'noisy SSIM':>12}{'repaired SSIM':>15}")
    for sigma in args.sigmas:
        torch.manual_seed(0)
        model = vr.autoencoder(arch="mlp", latent_dim=64, hidden=(1024, 512), activation="silu",
                               likelihood="gaussian", sigma=0.1, link="sigmoid")
        noise = vr.GaussianNoise(sigma)
        trainer = vr.Trainer(model, vr.Reconstruction(), noise, epochs=args.epochs, lr=2e-3, progress=False,
                             scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs))
        history = trainer.fit(train, val)
        r = trainer.evaluate(test)
        print(f"{sigma:6.2f}{r['psnr_input']:10.2f}{r['psnr']:13.2f}{r['ssim_input']:12.3f}{r['ssim']:15.3f}")

        clean = test.float_images()[:10].to(trainer.device)
        noisy = noise(clean, generator=torch.Generator(trainer.device).manual_seed(0))
        vr.plots.save_repair_grid(args.out / f"grid_sigma{sigma}.png", clean, noisy, model.repair(noisy))
        vr.plots.plot_history(history, args.out / f"loss_sigma{sigma}.png", title=f"denoising, sigma={sigma}")
    print(f"pictures in {args.out}/")


if __name__ == "__main__":
    main()
