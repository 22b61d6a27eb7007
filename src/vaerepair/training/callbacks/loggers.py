"""Loggers: the history as a CSV file, and TensorBoard event files."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaerepair._io import atomic_open
from vaerepair.training.callbacks.base import Callback

if TYPE_CHECKING:
    from vaerepair.objectives import ObjectiveResult
    from vaerepair.training.sources import Batch
    from vaerepair.training.trainer import Trainer

__all__ = ["CSVLogger", "TensorBoardLogger"]


class CSVLogger(Callback):
    """Write ``trainer.history`` to ``path`` as CSV after every epoch (one row per epoch, one column per
    metric; rewritten whole and atomically, so a resumed run continues the same file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if not trainer.dist.is_main:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=trainer.history.keys(), restval="")
        writer.writeheader()
        writer.writerows(trainer.history.records)
        with atomic_open(self.path, "w") as f:
            f.write(buffer.getvalue())


class TensorBoardLogger(Callback):
    """Scalars for TensorBoard (``torch.utils.tensorboard``; ``pip install vaerepair[tensorboard]``).

    Every epoch's record goes under ``train/``, ``val/`` and ``epoch/`` tags at
    the epoch's global step; with ``log_every=N`` the step loss also goes to
    ``step/loss`` every N optimizer steps (each read is a host synchronisation
    on a GPU).

    Args:
        log_dir: the folder for the event files.
        log_every: steps between step-loss scalars (``None``: per epoch only).
    """

    def __init__(self, log_dir: str | os.PathLike[str], log_every: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # torch's module needs the tensorboard package
            raise ImportError("TensorBoardLogger needs the tensorboard package: "
                              "pip install 'vaerepair[tensorboard]' (or pip install tensorboard)") from err
        self._writer_type = SummaryWriter
        self.log_dir, self.log_every = Path(log_dir), log_every
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.dist.is_main and self.writer is None:
            self.writer = self._writer_type(log_dir=str(self.log_dir))

    def on_step_end(self, trainer: Trainer, batch: Batch, result: ObjectiveResult) -> None:
        if self.writer is not None and self.log_every and trainer.global_step % self.log_every == 0:
            self.writer.add_scalar("step/loss", float(result.loss.detach()), trainer.global_step)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if key == "epoch":
                continue
            group, _, name = key.partition("_") if key.startswith(("train_", "val_")) else ("epoch", "", key)
            self.writer.add_scalar(f"{group}/{name}", value, trainer.global_step)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
