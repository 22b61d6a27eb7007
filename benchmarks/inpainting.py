"""Inpainting Fashion-MNIST (``block:12``): the conditional ladder VAE against the conditional VAE.

Both models are trained with the ELBO on (corrupted, clean) pairs, the corruption
a 12x12 block erased at a random place (fresh every epoch), conditioned on the
corrupted image and its mask:

* ``cvae``: today's conditional VAE as ``docs/quickstart.md`` builds it
  (``conditional_vae("image", latent_dim=20, hidden=(400,))``), whose posterior
  q(z | x~, c) sees the corrupted image;
* ``ladder``: ``ladder_vae(condition="image")``, three levels of 16-channel
  spatial latents (widths 32), whose prior p(z | c) sees the condition and whose
  posterior q(z | x, c) sees the clean image too; its repairs are drawn from the
  prior given the condition.

On the first 1000 test images (blocks from a fixed seed) each model draws 100
repairs per image (``sample_repairs``) and the script prints, in the missing
region: the PSNR of their mean (pooled over the missing pixels of every image),
the PSNR of one draw, the PSNR of the best of the first 16 (chosen per image with
the clean image: how close the nearest completion comes), the fraction of clean
pixels inside the central 90 % interval of the 100 draws (calibration; target
0.85-0.95; for a Gaussian likelihood also of 100 images drawn from p(x | c), the
draws plus the likelihood's noise), and the mean per-pixel standard deviation of the draws inside and
outside the hole. It writes ``inpainting.png`` (8 test images: clean, corrupted,
the mean, the std x4, then 8 completions) per model into ``--out``.

The default run (the CVAE for 5 epochs on the 60 000 training images, the ladder
for ``--ladder-images`` images) takes about 10 minutes on 2 CPU cores;
``--ladder-epochs`` and ``--ladder-images`` buy a longer ladder run.

Run: python benchmarks/inpainting.py [--threads 2] [--ladder-epochs 1] [--ladder-images 20000] [--out DIR]
It ends with ``ladder minus CVAE, best of 16 in the hole: X.XX dB``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import vaerepair as vr
from vaerepair.training.callbacks import LRSchedule


def make(name: str, sigma: float = 0.1) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "cvae":
        return vr.conditional_vae("image", latent_dim=20, hidden=(400,))
    return vr.ladder_vae(widths=(32, 32, 32), latent_channels=16, sigma=sigma, condition="image", repair_samples=16)


def train(name: str, model: torch.nn.Module, data: vr.data.ImageDataset, epochs: int, seed: int) -> float:
    """Train with the ELBO on fresh 12x12 blocks (Adam, cosine decay to 1/50); the seconds it took."""
    lr, batch = (2e-3 if name == "ladder" else 1e-3), 128
    steps = epochs * -(-len(data) // batch)

    def cosine(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 50)

    t0 = time.perf_counter()
    vr.Trainer(model, vr.ELBO(), "block:12", epochs=epochs, lr=lr, batch_size=batch, seed=seed, device="cpu",
               callbacks=[LRSchedule(cosine, interval="step")], progress=False).fit(data)
    return time.perf_counter() - t0


def _pooled_psnr(sq: torch.Tensor, mask: torch.Tensor) -> float:
    return float(10 * torch.log10(mask.sum() / (sq * mask).sum()))


@torch.no_grad()
def measure(model: torch.nn.Module, clean: torch.Tensor, samples: int = 100, batch: int = 50) -> dict[str, float]:
    """Missing-region quality and calibration of ``samples`` repairs per image (blocks from a fixed seed)."""
    out = vr.corruptions.BlockErasure(12)(clean, generator=torch.Generator().manual_seed(123), return_mask=True)
    corrupted, mask = out.images, out.mask
    condition = model.condition.prepare(corrupted, mask)  # type: ignore[union-attr, operator]
    g = torch.Generator().manual_seed(0)
    sums: dict[str, list[torch.Tensor]] = {k: [] for k in ("mean_sq", "one_sq", "best_sq", "inside", "std_in",
                                                            "std_out", "inside_predictive")}
    sigma = getattr(model.likelihood, "sigma", None)  # a Gaussian likelihood's scale: draws of p(x | c) too
    for i in range(0, len(clean), batch):
        x, m, c = clean[i : i + batch], mask[i : i + batch], condition[i : i + batch]
        draws = model.sample_repairs(corrupted[i : i + batch], samples, c, generator=g)  # (S, B, C, H, W)
        sums["mean_sq"].append((draws.mean(0) - x).square())
        sums["one_sq"].append((draws[0] - x).square())
        hole_sq = ((draws[:16] - x).square() * m).flatten(2).sum(2)  # (16, B)
        best = hole_sq.argmin(0)
        sums["best_sq"].append((draws[best, torch.arange(len(x))] - x).square())
        sums["inside"].append(vr.metrics.interval_coverage(draws, x, 0.9, reduction="none", mask=m))
        if sigma is not None:  # images drawn from p(x | c), as sample_repairs(predictive=True): means plus noise
            noisy = draws + float(sigma) * torch.randn(draws.shape, generator=g)
            sums["inside_predictive"].append(vr.metrics.interval_coverage(noisy, x, 0.9, reduction="none", mask=m))
        std = draws.std(0)
        sums["std_in"].append((std * m).flatten(1).sum(1) / m.flatten(1).sum(1))
        sums["std_out"].append((std * ~m).flatten(1).sum(1) / (~m).flatten(1).sum(1))
    cat = {k: torch.cat(v) for k, v in sums.items() if v}
    inside = cat["inside"][~cat["inside"].isnan()]
    extra = {}
    if "inside_predictive" in cat:
        predictive = cat["inside_predictive"]
        extra["coverage_hole_predictive"] = float(predictive[~predictive.isnan()].mean())
    return {"psnr_hole_mean": _pooled_psnr(cat["mean_sq"], mask), "psnr_hole_one": _pooled_psnr(cat["one_sq"], mask),
            "psnr_hole_best16": _pooled_psnr(cat["best_sq"], mask), "psnr_image_mean": float(
                10 * torch.log10(1 / cat["mean_sq"].flatten(1).mean(1)).mean()),
            "coverage_hole": float(inside.mean()), "std_hole": float(cat["std_in"].mean()),
            "std_outside": float(cat["std_out"].mean()), **extra}


@torch.no_grad()
def picture(path: Path, model: torch.nn.Module, clean: torch.Tensor) -> None:
    out = vr.corruptions.BlockErasure(12)(clean, generator=torch.Generator().manual_seed(123), return_mask=True)
    condition = model.condition.prepare(out.images, out.mask)  # type: ignore[union-attr, operator]
    draws = model.sample_repairs(out.images, 64, condition, generator=torch.Generator().manual_seed(1))
    rows = {"clean": clean, "corrupted": out.images, "mean of 64": draws.mean(0),
            "std (x4)": (4 * draws.std(0)).clamp(0, 1)}
    rows.update({f"completion {i + 1}": draws[i] for i in range(8)})
    vr.plots.save_image_rows(path, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cvae-epochs", type=int, default=5)
    parser.add_argument("--ladder-epochs", type=int, default=1)
    parser.add_argument("--ladder-images", type=int, default=20000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--ladder-sigma", type=float, default=0.1, help="the ladder's Gaussian likelihood scale")
    parser.add_argument("--models", nargs="+", choices=("cvae", "ladder"), default=["cvae", "ladder"])
    parser.add_argument("--out", type=Path, default=Path("runs/inpainting"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    full = vr.load("fashion-mnist", "train")
    test = vr.load("fashion-mnist", "test").float_images()[: args.test_images]
    results: dict[str, dict[str, float]] = {}
    for name in args.models:
        model = make(name, args.ladder_sigma)
        data = full if name == "cvae" else full[: args.ladder_images]
        epochs = args.cvae_epochs if name == "cvae" else args.ladder_epochs
        seconds = train(name, model, data, epochs, seed=0)
        model.eval()
        torch.save(model.state_dict(), args.out / f"{name}.pt")
        results[name] = {**measure(model, test), "train_seconds": seconds, "train_images": float(len(data)),
                         "epochs": float(epochs), "parameters": float(sum(p.numel() for p in model.parameters()))}
        picture(args.out / f"inpainting_{name}.png", model, test[:8])
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in results[name].items()})}", flush=True)
    print(f"\nFashion-MNIST, block:12, first {len(test)} test images, 100 repairs per image, {args.threads} threads")
    print(f"{'':8}{'hole PSNR: mean':>16}{'one draw':>10}{'best of 16':>12}{'90% cover':>11}{'p(x|c)':>8}"
          f"{'std in':>8}{'std out':>9}{'train s':>9}")
    for name, r in results.items():
        predictive = r.get("coverage_hole_predictive", float("nan"))
        print(f"{name:8}{r['psnr_hole_mean']:16.2f}{r['psnr_hole_one']:10.2f}{r['psnr_hole_best16']:12.2f}"
              f"{r['coverage_hole']:11.3f}{predictive:8.3f}{r['std_hole']:8.3f}{r['std_outside']:9.3f}"
              f"{r['train_seconds']:9.0f}")
    (args.out / "inpainting.json").write_text(json.dumps(results, indent=1))
    if len(results) == 2:
        gap = results["ladder"]["psnr_hole_best16"] - results["cvae"]["psnr_hole_best16"]
        print(f"ladder minus CVAE, best of 16 in the hole: {gap:.2f} dB")


if __name__ == "__main__":
    main()
