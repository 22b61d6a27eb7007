"""Optimisation callbacks: a learning-rate schedule stepped per step or per epoch, gradient clipping."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from vaerepair._checks import check_positive
from vaerepair.training.callbacks.base import Callback

if TYPE_CHECKING:
    from vaerepair.objectives import ObjectiveResult
    from vaerepair.training.sources import Batch
    from vaerepair.training.trainer import Trainer

__all__ = ["LRSchedule", "GradientClipping"]


class LRSchedule(Callback):
    """A ``torch.optim.lr_scheduler`` built on the Trainer's optimizer and stepped every optimizer step
    (``interval="step"``) or every epoch (``"epoch"``); its state is checkpointed.

    Example:
        >>> from torch.optim.lr_scheduler import OneCycleLR
        >>> schedule = LRSchedule(lambda opt: OneCycleLR(opt, max_lr=3e-3, total_steps=1000), interval="step")
    """

    def __init__(self, factory: Callable[[torch.optim.Optimizer], Any], interval: str = "epoch") -> None:
        if interval not in ("step", "epoch"):
            raise ValueError(f"interval must be 'step' or 'epoch', got {interval!r}")
        if not callable(factory):
            raise TypeError(f"factory must be a callable optimizer -> scheduler, got {factory!r}")
        self.factory, self.interval = factory, interval
        self.scheduler: Any = None
        self._pending: dict[str, Any] | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.scheduler is None:
            self.scheduler = self.factory(trainer.optimizer)
        if self._pending is not None:
            self.scheduler.load_state_dict(self._pending)
            self._pending = None

    def on_step_end(self, trainer: Trainer, batch: Batch, result: ObjectiveResult) -> None:
        if self.interval == "step" and trainer.step_taken:
            self.scheduler.step()

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if self.interval == "epoch":
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict() if self.scheduler is not None else (self._pending or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)
        else:  # the scheduler is built on the optimizer at fit start
            self._pending = state


class GradientClipping(Callback):
    """Clip the gradients' global norm (``torch.nn.utils.clip_grad_norm_``) or each value before every
    optimizer step. With fp16 the gradients are unscaled first.

    Args:
        max_norm: the largest total norm (``None``: no norm clipping).
        norm_type: the norm's order.
        max_value: clip each gradient value to ``[-max_value, max_value]`` (``None``: no value clipping).
    """

    def __init__(self, max_norm: float | None = 1.0, norm_type: float = 2.0, max_value: float | None = None) -> None:
        if max_norm is None and max_value is None:
            raise ValueError("give max_norm or max_value (or both)")
        self.max_norm = check_positive(max_norm, "max_norm") if max_norm is not None else None
        self.max_value = check_positive(max_value, "max_value") if max_value is not None else None
        self.norm_type = norm_type
        self.last_norm: torch.Tensor | None = None  # the norm before clipping, at the last step

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        trainer.precision.unscale(trainer.optimizer)
        if self.max_value is not None:
            torch.nn.utils.clip_grad_value_(trainer.trainable, self.max_value)
        if self.max_norm is not None:
            self.last_norm = torch.nn.utils.clip_grad_norm_(trainer.trainable, self.max_norm, self.norm_type)
