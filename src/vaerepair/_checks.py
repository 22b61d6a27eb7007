"""Argument and input checks shared by the package.

Every check raises ``ValueError``/``TypeError`` that names the argument, the
constraint, the value received and, where there is one, the fix.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "check_images",
    "check_finite_images",
    "check_image_scale",
    "finite_range",
    "check_probability",
    "check_positive",
    "check_count",
    "check_in_unit_interval",
    "shape_str",
]


def shape_str(shape: Sequence[int]) -> str:
    """Format a shape as ``(B, C, H, W)``-style text: ``(128, 1, 28, 28)``."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def check_images(
    x: object,
    name: str = "images",
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    unit_range: bool = False,
) -> Tensor:
    """Check that ``x`` is a float image batch ``(B, C, H, W)``.

    Args:
        x: the object to check.
        name: the argument name used in messages.
        channels: required ``C`` (``None``: any).
        size: required ``(H, W)`` (``None``: any).
        unit_range: also require every value in ``[0, 1]`` (costs one pass
            over the data; used at API boundaries, not in the training step).

    Returns:
        ``x`` unchanged.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = ""
        if x.dim() == 3:
            hint = " (a single image? add the batch dimension with x.unsqueeze(0); "
            hint += "a batch of grey images? add the channel with x.unsqueeze(1))"
        raise ValueError(
            f"expected {name} of shape (B, C, H, W), got {shape_str(x.shape)}{hint}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"expected floating-point {name} in [0, 1], got dtype {x.dtype}; "
            "convert uint8 images with x.float() / 255"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"expected {name} with {channels} channel(s), shape (B, {channels}, H, W), "
            f"got {shape_str(x.shape)}"
        )
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(
            f"expected {name} of size {size[0]}x{size[1]}, shape (B, C, {size[0]}, {size[1]}), "
            f"got {shape_str(x.shape)}"
        )
    if unit_range and x.numel() > 0:
        lo, hi = finite_range(x, name)
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"expected {name} with values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                "scale uint8 images with x / 255, or clip with x.clamp(0, 1)"
            )
    return x


def check_finite_images(
    x: Tensor, name: str = "images", fix: str = "fix or drop those images before training or repairing"
) -> Tensor:
    """Refuse NaN or infinite pixels (which every range check lets through), naming the first image with one."""
    if x.is_floating_point() and x.numel():
        finite_range(x, name, fix)
    return x


SCALE_MARGIN = 9.0  # noisy images stray outside [0, R] by a few noise sigmas; 0-255 images by far more


def check_image_scale(x: Tensor, name: str = "x", data_range: float = 1.0,
                      fix: str = "fix or drop that image") -> Tensor:
    """Refuse NaN/Inf pixels, and values so far outside ``[0, data_range]`` (more than ``9 * data_range``) that
    the images must be on another scale (0-255 images given as floats in place of ``[0, 1]``).

    Noisy images (unclipped noise) stray outside ``[0, 1]`` and pass; one ``aminmax`` pass.
    """
    if x.is_floating_point() and x.numel():
        lo, hi = finite_range(x, name, fix)
        if lo < -SCALE_MARGIN * data_range or hi > (1.0 + SCALE_MARGIN) * data_range:
            raise ValueError(
                f"{name} has values in [{lo:.4g}, {hi:.4g}], far outside [0, {data_range:g}]: are the images on "
                f"the 0-255 scale? divide them by 255 (images here are in [0, {data_range:g}]; noisy ones may "
                "stray outside it, but not this far)")
    return x


def _aminmax(x: Tensor) -> tuple[float, float]:
    """``(min, max)`` in one pass and one device sync (NaN when any value is NaN)."""
    lo, hi = torch.stack(torch.aminmax(x)).tolist()
    return float(lo), float(hi)


def finite_range(
    x: Tensor, name: str = "images", fix: str = "fix or drop those images before training or repairing"
) -> tuple[float, float]:
    """``(min, max)`` of a non-empty float tensor, refusing NaN or Inf (naming the first image with one).

    One pass (``aminmax``, which returns NaN when any value is NaN): about 15x cheaper than
    ``isfinite(x).all()`` followed by ``min`` and ``max`` on a training set.
    """
    lo, hi = _aminmax(x)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int((~torch.isfinite(x)).flatten(1).any(dim=1).nonzero()[0, 0]) if x.dim() > 1 else 0
        raise ValueError(f"{name} has non-finite pixel values (NaN or Inf) in image {bad}; {fix}")
    return lo, hi


def check_probability(value: float, name: str, *, allow_one: bool = True) -> float:
    """Check ``0 <= value <= 1`` (or ``< 1``) and return it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are numbers too
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if not (value >= 0.0 and upper_ok):
        bound = "1]" if allow_one else "1)"
        raise ValueError(f"{name} must be in [0, {bound}, got {value!r}")
    return value


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Check ``value > 0`` (or ``>= 0``) and finite; return it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are numbers too
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    ok = value >= 0.0 if allow_zero else value > 0.0
    if not ok or value != value or value == float("inf"):
        sign = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {sign}, got {value!r}")
    return value


def check_count(value: object, name: str, *, minimum: int = 1, unit: str = "") -> int:
    """Check that ``value`` is an integer ``>= minimum`` (numpy integers too, not bools or floats); return it.

    ``unit`` follows the bound in the message: ``" (pixels)"``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer >= {minimum}{unit}, got {value!r} ({type(value).__name__})")
    if not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{unit}, got {value!r}")
    return int(value)


def check_in_unit_interval(x: Tensor, name: str) -> None:
    """Raise if any value of ``x`` lies outside ``[0, 1]``."""
    if x.numel() == 0:
        return
    lo, hi = _aminmax(x)  # one pass (it ran as three: two comparisons and an any)
    if not (lo >= 0.0 and hi <= 1.0):
        finite_range(x, name, "the targets must be finite pixel values in [0, 1]")  # NaN or Inf: say where
        raise ValueError(
            f"{name} must have values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
            "use pixel values scaled to [0, 1] (x / 255) or a Gaussian likelihood for "
            "unbounded targets"
        )


def as_device(device: str | torch.device) -> torch.device:
    """Resolve ``"auto"`` to CUDA when available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return resolved
