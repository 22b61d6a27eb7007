r"""An exponential moving average of the weights, used for validation and saved in checkpoints.

After every optimizer step, :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta` with
decay :math:`d` (warmed up as :math:`\min(d, (1 + n) / (10 + n))` after
:math:`n` updates, so early averages are not dominated by the initialisation).
Validation runs with :math:`\bar\theta` swapped in; checkpoints hold the live
weights under ``model`` (for exact resume) and the average under
``model_ema``, which :func:`vaerepair.load_model` loads by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vaerepair.training.callbacks.base import Callback

if TYPE_CHECKING:
    from vaerepair.objectives import ObjectiveResult
    from vaerepair.training.sources import Batch
    from vaerepair.training.trainer import Trainer

__all__ = ["EMA"]


class EMA(Callback):
    """An exponential moving average of the model's floating-point parameters.

    Args:
        decay: the per-step decay :math:`d \\in (0, 1)`.
        warmup: use :math:`\\min(d, (1 + n) / (10 + n))` (``False``: always ``decay``).
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True) -> None:
        if not (isinstance(decay, (int, float)) and 0.0 < decay < 1.0):
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay, self.warmup = float(decay), warmup
        self.updates = 0
        self.shadow: list[Tensor] | None = None
        self._params: list[nn.Parameter] = []
        self._names: list[str] = []
        self._pending: list[Tensor] | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        named = [(n, p) for n, p in trainer.model.named_parameters() if p.is_floating_point()]
        self._names, self._params = [n for n, _ in named], [p for _, p in named]
        if self._pending is not None:
            self.shadow = [s.to(p.device, p.dtype) for s, p in zip(self._pending, self._params, strict=True)]
            self._pending = None
        elif self.shadow is None:
            self.shadow = [p.detach().clone() for p in self._params]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay

    def on_step_end(self, trainer: Trainer, batch: Batch, result: ObjectiveResult) -> None:
        if not trainer.step_taken or self.shadow is None:
            return
        with torch.no_grad():
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self._params], 1.0 - self.current_decay())
        self.updates += 1

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the live ones come back after."""
        assert self.shadow is not None, "the EMA has not started (it starts at fit)"
        with torch.no_grad():
            live = [p.detach().clone() for p in self._params]
            for p, s in zip(self._params, self.shadow, strict=True):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self._params, live, strict=True):
                    p.copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (the trained one, or a copy of it)."""
        assert self.shadow is not None, "the EMA has not started (it starts at fit)"
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, s in zip(self._names, self.shadow, strict=True):
                params[name].copy_(s)

    def on_validation_start(self, trainer: Trainer) -> None:
        self._swap = self.swapped()
        self._swap.__enter__()

    def on_validation_end(self, trainer: Trainer) -> None:
        self._swap.__exit__(None, None, None)

    def on_save_checkpoint(self, trainer: Trainer, state: dict[str, Any]) -> None:
        if self.shadow is not None:
            averaged = dict(state["model"])
            averaged.update({n: s.detach().clone() for n, s in zip(self._names, self.shadow, strict=True)})
            state["model_ema"] = averaged

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "shadow": self.shadow if self.shadow is not None else self._pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.shadow, self._pending = None, state["shadow"]
