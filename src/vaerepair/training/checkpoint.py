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

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "model_from_checkpoint", "FORMAT"]

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
    if isinstance(map_location, str):
        try:
            torch.device(map_location)
        except RuntimeError as err:
            raise ValueError(f"map_location {map_location!r} is not a device torch knows (e.g. 'cpu', 'cuda', "
                             f"'cuda:0'): {err}") from err
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
    _check_schema(data, str(path))
    for field in ("model", "model_ema"):
        weights = data.get(field)
        bad = [k for k, v in (weights or {}).items() if isinstance(v, torch.Tensor) and v.is_floating_point()
               and not bool(torch.isfinite(v).all())]
        if bad:
            raise CheckpointError(f"{str(path)!r} holds non-finite (NaN or Inf) weights in {field}: "
                                  f"{', '.join(bad[:5])}; use an earlier checkpoint")
    return data


_TRAINER_FIELDS = {"epochs": int, "batch_size": int, "seed": int, "corruption": str, "global_step": int,
                   "target_epoch": int}
_TRAINING_STATE = ("optimizer", "trainer", "rng", "source", "history")


def _check_schema(data: dict[str, Any], path: str) -> None:
    """Check a checkpoint's fields against what :func:`save_checkpoint` and the Trainer write, naming the first
    field that does not fit (an edited or hand-made file), before anything deep reads it."""

    def fail(field: str, what: str) -> None:
        raise CheckpointError(f"{path!r} does not fit the checkpoint schema: {field} {what}; it was edited or made "
                              "by hand; use a checkpoint the Trainer wrote")

    def tensors(field: str, required: bool) -> None:
        value = data.get(field)
        if value is None:
            if required:
                fail(field, "is missing (the model's weights)")
            return
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in value.items()):
            fail(field, f"must be a dict of name -> tensor (a state_dict), got {type(value).__name__}")

    tensors("model", True)
    tensors("model_ema", False)
    for field in ("model_spec", "metadata", "history", "callbacks", "objective", "progress", "scaler"):
        if data.get(field) is not None and not isinstance(data[field], dict):
            fail(field, f"must be a dict, got {type(data[field]).__name__}")
    if data.get("history") is not None and not isinstance(data["history"].get("records", []), list):
        fail("history['records']", "must be a list of per-epoch dicts")
    if not any(field in data for field in ("trainer", "rng", "source")):
        return  # weights only
    for field in _TRAINING_STATE:
        if not isinstance(data.get(field), dict):
            fail(field, "is missing" if field not in data else f"must be a dict, got {type(data[field]).__name__}")
    for key, kind in _TRAINER_FIELDS.items():
        if not isinstance(data["trainer"].get(key), kind) or isinstance(data["trainer"].get(key), bool):
            fail(f"trainer[{key!r}]", f"must be {kind.__name__}, got {data['trainer'].get(key)!r}")
    cpu = data["rng"].get("cpu")
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8 or cpu.numel() != torch.get_rng_state().numel():
        fail("rng['cpu']", f"must be torch's CPU generator state (uint8, {torch.get_rng_state().numel()} bytes)")
    if not isinstance(data["rng"].get("generators", {}), dict):
        fail("rng['generators']", "must be a dict of generator states")
    if not isinstance(data["optimizer"].get("param_groups"), list) or not isinstance(data["optimizer"].get("state"),
                                                                                      dict):
        fail("optimizer", "must be an optimizer state_dict (state, param_groups)")


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
    return model_from_checkpoint(load_checkpoint(path, map_location), path, ema)


def model_from_checkpoint(data: dict[str, Any], path: str | os.PathLike[str],
                          ema: bool = True) -> LatentVariableModel:
    """The built-in model a loaded checkpoint ``data`` (from :func:`load_checkpoint`) describes, with its weights
    (the EMA ones with ``ema``, when it has them), in eval mode; ``path`` names it in errors."""
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
