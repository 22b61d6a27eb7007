"""The objective contract: ``objective(model, x_input, x_target, condition=None) -> ObjectiveResult``."""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor

from vaerepair.models.latent import LatentModel

__all__ = ["ObjectiveResult", "Objective"]


class ObjectiveResult(NamedTuple):
    """What an objective returns.

    Attributes:
        loss: the scalar to minimise, the mean over the batch of the per-sample loss.
        terms: named per-sample terms, each ``(B,)``, before reduction (for
            logging; their batch means are what the Trainer records).
    """

    loss: Tensor
    terms: dict[str, Tensor]


@runtime_checkable
class Objective(Protocol):
    """A training objective.

    ``x_input`` is what the encoder sees (the corrupted image), ``x_target``
    what the likelihood scores (the clean image); both ``(B, C, H, W)``.

    An objective that differentiates inside its loss (score terms with
    ``torch.autograd.grad``) sets the attribute ``needs_grad = True``: the
    Trainer then keeps autograd on when it computes validation losses.
    Two more optional hooks: ``step()``, called after each optimizer step (a
    beta schedule's clock), and ``hparams() -> dict``, whose values the Trainer
    records in the history every epoch.
    """

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult: ...
