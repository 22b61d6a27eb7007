"""A batch source of random square patches from images of different sizes, drawn on the device.

Every image is stored once, flattened, in one buffer on the device. A batch
draws, in one vectorised call each, the image of every patch (with
probability proportional to its number of patch positions, so every patch
position of the set is equally likely), the top-left corner uniformly among
the positions that fit, and optionally one of the 8 flips/rotations of the
square (the dihedral group), then gathers all ``B x C x P x P`` pixels with a
single indexing operation. Everything is drawn from the source's own
generator, so a batch sequence is reproducible from the seed and resumes
exactly from the generator state in a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from vaerepair._checks import check_count, shape_str
from vaerepair.data import ImageDataset, NoisyImages
from vaerepair.training.sources import BatchSource, check_noisy_without_corruption, to_unit_float

__all__ = ["PatchSource", "dihedral_coordinates"]


def dihedral_coordinates(size: int, transform: Tensor) -> tuple[Tensor, Tensor]:
    """Row and column offsets ``(B, P, P)`` of a ``P x P`` patch under dihedral transforms ``transform``
    ``(B,)`` in ``0..7``: bit 2 transposes, bit 0 flips the rows, bit 1 flips the columns (0: identity)."""
    r = torch.arange(size, device=transform.device)
    rows, cols = r.view(1, size, 1).expand(len(transform), size, size), r.view(1, 1, size).expand(
        len(transform), size, size)
    t = transform.view(-1, 1, 1)
    swap = (t & 4) != 0
    rows, cols = torch.where(swap, cols, rows), torch.where(swap, rows, cols)
    rows = torch.where((t & 1) != 0, size - 1 - rows, rows)
    cols = torch.where((t & 2) != 0, size - 1 - cols, cols)
    return rows, cols


class PatchSource(BatchSource):
    """Random ``patch_size x patch_size`` patches of images of any sizes (at least the patch).

    Args:
        images: a list of images ``(C, H, W)`` (uint8, or float in [0, 1]; one
            ``C`` for all), a tensor ``(N, C, H, W)``, an :class:`~vaerepair.data.ImageDataset`,
            or :class:`~vaerepair.data.NoisyImages` (patches of noisy observations,
            trained on as they are: the Trainer's corruption must be ``None``).
        targets: for pairs of noisy observations (Noise2Noise): the second
            observation of every image, same shapes; a batch's target is the patch
            of the other observation at the same place, the two swapped at random.
        patch_size: the side ``P`` of the patches.
        patches_per_epoch: patches in an epoch (default: as many as the images
            have non-overlapping patches, at least one batch).
        augment: apply a random one of the 8 flips/rotations to each patch.
    """

    def __init__(self, images: Sequence[Tensor] | Tensor | ImageDataset | NoisyImages, patch_size: int,
                 patches_per_epoch: int | None = None, augment: bool = False,
                 targets: Sequence[Tensor] | Tensor | None = None) -> None:
        patch_size = check_count(patch_size, "patch_size")
        self.data = images
        if isinstance(images, NoisyImages):
            if targets is not None:
                raise ValueError("NoisyImages carry their own second observations (second=): leave targets=None")
            targets = images.second
            images = images.observations
        if isinstance(images, ImageDataset):
            images = images.images
        items = list(images.unbind(0)) if isinstance(images, Tensor) else list(images)
        if not items:
            raise ValueError("PatchSource needs at least one image")
        for i, im in enumerate(items):
            if not isinstance(im, Tensor) or im.dim() != 3:
                raise ValueError(f"image {i} must be a tensor (C, H, W), got "
                                 f"{shape_str(im.shape) if isinstance(im, Tensor) else type(im).__name__}")
            if im.shape[0] != items[0].shape[0]:
                raise ValueError(f"image {i} has {im.shape[0]} channels, image 0 has {items[0].shape[0]}; "
                                 "convert them to one mode (all grey or all RGB)")
            if min(im.shape[1:]) < patch_size:
                raise ValueError(f"image {i} of size {im.shape[1]}x{im.shape[2]} is smaller than the "
                                 f"{patch_size}x{patch_size} patch: use a smaller patch_size or drop the image")
        self.targets: list[Tensor] | None = None
        if targets is not None:
            self.targets = list(targets.unbind(0)) if isinstance(targets, Tensor) else list(targets)
            if len(self.targets) != len(items) or any(
                    t.shape != im.shape for t, im in zip(self.targets, items, strict=False)):
                raise ValueError("targets must hold one image of the same shape per image (the second observation "
                                 f"of each scene); got {len(self.targets)} targets for {len(items)} images")
        self.items, self.patch_size, self.augment = items, patch_size, augment
        default = sum((im.shape[1] // patch_size) * (im.shape[2] // patch_size) for im in items)
        self.patches_per_epoch = patches_per_epoch or default
        if isinstance(self.patches_per_epoch, bool) or not isinstance(self.patches_per_epoch, int) or \
                self.patches_per_epoch < 1:
            raise ValueError(f"patches_per_epoch must be an integer >= 1, got {patches_per_epoch!r}")

    def _setup(self) -> None:
        check_noisy_without_corruption(self.data, self.ctx.corruption, "the patches' images")
        device, p = self.ctx.device, self.patch_size
        c = self.items[0].shape[0]
        expected = self.ctx.image_shape
        if expected is not None and any(e is not None and e != s for e, s in zip(expected, (c, p, p), strict=True)):
            raise ValueError(f"the model takes images of shape {self.ctx.image_shape}, not {p}x{p} patches of "
                             f"{c} channel(s): build a fully convolutional model or set patch_size accordingly")
        self._c = c
        self._flat = torch.cat([im.reshape(c, -1) for im in self.items], dim=1).to(device)  # (C, sum H*W)
        self._flat_targets = torch.cat([t.reshape(c, -1) for t in self.targets], dim=1).to(device) \
            if self.targets is not None else None
        sizes = torch.tensor([[im.shape[1], im.shape[2]] for im in self.items], device=device)
        self._heights, self._widths = sizes[:, 0], sizes[:, 1]
        areas = self._heights * self._widths
        self._offsets = torch.cumsum(areas, 0) - areas
        positions = ((self._heights - p + 1) * (self._widths - p + 1)).double()
        self._weights = positions / positions.sum()
        self._gen = torch.Generator(device=device).manual_seed(self.ctx.seed + 2)

    def steps_per_epoch(self) -> int:
        return math.ceil(self.patches_per_epoch / self.ctx.batch_size)

    def n_images(self) -> int:
        return self.patches_per_epoch

    def first_batch(self) -> tuple[Tensor, Tensor | None]:
        n = min(len(self.items), self.ctx.batch_size)
        p = self.patch_size
        return to_unit_float(torch.stack([im[:, :p, :p] for im in self.items[:n]]).to(self.ctx.device),
                             self.ctx.dtype), None

    def first_target(self) -> Tensor | None:
        if self.targets is None:
            return None
        n, p = min(len(self.items), self.ctx.batch_size), self.patch_size
        return to_unit_float(torch.stack([t[:, :p, :p] for t in self.targets[:n]]).to(self.ctx.device),
                             self.ctx.dtype)

    def draw(self, n: int) -> Tensor:
        """``n`` random patches ``(n, C, P, P)`` as stored (uint8 or float), from the source's generator."""
        return self._flat[:, self._draw_index(n)].permute(1, 0, 2, 3)

    def _draw_index(self, n: int) -> Tensor:
        """Where ``n`` random patches are in the flat buffer, ``(n, P, P)``."""
        p, g = self.patch_size, self._gen
        which = torch.multinomial(self._weights, n, replacement=True, generator=g)
        u = torch.rand(2, n, generator=g, device=self._flat.device, dtype=torch.float64)
        top = (u[0] * (self._heights[which] - p + 1)).long()
        left = (u[1] * (self._widths[which] - p + 1)).long()
        transform = torch.randint(0, 8, (n,), generator=g, device=self._flat.device) if self.augment else \
            torch.zeros(n, dtype=torch.long, device=self._flat.device)
        rows, cols = dihedral_coordinates(p, transform)
        return (self._offsets[which].view(-1, 1, 1) + (top.view(-1, 1, 1) + rows) * self._widths[which].view(-1, 1, 1)
                + left.view(-1, 1, 1) + cols)  # (n, P, P) into the flat buffer

    def _clean_batches(self, start: int) -> Iterator[tuple[Any, ...]]:
        b = self.ctx.batch_size
        for step in range(start, self.steps_per_epoch()):
            n = min(b, self.patches_per_epoch - step * b)
            index = self._draw_index(n)
            x = to_unit_float(self._flat[:, index].permute(1, 0, 2, 3), self.ctx.dtype)
            if self._flat_targets is None:
                yield x, None
                continue
            other = to_unit_float(self._flat_targets[:, index].permute(1, 0, 2, 3), self.ctx.dtype)
            swap = (torch.rand(n, generator=self._gen, device=x.device) < 0.5).view(-1, 1, 1, 1)
            yield torch.where(swap, other, x), None, torch.where(swap, x, other)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "patches": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._gen.set_state(state["patches"].cpu())
