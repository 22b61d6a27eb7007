"""A grid of repairs (clean / corrupted / repaired) written as a PNG every few epochs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from vaerepair._checks import check_count
from vaerepair.training.callbacks.base import Callback
from vaerepair.training.sources import condition_of

if TYPE_CHECKING:
    from vaerepair.models.latent import LatentModel
    from vaerepair.training.trainer import Trainer

__all__ = ["ImageGrid"]


class ImageGrid(Callback):
    """After every ``every`` epochs, repair the first ``n`` validation images (their fixed corruption) and
    write ``folder/pattern`` (``pattern`` is formatted with ``epoch``). The grid uses the weights that
    validation used (with an :class:`~vaerepair.training.callbacks.EMA` before this callback: the average).

    Args:
        folder: where the PNGs go.
        n: images per row.
        every: epochs between grids.
        pattern: the file name, e.g. ``"grid_{epoch:03d}.png"``.
    """

    def __init__(self, folder: str | os.PathLike[str], n: int = 8, every: int = 1,
                 pattern: str = "grid_{epoch:03d}.png") -> None:
        every = check_count(every, "every")
        self.folder, self.n, self.every, self.pattern = Path(folder), n, every, pattern
        self.written: list[Path] = []

    def on_validation_end(self, trainer: Trainer) -> None:
        fixed = trainer.val_fixed
        epoch = trainer.epoch
        if fixed is None or not trainer.dist.is_main or epoch % self.every:
            return
        from vaerepair.plots import save_image_rows, save_repair_grid

        if isinstance(fixed, list):  # images of several sizes: the grid shows those of the first size
            fixed = fixed[0]
        part = slice(0, self.n)
        corrupted, mask = fixed.corrupted[part], fixed.mask[part]
        labels = fixed.labels[part] if fixed.labels is not None else None
        clean = fixed.clean[part] if fixed.clean is not None else None
        model = cast("LatentModel", trainer.model)
        was_training = trainer.model.training
        trainer.model.eval()
        try:
            with torch.no_grad():
                repaired = model.reconstruct(corrupted, condition_of(trainer.condition, corrupted, mask, labels, clean))
        finally:
            trainer.model.train(was_training)
        path = self.folder / self.pattern.format(epoch=epoch)
        if fixed.clean is None:  # noisy observations without clean images
            self.written.append(save_image_rows(path, {"noisy": corrupted.cpu(), "repaired": repaired.float().cpu()},
                                                n=self.n))
            return
        clean = fixed.clean[part]
        self.written.append(save_repair_grid(path, clean.cpu(), corrupted.cpu(), repaired.float().cpu(), n=self.n))
