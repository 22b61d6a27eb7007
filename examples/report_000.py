"""Report 000's comparison: VAE vs beta-VAE (beta = 4) repairing Gaussian noise, sigma in {0.05, 0.25, 0.5}.

Same network for every model (the reports' 784-400-20 MLP, Bernoulli/BCE
likelihood), same data, budget (epochs, Adam 1e-3, batch 128) and seed; each
model is trained on noisy inputs with clean targets and evaluated on the first
1000 test images with a fixed noise draw. Runs on Fashion-MNIST, and on KMNIST
and MNIST when their files are on disk (``vaerepair fetch kmnist --check``).

Writes to ``--out`` (default runs/report_000/): ``results.md`` (the PSNR/SSIM
table, and the negative ELBO and IWAE -log p(x) of clean test images),
``results.json``, per dataset and sigma a grid (clean / noisy / one row per
model) and the loss curves of each model.

Run: python examples/report_000.py [--epochs 10] [--datasets fashion-mnist kmnist mnist]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

import vaerepair as vr
from vaerepair.data import DatasetNotFoundError, locate

# name -> objective factory; every model is the same VAE network.
MODELS: dict[str, Callable[[], vr.objectives.Objective]] = {
    "VAE": lambda: vr.ELBO(beta=1.0),
    "beta-VAE (beta=4)": lambda: vr.ELBO(beta=4.0),
}


def run_dataset(name: str, args: argparse.Namespace) -> list[dict[str, float | str]]:
    train, val = vr.train_val_split(vr.load(name, "train"), val_fraction=0.2, seed=args.seed)
    test = vr.load(name, "test")[: args.n_test]
    rows: list[dict[str, float | str]] = []
    for sigma in args.sigmas:
        noise = vr.GaussianNoise(sigma)
        repairs = {}
        for model_name, objective in MODELS.items():
            torch.manual_seed(args.seed)
            model = vr.variational_autoencoder(test.image_shape, latent_dim=20, hidden=(400,), likelihood="bernoulli")
            trainer = vr.Trainer(model, objective(), noise, epochs=args.epochs, batch_size=128, lr=1e-3,
                                 seed=args.seed, progress=False)
            t0 = time.perf_counter()
            history = trainer.fit(train, val)
            r = trainer.evaluate(test, seed=args.seed + 100, iwae_k=args.iwae_k)
            rows.append({"dataset": name, "sigma": sigma, "model": model_name, **r,
                         "seconds": time.perf_counter() - t0})
            print(f"{name} sigma={sigma} {model_name}: PSNR {r['psnr_input']:.2f} -> {r['psnr']:.2f} dB, "
                  f"SSIM {r['ssim_input']:.3f} -> {r['ssim']:.3f}, -ELBO {r['neg_elbo']:.1f}, "
                  f"IWAE -log p(x) {r['nll_iwae']:.1f} ({rows[-1]['seconds']:.0f} s)", flush=True)
            slug = model_name.split(" ")[0].lower()
            vr.plots.plot_history(history, args.out / f"{name}_sigma{sigma}_{slug}_loss.png",
                                  title=f"{model_name}, {name}, sigma={sigma}")
            clean = test.float_images()[:10].to(trainer.device)
            noisy = noise(clean, generator=torch.Generator(trainer.device).manual_seed(args.seed))
            repairs["clean"], repairs["noisy"] = clean, noisy
            repairs[model_name] = model.repair(noisy)
        vr.plots.save_image_rows(args.out / f"{name}_sigma{sigma}_grid.png", repairs, n=10)
    return rows


def table(rows: list[dict[str, float | str]]) -> str:
    lines = ["| dataset | σ | model | PSNR noisy | PSNR repaired | SSIM noisy | SSIM repaired | −ELBO (clean) "
             "| IWAE −log p(x) (clean) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['sigma']} | {r['model']} | {r['psnr_input']:.2f} | {r['psnr']:.2f} | "
                     f"{r['ssim_input']:.3f} | {r['ssim']:.3f} | {r['neg_elbo']:.1f} | {r['nll_iwae']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.25, 0.5])
    parser.add_argument("--datasets", nargs="+", default=["fashion-mnist", "kmnist", "mnist"],
                        help="fashion-mnist must be on disk; the others run when present")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--iwae-k", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/report_000"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, float | str]] = []
    for name in args.datasets:
        if name != "fashion-mnist":
            try:
                locate(name)
            except DatasetNotFoundError:
                print(f"{name}: not on disk, skipped (vaerepair fetch {name})")
                continue
        rows += run_dataset(name, args)
    (args.out / "results.md").write_text(table(rows) + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n" + table(rows))
    print(f"\nwrote {args.out}/results.md, results.json, grids and loss curves")


if __name__ == "__main__":
    main()
