"""What exact resume needs beyond weights: random-number states, and clear messages when a checkpoint
does not fit the model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["capture_rng", "restore_rng", "state_mismatch", "spec_differences"]


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """The global torch RNG states (CPU, and every CUDA device when CUDA is initialised) and those of ``generators``."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state(),
                             "generators": {k: g.get_state() for k, g in generators.items()}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Put back what :func:`capture_rng` captured."""
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for name, g in generators.items():
        g.set_state(state["generators"][name].cpu())


def spec_differences(saved: dict[str, Any] | None, current: dict[str, Any] | None) -> list[str]:
    """``name: saved -> current`` for every model-spec field that differs (empty when either is unknown)."""
    if not saved or not current:
        return []
    saved, current = _as_written_now(saved), _as_written_now(current)
    keys = sorted(set(saved) | set(current))
    return [f"{k}={saved.get(k)!r} in the checkpoint, {current.get(k)!r} in this model" for k in keys
            if _plain(saved.get(k)) != _plain(current.get(k))]


def _as_written_now(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec dict as its spec class writes it today (an old checkpoint's renamed fields under their new names);
    as it is when it is not a built-in spec."""
    from vaerepair.models.factory import SPECS, ModelSpec

    try:
        return dict(SPECS.get(str(spec.get("kind")), ModelSpec).from_dict(spec).to_dict())  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return spec


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, (tuple, list)) else v


def state_mismatch(module: nn.Module, state: dict[str, Any], limit: int = 5) -> str | None:
    """Why ``state`` does not load into ``module`` (missing / unexpected keys, shape differences), or ``None``."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} in the checkpoint vs {tuple(v.shape)} here" for k, v in own.items()
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    for label, items in (("shape mismatches", shapes), ("missing from the checkpoint", missing),
                         ("not in this model", unexpected)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{label}: {'; '.join(items[:limit])}{more}")
    return ". ".join(parts) or None
