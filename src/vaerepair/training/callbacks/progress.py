"""A tqdm progress bar per epoch, with the running training loss."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from vaerepair.training.callbacks.base import Callback

if TYPE_CHECKING:
    from vaerepair.objectives import ObjectiveResult
    from vaerepair.training.sources import Batch
    from vaerepair.training.trainer import Trainer

__all__ = ["ProgressBar"]


class ProgressBar(Callback):
    """One tqdm bar per epoch on the main process; the loss shown every ``refresh_every`` steps.

    Reading the loss costs a host synchronisation on a GPU, hence not every step.
    When stderr is not a terminal (a log file) the bar writes one line per epoch.
    """

    def __init__(self, refresh_every: int = 10) -> None:
        self.refresh_every = refresh_every
        self.bar: Any = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if not trainer.dist.is_main:
            return
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=trainer.source.steps_per_epoch(), initial=trainer.source.step, desc=f"epoch {epoch}",
                        leave=not tty, dynamic_ncols=True, mininterval=0.1 if tty else float("inf"))

    def on_step_end(self, trainer: Trainer, batch: Batch, result: ObjectiveResult) -> None:
        if self.bar is None:
            return
        step = trainer.source.step
        if step % self.refresh_every == 0 or step == self.bar.total:
            self.bar.set_postfix(loss=f"{trainer.meter.running_loss():.4g}", refresh=False)
        self.bar.update(1)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        self._close()

    def on_fit_end(self, trainer: Trainer) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
