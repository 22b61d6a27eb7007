"""The objective contract: ``objective(model, x_input, x_target, condition=None) -> ObjectiveResult``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable

import torch
from torch import Tensor

from vaerepair._checks import check_finite_images, check_images, shape_str
from vaerepair.distributions import validation_enabled
from vaerepair.models.latent import LatentModel

__all__ = ["ObjectiveResult", "Objective", "ObjectiveBase", "objective_hooks", "require_prior", "refuse_prior_repairs",
           "check_batch"]


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


def refuse_prior_repairs(model: Any, what: str) -> None:
    """Raise a clear error when ``model`` repairs from its prior (``posterior_sees_target``): ``what`` trains the
    posterior path of the corrupted image, which such a model's repairs never take."""
    if getattr(model, "posterior_sees_target", False):
        raise ValueError(f"{what} trains the repair of the posterior path of x_input, but this model's posterior "
                         "sees the clean target and its repairs draw from the prior given the condition "
                         "(a conditional ladder VAE): train it with ELBO or IWAE on (corrupted, clean) pairs")


def check_batch(model: Any, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None) -> None:
    """The objective boundary: raise a clear error unless ``x_input`` and ``x_target`` are one batch the model takes.

    Both must be float ``(B, C, H, W)`` tensors of one shape with ``B >= 1``, in the
    dtype of the model's weights (and the channels/size the model declares), and
    finite (one read of the pixels). Every built-in objective calls it first; call
    it at the top of your own. Inside ``vaerepair.distributions.validation(False)``
    it checks nothing: the Trainer's steps run there, on data it checked once per
    fit (every batch of a fit has the same structure).
    """
    if not validation_enabled():
        return
    if x_target is None:
        raise TypeError("x_target is None: pass the images the objective scores (the clean images; for a plain "
                        "autoencoder or a self-supervised objective, x_input itself)")
    check_images(x_input, "x_input")
    check_images(x_target, "x_target")
    if x_input.shape != x_target.shape:
        raise ValueError(f"x_input and x_target must have the same shape, got {shape_str(x_input.shape)} and "
                         f"{shape_str(x_target.shape)}: each target is the clean version of its input")
    if len(x_input) == 0:
        raise ValueError("x_input is an empty batch (0 images): an objective's loss is a mean over the batch; "
                         "pass at least one image")
    if x_target.dtype != x_input.dtype:
        raise TypeError(f"x_input is {x_input.dtype} but x_target is {x_target.dtype}: cast both to the model's "
                        "dtype")
    check_input = getattr(model, "check_input", None)
    if callable(check_input):
        check_input(x_input, "x_input")  # channels, size and dtype the model declares
    else:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), x_input.dtype) \
            if isinstance(model, torch.nn.Module) else x_input.dtype
        if x_input.dtype != dtype:
            raise TypeError(f"x_input is {x_input.dtype} but the model's weights are {dtype}: cast the images with "
                            f"x.to({dtype}), or train in half precision with Trainer(precision='bf16' or 'fp16')")
    if condition is not None and (not isinstance(condition, Tensor) or len(condition) != len(x_input)):
        got = shape_str(condition.shape) if isinstance(condition, Tensor) else type(condition).__name__
        raise ValueError(f"condition must be a tensor with one row per image ({len(x_input)}), got {got}")
    fix = "fix or drop those images (a damaged file? a corruption that made NaN?)"
    check_finite_images(x_input, "x_input", fix)
    if x_target is not x_input:
        check_finite_images(x_target, "x_target", fix)
