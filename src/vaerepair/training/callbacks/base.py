"""The callback interface: hooks the Trainer calls at fixed points of ``fit``.

Order within an epoch::

    on_fit_start
    on_epoch_start(epoch)
        requires_check?  -> forward, backward, NaN guard -> on_before_optimizer_step -> step -> on_step_end
        ...
        on_validation_start -> validation -> on_validation_end
    on_epoch_end(record)          # the record is already in trainer.history
    ...
    on_fit_end

A callback whose state must survive a resume returns it from ``state_dict``
(plain values and tensors) and takes it back in ``load_state_dict``; the
Trainer stores it in every checkpoint under the callback's ``state_key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaerepair.objectives import ObjectiveResult
    from vaerepair.training.sources import Batch
    from vaerepair.training.trainer import Trainer

__all__ = ["Callback", "CallbackList"]


class Callback:
    """Base class of Trainer callbacks; every hook does nothing by default.

    ``trainer.step_taken`` tells ``on_step_end`` whether the optimizer stepped
    (``False`` for a step the NaN guard skipped).
    """

    @property
    def state_key(self) -> str:
        """The name this callback's state is stored under in checkpoints (its class name by default)."""
        return type(self).__name__

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch of ``fit`` (after a resume has restored the state)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first step of ``epoch`` (1-based; also when an epoch resumes mid-way)."""

    def requires_check(self, trainer: Trainer) -> bool:
        """Before a step: whether it must be verified by the NaN guard (a callback that reads the weights
        after it, to save them, says so here)."""
        return False

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        """After ``backward`` and the NaN guard, before the optimizer step (gradient clipping)."""

    def on_step_end(self, trainer: Trainer, batch: Batch, result: ObjectiveResult) -> None:
        """After every training step."""

    def on_validation_start(self, trainer: Trainer) -> None:
        """Before the epoch's validation (an EMA swaps its weights in here)."""

    def on_validation_end(self, trainer: Trainer) -> None:
        """After the epoch's validation (called in the reverse order of the callbacks)."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        """After an epoch's record (train and validation metrics) was appended to ``trainer.history``.

        A callback may add keys to ``record``; ``last.pt`` is written after every callback ran.
        """

    def on_save_checkpoint(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """Add fields to a checkpoint being written (``state`` is what ``torch.save`` gets)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last epoch (or an early stop); not after an exception."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class CallbackList:
    """Callbacks called in order. Per-step hooks go only to the callbacks that override them."""

    def __init__(self, callbacks: list[Callback]) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be vaerepair.Callback instances, got {cb!r}")
        keys = [cb.state_key for cb in callbacks]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"two callbacks share the state key {duplicates[0]!r}: give one a distinct state_key")
        self.callbacks = list(callbacks)
        self._per_step = [cb for cb in callbacks if _overrides(cb, "on_step_end")]
        self._before_step = [cb for cb in callbacks if _overrides(cb, "on_before_optimizer_step")]
        self._checking = [cb for cb in callbacks if _overrides(cb, "requires_check")]

    def __iter__(self) -> Any:
        return iter(self.callbacks)

    def requires_check(self, trainer: Trainer) -> bool:
        return bool(self._checking) and any(cb.requires_check(trainer) for cb in self._checking)

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        for cb in self._before_step:
            cb.on_before_optimizer_step(trainer)

    def on_step_end(self, trainer: Trainer, batch: Batch, result: ObjectiveResult) -> None:
        for cb in self._per_step:
            cb.on_step_end(trainer, batch, result)

    def call(self, hook: str, trainer: Trainer, *args: Any) -> None:
        """Call ``hook`` on every callback (the once-per-epoch hooks); ``on_validation_end`` in reverse
        order, so that validation hooks nest like ``with`` blocks (an EMA listed before an ImageGrid has
        its averaged weights in place for the grid, and takes them out after it)."""
        order = reversed(self.callbacks) if hook == "on_validation_end" else iter(self.callbacks)
        for cb in order:
            getattr(cb, hook)(trainer, *args)

    def state_dict(self) -> dict[str, Any]:
        return {cb.state_key: cb.state_dict() for cb in self.callbacks}

    def load_state_dict(self, states: dict[str, Any]) -> None:
        for cb in self.callbacks:
            if cb.state_key in states:
                cb.load_state_dict(states[cb.state_key])


def _overrides(cb: Callback, name: str) -> bool:
    return getattr(type(cb), name) is not getattr(Callback, name)
