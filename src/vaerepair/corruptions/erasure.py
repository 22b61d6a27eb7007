"""Missing-region corruptions: the reports' "black box" and random masks (inpainting)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from vaerepair._checks import check_count, check_probability
from vaerepair.corruptions._base import Corrupted, Corruption, uniform

__all__ = ["BlockErasure", "RandomMask"]


def _check_fill(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be a number in [0, 1], got {value!r}")
    return check_probability(value, "value")


class BlockErasure(Corruption):
    """Erase one square block per image at a random place (the reports' "black box").

    Give exactly one of ``size`` (side in pixels) or ``area`` (fraction of the
    image area; the side is ``round(sqrt(area * H * W))``, at least 1). The block
    lies wholly inside the image; each image draws its own position.

    Args:
        size: side of the square in pixels, ``>= 1``.
        area: fraction of the image covered, in ``(0, 1]``.
        value: the fill value in ``[0, 1]`` (0: black).

    Example:
        >>> out = BlockErasure(size=10)(torch.rand(4, 1, 28, 28), return_mask=True)
        >>> out.mask[:, 0].sum(dim=(1, 2)).tolist()
        [100, 100, 100, 100]
    """

    def __init__(self, size: int | None = None, area: float | None = None, value: float = 0.0) -> None:
        super().__init__()
        if (size is None) == (area is None):
            raise ValueError(
                f"give exactly one of size (pixels) or area (fraction), got size={size!r}, area={area!r}"
            )
        if size is not None:
            size = check_count(size, "size", unit=" (pixels)")
        if area is not None:
            area = check_probability(area, "area")
            if area == 0.0:
                raise ValueError("area must be in (0, 1], got 0.0")
        self.size = size
        self.area = area
        self.value = _check_fill(value)

    def side(self, height: int, width: int) -> int:
        """The side of the block for an image of ``height x width``."""
        if self.size is not None:
            if self.size > min(height, width):
                raise ValueError(
                    f"size={self.size} does not fit in images of {height}x{width}; "
                    f"use size <= {min(height, width)}"
                )
            return self.size
        assert self.area is not None
        return max(1, min(min(height, width), round(math.sqrt(self.area * height * width))))

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        b, _, h, w = x.shape
        s = self.side(h, w)
        # floor(u * (n - s + 1)) is uniform over the n - s + 1 valid offsets.
        top = (uniform((b,), x, generator) * (h - s + 1)).long().clamp_(max=h - s)
        left = (uniform((b,), x, generator) * (w - s + 1)).long().clamp_(max=w - s)
        return {"top": top, "left": left, "side": s}

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        _, _, h, w = x.shape
        s, top, left = params["side"], params["top"], params["left"]
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + s)  # (B, H)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + s)  # (B, W)
        mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None].expand_as(x)
        return Corrupted(x.masked_fill(mask, self.value), mask)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"area={self.area}"
        return f"{what}, value={self.value}"


class RandomMask(Corruption):
    """Random missing pixels or square patches, for inpainting.

    Each ``patch_size x patch_size`` cell of the image (a pixel when
    ``patch_size=1``) is missing with probability ``p``, independently per
    image; missing pixels are set to ``value``.

    Args:
        p: probability that a cell is missing, in ``[0, 1]``.
        patch_size: side of the cells in pixels, ``>= 1``.
        value: the fill value in ``[0, 1]``.
    """

    def __init__(self, p: float = 0.5, patch_size: int = 1, value: float = 0.0) -> None:
        super().__init__()
        self.p = check_probability(p, "p")
        self.patch_size = check_count(patch_size, "patch_size", unit=" (pixels)")
        self.value = _check_fill(value)

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        b, _, h, w = x.shape
        k = self.patch_size
        if k > 1 and k >= max(h, w):
            raise ValueError(f"patch_size={k} makes one cell of a whole {h}x{w} image: every image would be "
                             f"wholly missing or wholly kept; use patch_size < {max(h, w)}")
        cells = uniform((b, 1, -(-h // k), -(-w // k)), x, generator) < self.p
        if k > 1:  # each pixel takes its cell's draw (indexing: memory of the image, whatever k is)
            rows = torch.arange(h, device=x.device) // k
            cols = torch.arange(w, device=x.device) // k
            cells = cells[:, :, rows][:, :, :, cols]
        return {"missing": cells}

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        mask = params["missing"].expand_as(x)
        return Corrupted(x.masked_fill(mask, self.value), mask)

    def extra_repr(self) -> str:
        return f"p={self.p}, patch_size={self.patch_size}, value={self.value}"
