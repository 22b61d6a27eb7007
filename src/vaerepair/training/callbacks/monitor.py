"""Monitoring a metric: its direction, the best checkpoint, early stopping.

The direction of every built-in metric is declared once, in
:data:`METRIC_MODES` (by the name after its ``train_``/``val_`` prefix). A
metric not in the table needs an explicit ``mode="min"|"max"``: a direction
is never guessed from a name.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from vaerepair._checks import check_count
from vaerepair.training.callbacks.base import Callback

if TYPE_CHECKING:
    from vaerepair.training.trainer import Trainer

__all__ = ["METRIC_MODES", "monitor_mode", "BestCheckpoint", "EarlyStopping"]

#: Whether each built-in metric is better low ("min") or high ("max").
METRIC_MODES: dict[str, str] = {
    "loss": "min",  # every objective's loss is minimised
    "recon": "min",  # -log p(x | z)
    "kl": "min",
    "elbo": "max",  # the evidence lower bound (the loss is its negative)
    "nll": "min",  # IWAE's -log-bound
    "neg_elbo": "min",
    "nll_iwae": "min",
    "fisher_z": "min",
    "score_qx": "min",
    "score_px": "min",
    "laplacian": "min",
    "psnr": "max",
    "ssim": "max",
    "psnr_missing": "max",
    "psnr_input": "max",
    "ssim_input": "max",
    "psnr_missing_input": "max",
    "skipped_steps": "min",
}


def monitor_mode(monitor: str, mode: str | None = None) -> str:
    """The direction of ``monitor``: ``mode`` when given, else the table's entry for its base name."""
    if mode is not None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        return mode
    base = monitor.removeprefix("val_").removeprefix("train_")
    if base not in METRIC_MODES:
        raise ValueError(
            f"the direction of the metric {monitor!r} is unknown (it is not a built-in metric): "
            "give mode='min' if lower is better or mode='max' if higher is better"
        )
    return METRIC_MODES[base]


class _Monitor(Callback):
    """The best value of one metric so far."""

    def __init__(self, monitor: str, mode: str | None, min_delta: float) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a metric name such as 'val_loss', got {monitor!r}")
        if not (isinstance(min_delta, (int, float)) and min_delta >= 0 and math.isfinite(min_delta)):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.monitor, self.mode, self.min_delta = monitor, monitor_mode(monitor, mode), float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None

    def improved(self, value: float, best: float | None = None) -> bool:
        """Whether ``value`` beats ``best`` (default: the best so far) by more than ``min_delta``."""
        best = self.best if best is None else best
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta

    def _value(self, record: dict[str, float]) -> float:
        if self.monitor not in record:
            raise KeyError(f"monitor {self.monitor!r} is not a recorded metric; known: {', '.join(record)}")
        return record[self.monitor]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class BestCheckpoint(_Monitor):
    """Write ``best.pt`` (when the Trainer has a ``checkpoint_dir``) at every epoch that improves ``monitor``,
    and keep ``trainer.history.best_epoch``.

    Args:
        monitor: a history key (``"val_loss"``, ``"val_psnr"``, ...); ``None``: ``val_loss`` when
            ``fit`` has validation data, else ``train_loss``.
        mode: ``"min"`` or ``"max"``; required for metrics outside :data:`METRIC_MODES`.
        filename: the checkpoint's name in the checkpoint folder.
    """

    def __init__(self, monitor: str | None = "val_loss", mode: str | None = None, filename: str = "best.pt",
                 min_delta: float = 0.0) -> None:
        self.auto = monitor is None  # val_loss when fit has validation data, else train_loss (both "min")
        super().__init__(monitor or "val_loss", mode, min_delta)
        self.filename = filename

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.auto:
            self.monitor = "val_loss" if trainer.val_fixed is not None else "train_loss"

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        value = self._value(record)
        if self.improved(value):
            self.best, self.best_epoch = value, int(record["epoch"])
            trainer.history.best_epoch = self.best_epoch
            trainer.checkpointer.save(trainer, self.filename)


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: a history key (``"val_loss"``, ``"val_psnr"``, ...).
        patience: epochs without improvement before the stop.
        mode: ``"min"`` or ``"max"``; required for metrics outside :data:`METRIC_MODES`.
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, mode: str | None = None,
                 min_delta: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta)
        patience = check_count(patience, "patience")
        self.patience = patience
        self.wait = 0  # epochs since the last improvement

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        value = self._value(record)
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, int(record["epoch"]), 0
        else:
            self.wait += 1
        if self.wait >= self.patience:
            trainer.history.stopped_early = True
            trainer.stop_training = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait = int(state["wait"])

    def __repr__(self) -> str:
        return f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, mode={self.mode!r})"
