"""Warnings for a run that finishes but learnt nothing useful: repairs worse than the input, NaN terms,
collapsed latent levels."""

from __future__ import annotations

import math
import re
import warnings
from typing import TYPE_CHECKING, Any

from vaerepair._checks import check_count, check_positive
from vaerepair.training.callbacks.base import Callback

if TYPE_CHECKING:
    from vaerepair.training.trainer import Trainer

__all__ = ["TrainingHealth"]

_LEVEL_KL = re.compile(r"train_kl(_\d+)?")


class TrainingHealth(Callback):
    """Flags two silent failures in the history and warns once about each (the Trainer adds it itself).

    - The validation repairs are worse than the corrupted inputs (a larger mean
      squared error, ``val_mse > val_mse_input``: errors, which stay finite where
      a PSNR of a perfect image does not) for ``patience`` epochs in a row, or at
      the end of a fit shorter than that: a diverged or collapsed model (a
      learning rate far too large, a likelihood that does not fit the data).
      Each such epoch gets ``worse_than_input = 1`` in its record.
    - A logged value (a term of the objective, a metric) is NaN or infinite while
      the loss stays finite (the guard stops on a non-finite loss): a warning
      names the key and the epoch.
    - A latent level has collapsed: its KL (``train_kl``, or ``train_kl_0``,
      ``train_kl_1``... per level of a ladder, top first) stays under ``kl_floor``
      nats per image for ``patience`` epochs in a row, so the decoder ignores it
      and its samples are all alike. A warning names the level.

    Args:
        patience: epochs in a row of repairs worse than the input, or of a
            collapsed level, before the warning.
        kl_floor: nats per image under which a level's KL counts as collapsed.
    """

    def __init__(self, patience: int = 3, kl_floor: float = 0.1) -> None:
        patience = check_count(patience, "patience")
        self.patience = patience
        self.kl_floor = check_positive(kl_floor, "kl_floor", allow_zero=True)
        self.worse_epochs = 0
        self.collapsed: dict[str, int] = {}
        self.warned: set[str] = set()

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        bad = sorted(k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v))
        for key in bad:
            if key not in self.warned:
                self.warned.add(key)
                warnings.warn(f"the logged value {key!r} was {record[key]} in epoch {trainer.epoch} although the "
                              "loss was finite; check the objective's terms (a log of 0, a division by 0)",
                              RuntimeWarning, stacklevel=2)
        self._check_collapse(trainer, record)
        if not _worse_than_input(record):
            self.worse_epochs = 0
            return
        self.worse_epochs += 1
        record["worse_than_input"] = 1.0
        if self.worse_epochs == self.patience:
            self._warn_worse(trainer, record, f"for {self.patience} epochs")

    def on_fit_end(self, trainer: Trainer) -> None:
        """A fit that ends with repairs worse than its inputs is said so, however short it was."""
        records = trainer.history.records
        if records and records[-1].get("worse_than_input"):
            self._warn_worse(trainer, records[-1], "at the end of the fit")

    def _warn_worse(self, trainer: Trainer, record: dict[str, float], when: str) -> None:
        if "worse_than_input" in self.warned:
            return
        self.warned.add("worse_than_input")
        lr = record.get("lr")
        warnings.warn(
            f"the validation repairs are worse than the corrupted inputs {when} (epoch {trainer.epoch}: PSNR "
            f"{record.get('val_psnr', math.nan):.2f} dB repaired vs {record.get('val_psnr_input', math.nan):.2f} dB "
            f"corrupted): the model is not learning to repair; try a smaller learning rate"
            f"{f' than {lr:g}' if lr else ''} or a likelihood that fits the data (worse_than_input = 1 marks these "
            "epochs in the history)", RuntimeWarning, stacklevel=3)

    def _check_collapse(self, trainer: Trainer, record: dict[str, float]) -> None:
        levels = [k for k in record if _LEVEL_KL.fullmatch(k)]
        for key in levels if len(levels) == 1 else [k for k in levels if k != "train_kl"]:
            value = record[key]
            self.collapsed[key] = self.collapsed.get(key, 0) + 1 if value < self.kl_floor else 0
            if self.collapsed[key] == self.patience and key not in self.warned:
                self.warned.add(key)
                level = "the latent" if key == "train_kl" else f"latent level {key.rsplit('_', 1)[1]} (top first)"
                warnings.warn(
                    f"{level} has collapsed: its KL has stayed under {self.kl_floor:g} nats per image for "
                    f"{self.patience} epochs (epoch {trainer.epoch}: {value:.3g}), so the decoder ignores it and "
                    "its samples are all alike; try free bits (ELBO(free_bits=0.05)), a KL warm-up "
                    "(beta=LinearWarmup(...)) or fewer levels", RuntimeWarning, stacklevel=3)

    def state_dict(self) -> dict[str, Any]:
        return {"worse_epochs": self.worse_epochs, "warned": sorted(self.warned), "collapsed": dict(self.collapsed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.worse_epochs = int(state["worse_epochs"])
        self.warned = set(state["warned"])
        self.collapsed = {str(k): int(v) for k, v in state.get("collapsed", {}).items()}


def _worse_than_input(record: dict[str, float]) -> bool:
    """Whether the epoch's repairs are worse than its corrupted inputs: by mean squared error where both are
    recorded, else by PSNR."""
    for key in ("val_mse", "val_psnr"):
        repaired, corrupted = record.get(key), record.get(f"{key}_input")
        if repaired is not None and corrupted is not None:
            return repaired > corrupted if key == "val_mse" else repaired < corrupted
    return False
