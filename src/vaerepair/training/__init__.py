"""Training: the Trainer and its pieces (batch sources, validation, NaN guard, precision, checkpoints,
distributed), callbacks, the history."""

from vaerepair.training.callbacks import (
    EMA,
    METRIC_MODES,
    BestCheckpoint,
    Callback,
    CSVLogger,
    EarlyStopping,
    GradientClipping,
    ImageGrid,
    LRSchedule,
    ProgressBar,
    TensorBoardLogger,
    monitor_mode,
)
from vaerepair.training.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from vaerepair.training.guard import NonFiniteLossError, TrainingInterrupted
from vaerepair.training.history import History
from vaerepair.training.loader import LoaderSource
from vaerepair.training.patches import PatchSource
from vaerepair.training.sources import Batch, BatchSource, TensorSource
from vaerepair.training.trainer import Trainer, default_optimizer

__all__ = [
    "Trainer",
    "default_optimizer",
    "Callback",
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
    "Batch",
    "BatchSource",
    "TensorSource",
    "PatchSource",
    "LoaderSource",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "History",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
]
