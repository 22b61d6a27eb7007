"""The pictures and the table ``train`` and ``evaluate`` write for a dataset: the repair grid, prior samples or
completions, a ladder's uncertainty, and the before/after table."""

from __future__ import annotations

from pathlib import Path

import torch

from vaerepair import corruptions as corr
from vaerepair.data import ImageDataset
from vaerepair.models import LabelCondition, LadderVAE, LatentVariableModel, PathModel
from vaerepair.plots import save_image_rows, save_repair_grid, save_samples_grid
from vaerepair.training.sources import condition_of

__all__ = ["conditions", "write_grid", "write_samples", "write_uncertainty", "print_table"]


def conditions(
    model: PathModel, data: ImageDataset, corruption: corr.Corruption, device: torch.device, seed: int,
) -> tuple[corr.Corrupted, torch.Tensor | None]:
    """One corruption of ``data`` (with its mask) and, for a conditional model, the conditions it gives."""
    clean = data.float_images().to(device)
    out = corruption.to(device)(clean, generator=torch.Generator(device).manual_seed(seed), return_mask=True)
    if model.condition is None:
        return out, None
    return out, condition_of(model.condition, out.images, out.mask, data.labels.to(device), clean)


def write_grid(
    path: Path, test: ImageDataset, corruption: corr.Corruption, model: PathModel,
    device: torch.device, seed: int, n: int = 8,
) -> None:
    """The clean / corrupted / repaired grid of the first ``n`` test images."""
    first = test[:n]
    corrupted, condition = conditions(model, first, corruption, device, seed)
    save_repair_grid(path, first.float_images(), corrupted.images, model.repair(corrupted.images, condition))


def write_samples(
    path: Path, model: LatentVariableModel | LadderVAE, test: ImageDataset, corruption: corr.Corruption,
    device: torch.device, seed: int,
) -> None:
    """Prior samples: 64 of them; per class (one row each) for a label condition; for an image
    condition, eight completions drawn from the prior for each of 8 incomplete test images (a row per draw)."""
    generator = torch.Generator(device).manual_seed(0)
    if model.condition is None:
        save_samples_grid(path, model, generator=generator)
    elif isinstance(model.condition, LabelCondition):
        classes = torch.arange(model.condition.n_classes, device=device).repeat_interleave(8)
        save_samples_grid(path, model, n=len(classes), generator=generator, condition=model.condition(classes))
    else:
        first = test[:8]
        corrupted, condition = conditions(model, first, corruption, device, seed)
        assert condition is not None
        rows = {"clean": first.float_images(), "corrupted": corrupted.images}
        for i in range(8):
            rows[f"completion {i + 1}"] = model.sample(len(first), condition=condition, generator=generator)
        save_image_rows(path, rows)


def write_uncertainty(path: Path, model: LadderVAE, test: ImageDataset, corruption: corr.Corruption,
                       device: torch.device, seed: int) -> None:
    """Eight test images: clean, corrupted, the repair (the mean of 64 posterior samples) and their std (x4)."""
    first = test[:8]
    clean = first.float_images().to(device)
    out, condition = conditions(model, first, corruption, device, seed)
    corrupted = out.images
    mean, std = model.repair(corrupted, condition, n_samples=64, return_std=True,
                             generator=torch.Generator(device).manual_seed(seed))
    save_image_rows(path, {"clean": clean, "corrupted": corrupted.clamp(0, 1), "repair (mean of 64)": mean,
                           "posterior std (x4)": (4 * std).clamp(0, 1)})


def print_table(dataset: str, n: int, corruption: str, r: dict[str, float]) -> None:
    print(f"\n{dataset} test images (first {n}), corruption {corruption}")
    print(f"{'':12}{'PSNR (dB)':>12}{'SSIM':>10}")
    print(f"{'corrupted':12}{r['psnr_input']:12.2f}{r['ssim_input']:10.3f}")
    print(f"{'repaired':12}{r['psnr']:12.2f}{r['ssim']:10.3f}")
    if "psnr_missing" in r:
        print(f"missing region only: PSNR {r['psnr_missing_input']:.2f} dB corrupted, "
              f"{r['psnr_missing']:.2f} dB repaired")
    if "nll_iwae" in r:
        print(f"clean images: negative ELBO {r['neg_elbo']:.2f} nats, IWAE -log p(x) {r['nll_iwae']:.2f} nats")
