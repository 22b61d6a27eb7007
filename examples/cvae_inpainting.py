"""Report 002's inpainting: a VAE and two conditional VAEs fill an erased block.

Four models, the same MLP (784-400-20) and budget, as in report 002:

* ``VAE, incomplete inputs``: a VAE trained on erased images, clean targets;
* ``VAE, complete inputs``: a VAE trained on clean images, asked to repair erased ones;
* ``CVAE, label``: conditioned on the one-hot class label (encoder and decoder);
* ``CVAE, incomplete image``: conditioned on the erased image and its mask.

Each repairs the first 1000 test images with one fixed erasure. The table
gives the PSNR of the whole image (the raw model output), of the missing
region only, and of the whole image when the observed pixels are kept and
only the hole is filled (what a user would paste back), plus SSIM.
Pictures: a grid (clean / erased / one row per model), three completions per
image drawn from the prior of the image-conditional model, samples of the
label-conditional model (one class per row), and the test set's latent
means (PCA) of the first VAE, coloured by label (report 002, figure 2).

Run: python examples/cvae_inpainting.py [--dataset fashion-mnist] [--block 12] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import vaerepair as vr

VARIANTS = {
    # name: (condition, trained on erased inputs)
    "VAE, incomplete inputs": (None, True),
    "VAE, complete inputs": (None, False),
    "CVAE, label": ("label", True),
    "CVAE, incomplete image": ("image", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, mnist (report 002), kmnist")
    parser.add_argument("--block", type=int, default=12, help="side of the erased square, pixels")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--likelihood", default="bernoulli", choices=("bernoulli", "gaussian"),
                        help="report 002 tried BCE (bernoulli) and MSE (gaussian, sigma 0.1 here)")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/cvae_inpainting"))
    args = parser.parse_args()

    train, val = vr.train_val_split(vr.load(args.dataset, "train"), val_fraction=0.2, seed=args.seed)
    test = vr.load(args.dataset, "test")[: args.n_test]
    erase = vr.BlockErasure(size=args.block)
    lik = {"likelihood": "gaussian", "sigma": 0.1, "link": "sigmoid"} if args.likelihood == "gaussian" else {}
    clean = test.float_images()
    erased, mask = erase(clean, generator=torch.Generator().manual_seed(args.seed + 100), return_mask=True)
    rows, grid, trained = [], {"clean": clean, "erased": erased}, {}
    for name, (condition, on_erased) in VARIANTS.items():
        torch.manual_seed(args.seed)
        if condition is None:
            model = vr.variational_autoencoder(test.image_shape, latent_dim=20, hidden=(400,), **lik)
        else:
            model = vr.conditional_vae(condition, test.image_shape, latent_dim=20, hidden=(400,),
                                       n_classes=int(train.labels.max()) + 1, **lik)
        trainer = vr.Trainer(model, vr.ELBO(), erase if on_erased else None, epochs=args.epochs, lr=1e-3,
                             seed=args.seed, progress=False)
        trainer.fit(train, val)
        model = model.cpu()
        cond = model.condition.prepare(erased, mask, test.labels) if model.condition is not None else None
        repaired = model.repair(erased, cond)
        pasted = torch.where(mask, repaired, erased)  # keep the observed pixels, fill the hole
        row = {"model": name, "psnr": float(vr.psnr(repaired, clean)),
               "psnr_missing": float(vr.psnr(repaired, clean, mask=mask)),
               "psnr_pasted": float(vr.psnr(pasted, clean)), "ssim": float(vr.ssim(repaired, clean)),
               "ssim_pasted": float(vr.ssim(pasted, clean)), "psnr_input": float(vr.psnr(erased, clean)),
               "psnr_missing_input": float(vr.psnr(erased, clean, mask=mask))}
        rows.append(row)
        print(f"{name}: PSNR whole {row['psnr']:.2f}, missing region {row['psnr_missing']:.2f}, "
              f"pasted {row['psnr_pasted']:.2f} dB (erased input: {row['psnr_input']:.2f} / "
              f"{row['psnr_missing_input']:.2f} dB)", flush=True)
        grid[name] = pasted
        trained[name] = model

    out = args.out
    vr.plots.save_image_rows(out / "grid.png", grid, n=10)
    cvae = trained["CVAE, incomplete image"]
    completions = {"clean": clean[:10], "erased": erased[:10]}
    cond = cvae.condition.prepare(erased[:10], mask[:10])
    gen = torch.Generator().manual_seed(0)
    for i in range(3):
        completions[f"completion {i + 1}"] = torch.where(mask[:10], cvae.sample(10, cond, generator=gen), erased[:10])
    vr.plots.save_image_rows(out / "completions.png", completions, n=10)
    label_cvae = trained["CVAE, label"]
    classes = torch.arange(label_cvae.condition.n_classes).repeat_interleave(8)
    vr.plots.save_samples_grid(out / "label_samples.png", label_cvae, n=len(classes), generator=gen,
                               condition=label_cvae.condition(classes))
    vr.plots.plot_latent_scatter(out / "latent.png", trained["VAE, incomplete inputs"], clean, test.labels,
                                 title=f"{args.dataset} test images: VAE latent means (PCA)")

    lines = ["| model | PSNR whole | PSNR missing region | PSNR pasted | SSIM | SSIM pasted |",
             "|---|---|---|---|---|---|",
             f"| erased input | {rows[0]['psnr_input']:.2f} | {rows[0]['psnr_missing_input']:.2f} | "
             f"{rows[0]['psnr_input']:.2f} | | |"]
    lines += [f"| {r['model']} | {r['psnr']:.2f} | {r['psnr_missing']:.2f} | {r['psnr_pasted']:.2f} | "
              f"{r['ssim']:.3f} | {r['ssim_pasted']:.3f} |" for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n" + "\n".join(lines))
    print(f"\nwrote {out}/results.md, results.json, grid.png, completions.png, label_samples.png, latent.png")


if __name__ == "__main__":
    main()
