"""The callbacks the Trainer's keyword shortcuts stand for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from vaerepair.training.callbacks.base import Callback, CallbackList
from vaerepair.training.callbacks.health import TrainingHealth
from vaerepair.training.callbacks.monitor import BestCheckpoint, EarlyStopping
from vaerepair.training.callbacks.optim import LRSchedule
from vaerepair.training.callbacks.progress import ProgressBar

__all__ = ["builtin_callbacks"]


def builtin_callbacks(progress: bool, scheduler: Callable[[torch.optim.Optimizer], Any] | None,
                      early_stopping: EarlyStopping | None, monitor: str | None, monitor_mode: str | None,
                      user: Sequence[Callback]) -> CallbackList:
    """``progress`` -> :class:`ProgressBar`; ``scheduler`` -> a per-epoch :class:`LRSchedule`;
    ``early_stopping``; a :class:`BestCheckpoint` on ``monitor`` (default: the early stopping's metric and
    direction, else ``val_loss``/``train_loss``) unless ``user`` has one; a :class:`TrainingHealth` unless
    ``user`` has one; then the ``user`` callbacks."""
    builtin: list[Callback] = [ProgressBar()] if progress else []
    if not any(isinstance(cb, TrainingHealth) for cb in user):
        builtin.append(TrainingHealth())
    builtin += [LRSchedule(scheduler, "epoch")] if scheduler is not None else []
    builtin += [early_stopping] if early_stopping is not None else []
    if not any(isinstance(cb, BestCheckpoint) for cb in user):
        if monitor is None and early_stopping is not None:
            monitor, monitor_mode = early_stopping.monitor, early_stopping.mode
        builtin.append(BestCheckpoint(monitor, monitor_mode))
    return CallbackList(builtin + list(user))
