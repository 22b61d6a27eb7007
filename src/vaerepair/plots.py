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

if TYPE_CHECKING:
    from vaerepair.training.history import History

__all__ = ["save_repair_grid", "plot_history"]


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
    rows = []
    for name, x in (("clean", clean), ("corrupted", corrupted), ("repaired", repaired)):
        check_images(x, name)
        rows.append(x[:n].detach().float().cpu().clamp(0, 1))
    n = min(len(r) for r in rows)
    if scale is None:
        scale = max(1, -(-96 // rows[0].shape[-2]))
    images = torch.cat([r[:n] for r in rows])
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    ax.set_ylabel("loss (nats per image)")
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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
