"""Training: the Trainer, its history and checkpoints."""

from vaerepair.training.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from vaerepair.training.history import History
from vaerepair.training.trainer import EarlyStopping, NonFiniteLossError, Trainer, TrainingInterrupted

__all__ = [
    "Trainer",
    "EarlyStopping",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "History",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
]
