"""Batched, on-device image corruptions with per-image randomness and masks.

Every corruption takes clean images ``(B, C, H, W)`` in ``[0, 1]`` and returns
corrupted images of the same shape, optionally with the boolean mask of the
pixels it touched (``return_mask=True``). Pass a ``torch.Generator`` for
reproducible corruption (the Trainer does so for validation).

:func:`from_spec` builds corruptions from short strings, as the CLI does:
``"gaussian:0.5"``, ``"saltpepper:0.1"``, ``"block:12"`` (side in pixels),
``"block:0.25"`` (area fraction), ``"mask:0.5"`` or ``"mask:0.5:4"`` (p, patch
size), ``"invert"`` or ``"invert:0.3"``, ``"poisson:0.01"`` (gain),
``"poissongaussian:0.01:0.02"`` (gain, read noise), ``"quantize"`` (clip to
[0, 1] and round to 8 bits, as saving to a file does; ``"quantize:16"`` for 16
levels), ``"+"`` to compose: ``"gaussian:0.25+block:10"``, and ``"|"`` for one
of several, chosen per image (``"+"`` binds first): ``"gaussian:0.5|gaussian:0.5+quantize"``.
Noise levels may be ranges, each image drawing
its own value (blind training), and may be divided by a number, so that 8-bit
levels read as they are written: ``"gaussian:0-55/255"`` is σ uniform in
[0, 55/255], ``"gaussian:25/255"`` is σ = 25/255.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from vaerepair.corruptions._base import Corrupted, Corruption
from vaerepair.corruptions.compose import Compose, OneOf
from vaerepair.corruptions.erasure import BlockErasure, RandomMask
from vaerepair.corruptions.noise import GaussianNoise, PixelInversion, Quantize, SaltAndPepper
from vaerepair.corruptions.sensor import Poisson, PoissonGaussian

__all__ = [
    "Corruption",
    "Corrupted",
    "GaussianNoise",
    "SaltAndPepper",
    "PixelInversion",
    "Quantize",
    "Poisson",
    "PoissonGaussian",
    "BlockErasure",
    "RandomMask",
    "Compose",
    "OneOf",
    "from_spec",
    "as_corruption",
    "SPEC_NAMES",
]


def _number(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"corruption {spec!r}: {text!r} is not a number") from None


_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LEVEL = re.compile(rf"^({_NUMBER})(?:-({_NUMBER}))?(?:/({_NUMBER}))?$")


def _level(text: str, spec: str) -> float | tuple[float, float]:
    """A noise level: ``V``, ``V/D``, or a range ``LOW-HIGH`` or ``LOW-HIGH/D`` (each image draws its own)."""
    match = _LEVEL.match(text.strip())
    if match is None:
        raise ValueError(f"corruption {spec!r}: {text!r} is not a number "
                         "(nor a level such as 0.1, 25/255 or the range 0-55/255)")
    low, high, divisor = match.groups()
    d = float(divisor) if divisor is not None else 1.0
    if d == 0:
        raise ValueError(f"corruption {spec!r}: {text!r} divides by zero")
    return float(low) / d if high is None else (float(low) / d, float(high) / d)


def _levels(make: Callable[..., Corruption], usage: str, n: int) -> Callable[[list[str], str], Corruption]:
    def build(args: list[str], spec: str) -> Corruption:
        if len(args) != n:
            raise ValueError(f"corruption {spec!r}: use {usage}")
        return make(*(_level(a, spec) for a in args))

    return build


def _integer(text: str, spec: str, what: str) -> int:
    value = _number(text, spec)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"corruption {spec!r}: {what} must be a whole number of pixels, got {text!r}")
    return int(value)


def _block(args: list[str], spec: str) -> Corruption:
    if len(args) != 1:
        raise ValueError(f"corruption {spec!r}: use block:SIZE (pixels, integer) or block:AREA (0 < AREA <= 1)")
    value = _number(args[0], spec)
    if not math.isfinite(value):
        raise ValueError(f"corruption {spec!r}: use block:SIZE (pixels) or block:AREA (0 < AREA <= 1), got {args[0]!r}")
    if "." in args[0] or value < 1:
        return BlockErasure(area=value)
    return BlockErasure(size=_integer(args[0], spec, "SIZE"))


def _mask(args: list[str], spec: str) -> Corruption:
    if len(args) not in (1, 2):
        raise ValueError(f"corruption {spec!r}: use mask:P or mask:P:PATCH_SIZE")
    patch = _integer(args[1], spec, "PATCH_SIZE") if len(args) == 2 else 1
    return RandomMask(p=_number(args[0], spec), patch_size=patch)


def _one_number(
    make: Callable[[float], Corruption], usage: str, default: float | None = None
) -> Callable[[list[str], str], Corruption]:
    def build(args: list[str], spec: str) -> Corruption:
        if not args and default is not None:
            return make(default)
        if len(args) != 1:
            raise ValueError(f"corruption {spec!r}: use {usage}")
        return make(_number(args[0], spec))

    return build


_BUILDERS: dict[str, Callable[[list[str], str], Corruption]] = {
    "gaussian": _levels(GaussianNoise, "gaussian:SIGMA (e.g. gaussian:0.1, gaussian:25/255, gaussian:0-55/255)", 1),
    "poisson": _levels(Poisson, "poisson:GAIN (e.g. poisson:0.01 or poisson:0.002-0.02)", 1),
    "poissongaussian": _levels(PoissonGaussian, "poissongaussian:GAIN:SIGMA (e.g. poissongaussian:0.01:0.02)", 2),
    "saltpepper": _one_number(SaltAndPepper, "saltpepper:AMOUNT"),
    "invert": _one_number(PixelInversion, "invert or invert:AMOUNT", default=1.0),
    "quantize": lambda args, spec: _quantize(args, spec),
    "block": _block,
    "mask": _mask,
}
SPEC_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def _quantize(args: list[str], spec: str) -> Corruption:
    if len(args) > 1:
        raise ValueError(f"corruption {spec!r}: use quantize or quantize:LEVELS (e.g. quantize:256)")
    if not args:
        return Quantize()
    value = _number(args[0], spec)
    if not (math.isfinite(value) and value == int(value) and value >= 2):
        raise ValueError(f"corruption {spec!r}: LEVELS must be a whole number >= 2 (256: 8 bits), got {args[0]!r}")
    return Quantize(int(value))


def from_spec(spec: str) -> Corruption:
    """Build a corruption from a short string (see the module docstring).

    Raises:
        ValueError: for an unknown name or malformed arguments, naming the known
            corruptions.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"corruption spec must be a non-empty string like 'gaussian:0.5', got {spec!r}")
    if "|" in spec:  # one of several per image; "+" binds first
        choices = [c.strip() for c in spec.split("|")]
        if not all(choices):
            raise ValueError(f"corruption {spec!r}: an empty choice around '|'; use e.g. "
                             "'gaussian:0.5|gaussian:0.5+quantize'")
        return OneOf([from_spec(c) for c in choices])
    parts = [p.strip() for p in spec.split("+")]
    built: list[Corruption] = []
    for part in parts:
        name, *args = part.split(":")
        name = name.strip().lower().replace("-", "").replace("_", "")
        if name not in _BUILDERS:
            raise ValueError(
                f"unknown corruption {part.split(':')[0]!r} in {spec!r}; "
                f"known: {', '.join(SPEC_NAMES)} (e.g. 'gaussian:0.5', 'block:12', 'mask:0.5')"
            )
        built.append(_BUILDERS[name](args, spec))
    return built[0] if len(built) == 1 else Compose(built)


def as_corruption(value: Corruption | str | None, name: str = "corruption") -> Corruption | None:
    """The one rule for a corruption argument: a :class:`Corruption`, a spec string (``"gaussian:0.5"``,
    ``"block:12"``, parsed by :func:`from_spec`), or ``None``; anything else is a ``TypeError`` naming the choices."""
    if value is None or isinstance(value, Corruption):
        return value
    if isinstance(value, str):
        return from_spec(value)
    raise TypeError(f"{name} must be a vaerepair Corruption (e.g. GaussianNoise(0.5)), a spec string like "
                    f"'gaussian:0.5' or 'block:12' (see vaerepair.corruptions.from_spec), or None; got {value!r}")
