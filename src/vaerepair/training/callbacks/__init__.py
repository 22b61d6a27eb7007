"""Callbacks: hooks into ``Trainer.fit`` for logging, checkpoint selection, schedules and weight averaging.

Pass them as ``Trainer(..., callbacks=[...])``; see :class:`Callback` for the
hooks and their order.
"""

from vaerepair.training.callbacks.base import Callback, CallbackList
from vaerepair.training.callbacks.ema import EMA
from vaerepair.training.callbacks.health import TrainingHealth
from vaerepair.training.callbacks.images import ImageGrid
from vaerepair.training.callbacks.loggers import CSVLogger, TensorBoardLogger
from vaerepair.training.callbacks.monitor import METRIC_MODES, BestCheckpoint, EarlyStopping, monitor_mode
from vaerepair.training.callbacks.optim import GradientClipping, LRSchedule
from vaerepair.training.callbacks.progress import ProgressBar

__all__ = [
    "Callback",
    "CallbackList",
    "BestCheckpoint",
    "EarlyStopping",
    "METRIC_MODES",
    "monitor_mode",
    "ProgressBar",
    "CSVLogger",
    "TensorBoardLogger",
    "ImageGrid",
    "LRSchedule",
    "GradientClipping",
    "EMA",
    "TrainingHealth",
]
