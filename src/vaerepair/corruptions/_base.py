"""The corruption contract: draw the randomness once, then apply it.

A corruption is an ``nn.Module`` called on a batch of clean images ``(B, C, H,
W)`` with values in ``[0, 1]``. It works on the input's device, draws a separate
random setting per image in one vectorised call (no per-image Python loop), and
is reproducible when given a ``torch.Generator`` on the same device.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, overload

import torch
from torch import Tensor, nn

from vaerepair._checks import check_images, check_positive, finite_range
from vaerepair.distributions._validation import validation_enabled

__all__ = ["Corruption", "Corrupted"]


class Corrupted(NamedTuple):
    """A corrupted batch and the mask of what the corruption touched.

    Attributes:
        images: the corrupted images ``(B, C, H, W)``.
        mask: boolean ``(B, C, H, W)``, ``True`` where a pixel value was replaced
            or perturbed (for inpainting metrics: the missing region).
    """

    images: Tensor
    mask: Tensor


class Corruption(nn.Module):
    """Base class of the batched corruptions.

    Subclasses implement :meth:`make_params` (all the randomness, drawn with
    ``generator``) and :meth:`transform` (deterministic given the parameters).
    """

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        """Draw the per-image random parameters for batch ``x`` ``(B, C, H, W)``."""
        raise NotImplementedError

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        """Corrupt ``x`` ``(B, C, H, W)`` with the drawn parameters."""
        raise NotImplementedError

    @overload
    def forward(
        self, x: Tensor, *, generator: torch.Generator | None = ..., return_mask: Literal[False] = False
    ) -> Tensor: ...

    @overload
    def forward(
        self, x: Tensor, *, generator: torch.Generator | None = ..., return_mask: Literal[True]
    ) -> Corrupted: ...

    def forward(
        self,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        return_mask: bool = False,
    ) -> Tensor | Corrupted:
        """Corrupt a batch.

        Args:
            x: clean images ``(B, C, H, W)``, floating point, values in ``[0, 1]``.
            generator: a ``torch.Generator`` on ``x.device`` for reproducible
                corruption (``None``: the global RNG).
            return_mask: also return the boolean mask ``(B, C, H, W)`` of the
                pixels the corruption touched.

        Returns:
            The corrupted images ``(B, C, H, W)``, or a :class:`Corrupted`
            ``(images, mask)`` when ``return_mask`` is true.
        """
        if validation_enabled():  # off inside the Trainer's step, whose data and generator were checked once
            _check_call(x, generator)
        result = self.transform(x, self.make_params(x, generator))
        return result if return_mask else result.images


def _check_call(x: Tensor, generator: torch.Generator | None) -> None:
    """A corruption's input: float images ``(B, C, H, W)`` in ``[0, 1]`` and a generator on their device."""
    check_images(x, "x")
    if x.numel():
        lo, hi = finite_range(x, "x")
        if lo < 0.0 or hi > 1.0:  # members of a Compose see their predecessors' output unchecked
            raise ValueError(f"a corruption takes clean images with values in [0, 1], got values in "
                             f"[{lo:.4g}, {hi:.4g}]; scale 0-255 images with x / 255, or clip with "
                             "x.clamp(0, 1) (to chain corruptions, use Compose)")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__} "
                        f"({generator!r}); make one with torch.Generator(device=x.device).manual_seed(seed)")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but the images are on {x.device}; "
            f"create it with torch.Generator(device={str(x.device)!r})"
        )


def uniform(shape: tuple[int, ...], x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``U[0, 1)`` samples of ``shape`` with the dtype and device of ``x``."""
    return torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)


def full_mask(x: Tensor) -> Tensor:
    """A ``True`` mask shaped like ``x`` (a corruption that touches every pixel): one stored ``True`` expanded to
    the shape, read-only (``.clone()`` it to write to it). The stored ``True`` is made once per device, so a
    training step pays one view, not two tensor operations, for a mask it does not ask for; if a caller wrote
    through a mask anyway, the next call makes a new one."""
    true = _TRUE.get(x.device)
    if true is None or true._version:  # never made here, or written to through a mask
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor, whatever mode this call runs in
            true = _TRUE[x.device] = torch.ones((), dtype=torch.bool, device=x.device)
    return true.expand(x.shape)


_TRUE: dict[torch.device, Tensor] = {}


def parameter_range(value: float | tuple[float, float], name: str, allow_zero: bool = True) -> tuple[float, float]:
    """A non-negative parameter as ``(low, high)``: a number ``v`` is ``(v, v)``; a pair is a range each image
    draws its own value from, uniformly."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} range must be (low, high), got {value!r}")
        low = check_positive(value[0], f"{name} low", allow_zero=allow_zero)
        high = check_positive(value[1], f"{name} high", allow_zero=allow_zero)
        if low > high:
            raise ValueError(f"{name} range must have low <= high, got {value!r}")
        return low, high
    v = check_positive(value, name, allow_zero=allow_zero)
    return v, v


def per_image(bounds: tuple[float, float], x: Tensor, generator: torch.Generator | None) -> Tensor:
    """One value per image ``(B, 1, 1, 1)``: the fixed value, or a uniform draw from the range."""
    low, high = bounds
    if low == high:
        return torch.full((x.shape[0], 1, 1, 1), low, device=x.device, dtype=x.dtype)
    return low + (high - low) * uniform((x.shape[0], 1, 1, 1), x, generator)
