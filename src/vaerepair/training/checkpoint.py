"""Checkpoints: plain values and tensors only, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from vaerepair._io import atomic_open, write_failure
from vaerepair.models import LatentVariableModel, build

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "FORMAT"]

FORMAT = "vaerepair-checkpoint"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit; the message says why."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed to disk,
    then renamed over ``path``: a crash mid-write leaves the previous file whole.
    """
    from vaerepair import __version__

    try:
        with atomic_open(path, "wb") as f:
            torch.save({"format": FORMAT, "version": __version__, **state}, f)
    except (OSError, RuntimeError) as err:  # a full disk comes from torch as RuntimeError("... file write failed")
        raise CheckpointError(f"could not write checkpoint: {write_failure(err, path)}") from err
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``torch.load(weights_only=True)``).

    Raises:
        CheckpointError: the file is missing, truncated, not a vaerepair
            checkpoint, or carries pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    _verify_crcs(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {str(path)!r}: it holds objects other than tensors and plain values "
            f"(possibly code), which weights_only loading does not run ({err.__class__.__name__})"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupted: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a vaerepair checkpoint (no format={FORMAT!r} field)")
    for field in ("model", "model_ema"):
        weights = data.get(field)
        bad = [k for k, v in (weights or {}).items() if isinstance(v, torch.Tensor) and v.is_floating_point()
               and not bool(torch.isfinite(v).all())]
        if bad:
            raise CheckpointError(f"{str(path)!r} holds non-finite (NaN or Inf) weights in {field}: "
                                  f"{', '.join(bad[:5])}; use an earlier checkpoint")
    return data


def _verify_crcs(path: Path) -> None:
    """Check every member of the checkpoint's zip container against its stored CRC-32 (a damaged file,
    even by a single bit, is refused instead of loading changed weights)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupted (not a readable zip "
                              f"container: {err}); delete it or restore a copy") from err
    except (OSError, EOFError, ValueError, RuntimeError) as err:  # damaged headers, sizes beyond the file
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupted ({err}); delete it or restore "
                              "a copy") from err
    if bad is not None:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: {bad!r} does not match its CRC-32 (a damaged "
                              "file); delete it or restore a copy")


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
               ema: bool = True) -> LatentVariableModel:
    """Rebuild a built-in model from a checkpoint's spec and load its weights (eval mode).

    With ``ema`` (the default) a checkpoint written with an
    :class:`~vaerepair.training.callbacks.EMA` callback gives its averaged
    weights (``model_ema``, the ones validation measured); ``ema=False`` gives
    the live training weights (``model``).
    """
    data = load_checkpoint(path, map_location)
    spec = data.get("model_spec")
    if spec is None:
        raise CheckpointError(
            f"{str(path)!r} holds no model spec (the model was not built with vaerepair.models.build); "
            "build the same model yourself and call model.load_state_dict(load_checkpoint(path)['model'])"
        )
    model = build(spec)
    try:
        model.load_state_dict(data["model_ema"] if ema and data.get("model_ema") is not None else data["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {str(path)!r} do not fit its model spec: {err}") from err
    return model.eval()
