"""Warnings for a run that finishes but learnt nothing useful: repairs worse than the input, NaN terms."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

from vaerepair._checks import check_count
from vaerepair.training.callbacks.base import Callback

if TYPE_CHECKING:
    from vaerepair.training.trainer import Trainer

__all__ = ["TrainingHealth"]


class TrainingHealth(Callback):
    """Flags two silent failures in the history and warns once about each (the Trainer adds it itself).

    - The validation repairs are worse than the corrupted inputs (``val_psnr <
      val_psnr_input``) for ``patience`` epochs in a row: a diverged or collapsed
      model (a learning rate far too large, a likelihood that does not fit the
      data). Each such epoch gets ``worse_than_input = 1`` in its record.
    - A logged value (a term of the objective, a metric) is NaN or infinite while
      the loss stays finite (the guard stops on a non-finite loss): a warning
      names the key and the epoch.

    Args:
        patience: epochs in a row of repairs worse than the input before the warning.
    """

    def __init__(self, patience: int = 3) -> None:
        patience = check_count(patience, "patience")
        self.patience = patience
        self.worse_epochs = 0
        self.warned: set[str] = set()

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        bad = sorted(k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v))
        for key in bad:
            if key not in self.warned:
                self.warned.add(key)
                warnings.warn(f"the logged value {key!r} was {record[key]} in epoch {trainer.epoch} although the "
                              "loss was finite; check the objective's terms (a log of 0, a division by 0)",
                              RuntimeWarning, stacklevel=2)
        repaired, corrupted = record.get("val_psnr"), record.get("val_psnr_input")
        if repaired is None or corrupted is None:
            return
        if repaired < corrupted:
            self.worse_epochs += 1
            record["worse_than_input"] = 1.0
        else:
            self.worse_epochs = 0
        if self.worse_epochs == self.patience and "worse_than_input" not in self.warned:
            self.warned.add("worse_than_input")
            lr = record.get("lr")
            warnings.warn(
                f"the validation repairs have been worse than the corrupted inputs for {self.patience} epochs "
                f"(epoch {trainer.epoch}: PSNR {repaired:.2f} dB repaired vs {corrupted:.2f} dB corrupted): the model "
                f"is not learning to repair; try a smaller learning rate{f' than {lr:g}' if lr else ''} or a "
                "likelihood that fits the data (worse_than_input = 1 marks these epochs in the history)",
                RuntimeWarning, stacklevel=2)

    def state_dict(self) -> dict[str, Any]:
        return {"worse_epochs": self.worse_epochs, "warned": sorted(self.warned)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.worse_epochs = int(state["worse_epochs"])
        self.warned = set(state["warned"])
