"""Checkpointing a training run and resuming it exactly.

:class:`Checkpointer` writes ``best.pt`` / ``last.pt`` into the checkpoint
folder: the weights, optimizer, precision (fp16 scaler), objective and
callback states, counters, history, the batch source's position and random
streams, and every process's global random state, so that a resumed run is
bit-identical on the CPU to one that was never interrupted. Files are plain
tensors and values (``torch.load(weights_only=True)``), written atomically by
rank 0 only, and only from verified weights: a checkpoint whose weights are
not finite is refused before anything is written.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vaerepair._checks import check_count
from vaerepair._io import remove_stale_temporaries
from vaerepair.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaerepair.training.guard import NonFiniteLossError
from vaerepair.training.history import History
from vaerepair.training.state import capture_rng, restore_rng, spec_differences, state_mismatch

if TYPE_CHECKING:
    from vaerepair.training.trainer import Trainer

__all__ = ["Checkpointer"]


class Checkpointer:
    """Writes and restores a Trainer's whole state.

    Args:
        directory: the checkpoint folder (``None``: nothing is written; resume still works).
        every: also write ``last.pt`` every N optimizer steps, mid-epoch (``None``: at epoch ends only).
    """

    def __init__(self, directory: str | os.PathLike[str] | None, every: int | None = None) -> None:
        if every is not None:
            every = check_count(every, "checkpoint_every", unit=" or None")
        self.directory = Path(directory) if directory is not None else None
        self.every = every
        self._cleaned = False

    def due(self, global_step: int) -> bool:
        """Whether a periodic ``last.pt`` is written once ``global_step`` optimizer steps are taken."""
        return self.directory is not None and self.every is not None and global_step % self.every == 0

    def path(self, name: str) -> str | None:
        return str(self.directory / name) if self.directory is not None else None

    def state(self, trainer: Trainer, mid_epoch: bool) -> dict[str, Any]:
        """Everything a checkpoint holds; ``mid_epoch`` adds where the epoch stopped (``progress``)."""
        progress = ({"epoch": trainer.epoch, "step": trainer.source.step, "meter": trainer.meter.state_dict()}
                    if mid_epoch else None)
        return {
            "model_spec": getattr(trainer.model, "spec", None),
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "objective": trainer.objective.state_dict(),
            "callbacks": trainer.callbacks.state_dict(),
            "epoch": len(trainer.history),
            "history": trainer.history.to_dict(),
            "trainer": {"epochs": trainer.epochs, "batch_size": trainer.batch_size, "seed": trainer.seed,
                        "corruption": repr(trainer.corruption), "global_step": trainer.global_step,
                        "target_epoch": trainer.target_epoch},
            "scaler": trainer.precision.state_dict(),
            "rng": capture_rng({}),
            "source": trainer.source.state_dict(),
            "rng_ranks": trainer.dist.gather_object(torch.get_rng_state()) if trainer.dist.enabled else None,
            "progress": progress,
            "metadata": trainer.metadata,
        }

    def save(self, trainer: Trainer, name: str, mid_epoch: bool = False) -> str | None:
        """Write ``name`` (every process takes part: the random states are gathered); returns its path."""
        if self.directory is None:
            return None
        params = [p.detach() for p in trainer.model.parameters() if p.is_floating_point()]
        if params and not bool(torch.isfinite(torch.stack([p.sum() for p in params]).sum())):
            raise NonFiniteLossError(
                f"refused to write {self.directory / name}: the weights are not finite (at step "
                f"{trainer.global_step}); the previous checkpoint is kept. Try a lower learning rate."
            )
        state = self.state(trainer, mid_epoch)
        trainer.callbacks.call("on_save_checkpoint", trainer, state)
        if trainer.dist.is_main:
            if not self._cleaned:
                remove_stale_temporaries(self.directory)
                self._cleaned = True
            save_checkpoint(self.directory / name, state)
        return str(self.directory / name)

    def restore(self, trainer: Trainer, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """Load everything :meth:`state` saved into ``trainer``; returns the mid-epoch progress (or ``None``)."""
        data = load_checkpoint(path, map_location=trainer.device)
        if "rng" not in data or "trainer" not in data or "source" not in data:
            raise CheckpointError(f"{str(path)!r} has no training state to resume from (only weights, or written by an "
                                  "earlier version of vaerepair); load its weights with "
                                  "vaerepair.load_model and start a new run")
        differences = spec_differences(data.get("model_spec"), getattr(trainer.model, "spec", None))
        why = state_mismatch(trainer.model, data["model"])
        if differences or why:
            raise CheckpointError(
                f"{str(path)!r} was written for a different model: {'; '.join(differences) or why}; "
                "build the model with the checkpoint's settings (vaerepair.load_model rebuilds a built-in one)"
            )
        saved = data["trainer"]
        if saved.get("batch_size") != trainer.batch_size or saved.get("seed") != trainer.seed:
            raise CheckpointError(
                f"{str(path)!r} was written with batch_size={saved.get('batch_size')}, seed={saved.get('seed')}; "
                f"this Trainer has batch_size={trainer.batch_size}, seed={trainer.seed}: an exact resume needs "
                "the same"
            )
        if saved.get("corruption") != repr(trainer.corruption):
            raise CheckpointError(
                f"{str(path)!r} was written with the corruption {saved.get('corruption')}; this Trainer has "
                f"{trainer.corruption!r}: resume with the same corruption, or start a new run")
        trainer.model.load_state_dict(data["model"])
        try:
            trainer.optimizer.load_state_dict(data["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"the optimizer state in {str(path)!r} does not fit this optimizer: {err}") from err
        trainer.precision.load_state_dict(data.get("scaler"))
        if data.get("objective"):
            trainer.objective.load_state_dict(data["objective"])
        trainer.callbacks.load_state_dict(data.get("callbacks") or {})
        trainer.history = History.from_dict(data["history"])
        trainer.global_step = int(saved["global_step"])
        trainer.target_epoch = int(saved["target_epoch"])
        if int(saved["epochs"]) != trainer.epochs:  # the run was started with another budget: apply the new one
            trainer.target_epoch += trainer.epochs - int(saved["epochs"])
            warnings.warn(f"resuming {str(path)!r} with epochs={trainer.epochs} (the run was started with "
                          f"epochs={saved['epochs']}): it now ends at epoch {trainer.target_epoch}", stacklevel=3)
        restore_rng(data["rng"], {})
        trainer.source.load_state_dict(data["source"])
        ranks = data.get("rng_ranks")
        if trainer.dist.enabled and ranks is not None and len(ranks) == trainer.dist.world_size:
            torch.set_rng_state(ranks[trainer.dist.rank].cpu())  # each process's own latent-noise stream
        progress: dict[str, Any] | None = data.get("progress")
        if progress is not None:
            trainer.meter.load_state_dict(progress["meter"])
        return progress
