"""The objective contract: ``objective(model, x_input, x_target, condition=None) -> ObjectiveResult``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable

from torch import Tensor

from vaerepair.models.latent import LatentModel

__all__ = ["ObjectiveResult", "Objective", "ObjectiveBase", "objective_hooks", "require_prior"]


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
    """A training objective: ``objective(model, x_input, x_target, condition=None) -> ObjectiveResult``.

    ``x_input`` is what the encoder sees (the corrupted image), ``x_target``
    what the likelihood scores (the clean image); both ``(B, C, H, W)``.

    Only ``__call__`` is required. The other members are optional hooks the
    Trainer uses when present (:class:`ObjectiveBase` gives them defaults, and
    :func:`objective_hooks` fills them in for any callable):

    - ``needs_grad``: the objective differentiates inside its loss (score terms
      with ``torch.autograd.grad``), so autograd stays on when the Trainer
      computes validation losses, and ``backward`` is taken with respect to the
      trainable parameters only.
    - ``step()``: called after each optimizer step (a beta schedule's clock).
    - ``hparams() -> dict[str, float]``: values recorded in the history every epoch.
    - ``state_dict()`` / ``load_state_dict(state)``: state that must survive a
      resume (plain values and tensors), stored in every checkpoint.
    """

    needs_grad: bool

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult: ...

    def step(self) -> None:
        """Advance the objective's clock by one optimizer step."""

    def hparams(self) -> dict[str, float]:
        """The objective's current hyperparameters, for the history."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores of the objective."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class ObjectiveBase:
    """Defaults for the optional hooks of :class:`Objective`: no inner derivatives, no clock, no state."""

    needs_grad: bool = False

    def step(self) -> None:
        """Nothing to advance."""

    def hparams(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


class _Hooked(ObjectiveBase):
    """A callable without the optional hooks, seen through :class:`ObjectiveBase`'s defaults."""

    def __init__(self, fn: Callable[..., ObjectiveResult]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> ObjectiveResult:
        return self.fn(*args)

    def __repr__(self) -> str:
        return repr(self.fn)


_HOOKS = ("needs_grad", "step", "hparams", "state_dict", "load_state_dict")


def objective_hooks(objective: Callable[..., ObjectiveResult]) -> Objective:
    """``objective`` with every optional hook of :class:`Objective`: itself when it has them all, else a
    view whose missing hooks are :class:`ObjectiveBase`'s defaults (the ones it has are its own)."""
    if not callable(objective):
        raise TypeError(f"objective must be callable as objective(model, x_input, x_target), got {objective!r}")
    if all(hasattr(objective, name) for name in _HOOKS):
        return cast(Objective, objective)
    view = _Hooked(objective)
    for name in _HOOKS:
        if hasattr(objective, name):
            setattr(view, name, getattr(objective, name))
    return cast(Objective, view)


def require_prior(model: Any, what: str) -> None:
    """Raise a clear error when ``model`` has no prior (a plain autoencoder): ``what`` needs one."""
    if getattr(model, "prior", None) is None:
        raise ValueError(f"{what} needs a model with a prior (model.prior is None, a plain autoencoder); "
                         "build a VAE (vaerepair.variational_autoencoder, noise_model_vae or ladder_vae)")
