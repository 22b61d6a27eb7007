"""The Trainer's arguments: a model it can train and validate, its default optimizer or one over that model, plain
metadata, a seed torch takes."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["check_model", "build_optimizer", "check_optimizer", "check_metadata", "check_seed", "default_optimizer"]


def default_optimizer(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """``Adam(params, lr)``, with torch's fused kernel where it has one for the parameters' device and dtype.

    The fused kernel updates every parameter in one pass instead of about ten tensor operations per
    parameter: the same update up to float rounding, 20 % off a whole step of the reports' 784-400-20
    VAE on 2 CPU threads (the optimizer's share is largest for small models and many small tensors).
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr)


def check_model(model: object) -> nn.Module:
    """Refuse a model the Trainer cannot train and validate, naming what it lacks.

    Training needs the latent path (``encode``/``decode``, or ``bottom_up``/``top_down``), validation
    ``reconstruct``: a plain ``nn.Module`` autoencoder would train an epoch, then fail in validation.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = all(callable(getattr(model, m, None)) for m in ("bottom_up", "top_down")) or all(
        callable(getattr(model, m, None)) for m in ("encode", "decode"))
    missing = [m for m in ("reconstruct",) if not callable(getattr(model, m, None))]
    if not path:
        missing = ["encode(x) and decode(z) (or bottom_up and top_down)", *missing]
    if missing:
        raise TypeError(
            f"model {type(model).__name__} is not a vaerepair model: it has no {', no '.join(missing)}; compose your "
            "encoder and decoder with vaerepair.models.LatentVariableModel (a point-mass posterior makes a plain "
            "autoencoder), or subclass vaerepair.PathModel")
    return model


def build_optimizer(optimizer: Any, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The Trainer's optimizer: :func:`default_optimizer` (``None``), the one given, or what a factory
    ``params -> optimizer`` builds over ``model``'s parameters; refused unless it steps ``model``'s parameters."""
    if optimizer is None:
        return default_optimizer(model.parameters(), lr)
    if not isinstance(optimizer, torch.optim.Optimizer) and not callable(optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, a factory params -> optimizer, or None; got "
                        f"{type(optimizer).__name__}")
    built = optimizer if isinstance(optimizer, torch.optim.Optimizer) else optimizer(model.parameters())
    check_optimizer(built, model)
    return built


def check_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Refuse an optimizer over parameters that are not ``model``'s (it would step another model's weights and
    leave this one unchanged, without a word)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or a factory params -> optimizer, got "
                        f"{type(optimizer).__name__}")
    own = {id(p) for p in model.parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    foreign = sum(id(p) not in own for p in params)
    if foreign:
        raise ValueError(f"the optimizer holds {foreign} of {len(params)} parameter tensors that are not the model's "
                         "(built over another model, or a copy?); build it over this model: "
                         "optimizer=lambda params: torch.optim.Adam(params, lr=1e-3), or Adam(model.parameters())")


_PLAIN = (str, bool, int, float, type(None))


def check_metadata(metadata: object, where: str = "metadata") -> dict[str, Any]:
    """``metadata`` as a dict of plain values (strings, numbers, bools, None, lists/tuples/dicts of them), which a
    ``weights_only`` checkpoint can hold; anything else is refused with its key."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"{where} must be a dict of plain values, got {type(metadata).__name__}")
    _check_plain(metadata, where)
    return dict(metadata)


def _check_plain(value: object, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} keys must be strings, got {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(f"{where} is {type(value).__name__} ({value!r}); checkpoints hold plain values only "
                        "(str, int, float, bool, None, and lists and dicts of them): store its name or str()")


def check_seed(seed: object) -> int:
    """A seed torch accepts: an integer in ``[0, 2**63)``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)
