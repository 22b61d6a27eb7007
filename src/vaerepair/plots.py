"""Pictures: reconstruction grids (torchvision) and loss curves (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import save_image

from vaerepair._checks import check_images
from vaerepair._io import naming_the_file

if TYPE_CHECKING:
    from vaerepair.training.history import History

__all__ = [
    "save_repair_grid", "save_image_rows", "plot_history", "save_samples_grid", "latent_projection",
    "plot_latent_scatter",
    "plot_density_2d",
]


def save_repair_grid(
    path: str | os.PathLike[str],
    clean: Tensor,
    corrupted: Tensor,
    repaired: Tensor,
    n: int = 8,
    scale: int | None = None,
) -> Path:
    """Write a PNG with three rows: clean / corrupted / repaired, ``n`` images each.

    Args:
        path: the PNG to write.
        clean: the clean images ``(B, C, H, W)``.
        corrupted: the corrupted images ``(B, C, H, W)``; values are clamped to
            ``[0, 1]`` for display (unclipped noise goes outside it).
        repaired: the repaired images ``(B, C, H, W)``.
        n: images per row (at most ``B``).
        scale: integer upscaling (nearest neighbour) so small images stay
            legible; default: the smallest factor making them at least 96 pixels high.
    """
    return save_image_rows(path, {"clean": clean, "corrupted": corrupted, "repaired": repaired}, n, scale)


def save_image_rows(
    path: str | os.PathLike[str], rows: dict[str, Tensor], n: int = 8, scale: int | None = None
) -> Path:
    """Write a PNG with one row of ``n`` images per entry of ``rows`` (each ``(B, C, H, W)``), top to bottom.

    Values are clamped to ``[0, 1]``; ``scale`` as in :func:`save_repair_grid`.
    """
    if not rows:
        raise ValueError("rows is empty: give at least one named batch of images")
    checked = []
    for name, x in rows.items():
        check_images(x, name)
        checked.append(x[:n].detach().float().cpu().clamp(0, 1))
    n = min(len(r) for r in checked)
    if scale is None:
        scale = max(1, -(-96 // checked[0].shape[-2]))
    images = torch.cat([r[:n] for r in checked])
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming_the_file(path):
        save_image(images, path, nrow=n, padding=2, pad_value=1.0)
    return path


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'vaerepair[plot]'") from err
    return plt


def _save_figure(plt: Any, fig: Any, path: str | os.PathLike[str]) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with naming_the_file(path):
            fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def plot_history(
    history: History,
    path: str | os.PathLike[str],
    metrics: Sequence[str] = ("train_loss", "val_loss"),
    title: str | None = None,
) -> Path:
    """Write a PNG of the loss curves (and PSNR, when recorded) over epochs."""
    plt = _pyplot()
    known = history.keys()
    shown = [m for m in metrics if m in known]
    if not shown:
        raise ValueError(f"none of {list(metrics)} is in the history; known: {', '.join(known)}")
    has_psnr = "val_psnr" in known
    fig, axes = plt.subplots(1, 2 if has_psnr else 1, figsize=(10 if has_psnr else 5.5, 4), squeeze=False)
    ax = axes[0, 0]
    for m in shown:
        epochs = [r["epoch"] for r in history if m in r]
        ax.plot(epochs, history[m], marker="o", label=m)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per image")
    ax.legend()
    ax.grid(alpha=0.3)
    if has_psnr:
        ax2 = axes[0, 1]
        epochs = [r["epoch"] for r in history if "val_psnr" in r]
        ax2.plot(epochs, history["val_psnr"], marker="o", label="repaired")
        if "val_psnr_input" in known:
            ax2.plot(epochs, history["val_psnr_input"], linestyle="--", label="corrupted input")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("validation PSNR (dB)")
        ax2.legend()
        ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save_figure(plt, fig, path)


def save_samples_grid(path: str | os.PathLike[str], model: torch.nn.Module, n: int = 64,
                      generator: torch.Generator | None = None, scale: int | None = None,
                      condition: Tensor | None = None) -> Path:
    """Write a PNG of ``n`` images decoded from prior samples (``model.sample(n)``), 8 per row.

    A conditional model needs ``condition`` with ``n`` rows (e.g. each class
    label 8 times: one class per row).
    """
    sampler = getattr(model, "sample", None)
    if sampler is None:
        raise TypeError(f"{type(model).__name__} has no sample(n); use a vaerepair LatentVariableModel with a prior")
    kwargs = {"condition": condition} if condition is not None else {}
    images = sampler(n, generator=generator, **kwargs).float().cpu().clamp(0, 1)
    if scale is None:
        scale = max(1, -(-64 // images.shape[-2]))
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming_the_file(path):
        save_image(images, path, nrow=8, padding=2, pad_value=1.0)
    return path


def latent_projection(codes: Tensor) -> tuple[Tensor, str]:
    """Codes ``(N, D)`` as 2-D points ``(N, 2)``: themselves when ``D <= 2``, else their first two principal components.

    Returns the points and a label for the axes (``"z"`` or ``"PC"``).
    """
    if codes.dim() != 2:
        raise ValueError(f"codes must have shape (N, D), got {tuple(codes.shape)}")
    codes = codes.detach().double().cpu()
    if codes.shape[1] == 1:
        return torch.cat([codes, torch.zeros_like(codes)], dim=1), "z"
    if codes.shape[1] == 2:
        return codes, "z"
    centred = codes - codes.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, "PC"


@torch.no_grad()
def plot_latent_scatter(path: str | os.PathLike[str], model: torch.nn.Module, images: Tensor, labels: Tensor,
                        title: str | None = None, batch_size: int = 1000, condition: Tensor | None = None) -> Path:
    """Scatter of the posterior means of ``images`` ``(N, C, H, W)`` in 2-D, coloured by ``labels`` ``(N,)``.

    A 2-D latent is shown as is (report 002, figure 2); a wider one by the first
    two principal components of the means. A conditional model needs
    ``condition`` (one row per image).
    """
    plt = _pyplot()
    check_images(images, "images")
    encode = getattr(model, "encode", None)
    if encode is None:
        raise TypeError(f"{type(model).__name__} has no encode(x); use a vaerepair LatentVariableModel")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        codes = torch.cat([
            encode(images[i : i + batch_size].to(device),
                   condition[i : i + batch_size].to(device) if condition is not None else None).mean.cpu()
            for i in range(0, len(images), batch_size)
        ])
    finally:
        model.train(was_training)
    points, axis = latent_projection(codes)
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=4, alpha=0.7)
    fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(f"{axis}1")
    ax.set_ylabel(f"{axis}2")
    ax.set_title(title or f"latent means ({codes.shape[1]}-D{', PCA' if axis == 'PC' else ''})")
    return _save_figure(plt, fig, path)


@torch.no_grad()
def plot_density_2d(
    path: str | os.PathLike[str],
    densities: dict[str, Any],
    box: float = 4.0,
    n: int = 200,
    title: str | None = None,
) -> Path:
    """Write a PNG with one heat map per entry of ``densities`` on ``[-box, box]^2``.

    Each value is a function ``z (N, 2) -> log-density (N,)`` (unnormalised is
    fine: each panel shows ``exp`` of it scaled to its own maximum), e.g. a
    target ``lambda z: -U(z)`` next to a fitted flow's ``log_prob``.
    """
    plt = _pyplot()
    t = torch.linspace(-box, box, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="xy"), dim=-1).reshape(-1, 2)
    fig, axes = plt.subplots(1, len(densities), figsize=(3.6 * len(densities), 3.6), squeeze=False)
    for ax, (name, log_density) in zip(axes[0], densities.items(), strict=True):
        values = log_density(grid).double().reshape(n, n)
        image = (values - values.max()).exp().cpu().numpy()
        ax.imshow(image, extent=(-box, box, -box, box), origin="lower", cmap="viridis")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return _save_figure(plt, fig, path)
