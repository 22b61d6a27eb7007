"""Pretrained models shipped inside the package: they work offline, right after ``pip install``.

Each is a weights-only vaerepair checkpoint in ``vaerepair/weights/`` written
by ``scripts/train_pretrained.py`` (the script in the repository that trained
it): a fully convolutional Gaussian denoiser (``arch="unet"``) whose
``repair`` takes images ``(B, C, H, W)`` of any size in [0, 1]. The blind ones
(``grey``, ``colour``) take nothing else; a non-blind one (``grey-sigma``) takes
the noise level of each image as its condition (:class:`~vaerepair.models.NoiseLevel`):
``repair(x, model.condition.levels(x, 25 / 255))``, or ``model.condition.levels(x)`` to
estimate it.

Example:
    >>> import vaerepair as vr
    >>> " ".join(m.name for m in vr.pretrained())
    'colour grey grey-sigma'
    >>> model = vr.pretrained("grey")
    >>> model.repair(torch.rand(1, 1, 37, 53)).shape
    torch.Size([1, 1, 37, 53])
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, NamedTuple, overload

import torch

from vaerepair.models import LatentVariableModel

__all__ = ["pretrained", "PretrainedModel", "WEIGHTS_DIR", "check_noise_range"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class PretrainedModel(NamedTuple):
    """What :func:`pretrained` lists about one shipped model."""

    name: str
    channels: int
    trained_on: str
    sigma_range: tuple[float, float]  # the noise standard deviations it was trained on, in [0, 1] units
    path: Path
    takes_sigma: bool = False  # non-blind: the noise level of each image is its condition (NoiseLevel)

    def describe(self) -> str:
        lo, hi = (round(s * 255) for s in self.sigma_range)
        kind = "grey" if self.channels == 1 else "colour"
        how = "non-blind (told sigma, or estimating it)" if self.takes_sigma else "blind"
        return (f"{self.name}: {how} Gaussian denoiser for {kind} photos of any size, sigma {lo}-{hi}/255, "
                f"trained on {self.trained_on}")


def _available() -> dict[str, Path]:
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.pt"), key=lambda p: p.stem)}


def _info(name: str, path: Path, data: dict[str, Any]) -> PretrainedModel:
    meta, spec = data.get("pretrained") or {}, data["model_spec"]
    lo, hi = meta.get("sigma_range", (0.0, 0.0))
    return PretrainedModel(name, int(spec["image_shape"][0]), str(meta.get("trained_on", "?")),
                           (float(lo), float(hi)), path, spec.get("condition") == "noise_level")


@overload
def pretrained(name: None = None, device: str | torch.device = "cpu") -> list[PretrainedModel]: ...


@overload
def pretrained(name: str, device: str | torch.device = "cpu") -> LatentVariableModel: ...


def pretrained(name: str | None = None, device: str | torch.device = "cpu") -> list[PretrainedModel] | \
        LatentVariableModel:
    """The shipped models (``name=None``: the list of them), or the model ``name`` in eval mode on ``device``.

    The model carries its description as ``model.pretrained_info``
    (a :class:`PretrainedModel`), including the noise range it was trained on.
    """
    from vaerepair.training.checkpoint import load_checkpoint, model_from_checkpoint

    found = _available()
    if name is None:
        return [_info(n, p, load_checkpoint(p)) for n, p in found.items()]
    if name not in found:
        known = ", ".join(found) or "none (the package was installed without its weights)"
        raise ValueError(f"no pretrained model {name!r}; shipped: {known}")
    data = load_checkpoint(found[name], map_location=device)  # read and verified once
    model = model_from_checkpoint(data, found[name])  # as load_model: the EMA weights where there are
    model.pretrained_info = _info(name, found[name], data)  # type: ignore[assignment]
    return model.to(device).eval()


def check_noise_range(model: Any, sigmas: tuple[float, float] | None) -> None:
    """Warn when the noise levels ``sigmas`` (low, high; [0, 1] units) leave the range a pretrained model learnt."""
    info = getattr(model, "pretrained_info", None)
    if info is None or sigmas is None:
        return
    lo, hi = info.sigma_range
    tol = 0.5 / 255
    if sigmas[0] < lo - tol or sigmas[1] > hi + tol or not all(math.isfinite(s) for s in sigmas):
        warnings.warn(
            f"the pretrained model {info.name!r} was trained on Gaussian noise with sigma in "
            f"[{lo * 255:.0f}, {hi * 255:.0f}]/255; sigma {sigmas[0] * 255:.4g}-{sigmas[1] * 255:.4g}/255 is outside "
            "it, so expect worse repairs (train a model on your noise level)", UserWarning, stacklevel=3)
