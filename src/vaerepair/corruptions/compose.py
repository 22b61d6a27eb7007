"""Combinators: apply corruptions in sequence, or one of several per image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vaerepair.corruptions._base import Corrupted, Corruption, uniform

__all__ = ["Compose", "OneOf"]


def _check_members(corruptions: Sequence[Corruption], who: str) -> list[Corruption]:
    members = list(corruptions)
    if not members:
        raise ValueError(f"{who} needs at least one corruption, got an empty sequence")
    for i, c in enumerate(members):
        if not isinstance(c, Corruption):
            raise TypeError(f"{who}: item {i} must be a vaerepair Corruption, got {type(c).__name__}")
    return members


class Compose(Corruption):
    """Apply corruptions one after the other; the mask is the union of their masks.

    Example:
        >>> c = Compose([GaussianNoise(0.1), BlockErasure(size=8)])
        >>> c(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, corruptions: Sequence[Corruption]) -> None:
        super().__init__()
        self.corruptions = nn.ModuleList(_check_members(corruptions, "Compose"))

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        # Corruptions keep the shape, so every step's parameters can be drawn up front.
        return {"members": [c.make_params(x, generator) for c in self._members()]}

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        mask = torch.zeros_like(x, dtype=torch.bool)
        for c, p in zip(self._members(), params["members"], strict=True):
            x, step_mask = c.transform(x, p)
            mask = mask | step_mask
        return Corrupted(x, mask)

    def _members(self) -> list[Corruption]:
        return [c for c in self.corruptions if isinstance(c, Corruption)]


class OneOf(Corruption):
    """Each image gets one corruption, chosen at random per image.

    All members are applied to the whole batch (vectorised) and each image keeps
    the output of its chosen member, so the cost is the sum of the members'.

    Args:
        corruptions: the candidates.
        weights: selection probabilities (normalised; default: uniform).
    """

    def __init__(self, corruptions: Sequence[Corruption], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        members = _check_members(corruptions, "OneOf")
        self.corruptions = nn.ModuleList(members)
        if weights is None:
            weights = [1.0] * len(members)
        if len(weights) != len(members):
            raise ValueError(
                f"OneOf: weights must have one entry per corruption ({len(members)}), got {len(weights)}"
            )
        if any(not (0.0 <= float(w) < float("inf")) for w in weights) or sum(weights) <= 0:
            raise ValueError(f"OneOf: weights must be finite and >= 0 with a positive sum, got {list(weights)!r}")
        total = float(sum(weights))
        self.probabilities = [float(w) / total for w in weights]

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        cdf = torch.tensor(self.probabilities, device=x.device, dtype=x.dtype).cumsum(0)
        u = uniform((x.shape[0],), x, generator)
        choice = torch.searchsorted(cdf, u, right=True).clamp_(max=len(self.probabilities) - 1)
        members = [c.make_params(x, generator) for c in self._members()]
        return {"choice": choice, "members": members}

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        out, mask = x, torch.zeros_like(x, dtype=torch.bool)
        for k, (c, p) in enumerate(zip(self._members(), params["members"], strict=True)):
            y, m = c.transform(x, p)
            chosen = (params["choice"] == k).view(-1, 1, 1, 1)
            out = torch.where(chosen, y, out)
            mask = torch.where(chosen, m, mask)
        return Corrupted(out, mask)

    def _members(self) -> list[Corruption]:
        return [c for c in self.corruptions if isinstance(c, Corruption)]

    def extra_repr(self) -> str:
        return f"probabilities={[round(p, 4) for p in self.probabilities]}"
