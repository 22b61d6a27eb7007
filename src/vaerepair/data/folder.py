"""Folders of photographs: every PNG, JPEG, BMP and TIFF under a root, each at its native size.

Files are decoded by Pillow (a torchvision dependency): it reads all four
formats, where ``torchvision.io`` reads neither BMP nor TIFF and its image
decoders are deprecated since torchvision 0.29. 8-bit images are kept as uint8
``(C, H, W)``; 16-bit grey images (PNG, TIFF) as float32 in [0, 1]
(``value / 65535``), so no precision is lost. Pillow reads a 16-bit *colour*
PNG as 8-bit RGB: such files lose their low bits. An alpha channel is dropped.
``mode="L"`` converts colour to grey with the ITU-R BT.601 weights
(as Pillow's ``convert("L")``), ``mode="RGB"`` repeats a grey channel.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaerepair.data.dataset import ImageDataset
from vaerepair.data.registry import DatasetNotFoundError

__all__ = ["ImageFolder", "FolderPatches", "ImageReadError", "read_image", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MODES = (None, "L", "RGB")
_BT601 = (0.299, 0.587, 0.114)


class ImageReadError(ValueError):
    """A file could not be decoded as an image; the message names the file."""


def read_image(path: str | os.PathLike[str], mode: str | None = None) -> Tensor:
    """One image as ``(C, H, W)``: uint8 for 8-bit files, float32 in [0, 1] for 16-bit ones.

    Args:
        path: a PNG, JPEG, BMP or TIFF file.
        mode: ``None`` (the file's own: 1 channel for grey, 3 for colour), ``"L"`` or ``"RGB"``.

    Raises:
        ImageReadError: the file is missing, truncated or not an image.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be None, 'L' or 'RGB', got {mode!r}")
    path = Path(path)
    try:
        image = _decode(path)
    except (OSError, RuntimeError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"cannot read {str(path)!r} as an image ({type(err).__name__}: {err}); "
                             "check the file, or skip unreadable files with skip_unreadable=True") from err
    if image.shape[0] in (2, 4):  # grey + alpha, RGB + alpha
        image = image[:-1]
    return _convert(image, mode)


def _decode(path: Path) -> Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(im).astype(np.float32) / (65535.0 if im.mode.startswith("I;16") else 2**32 - 1)
            return torch.from_numpy(array)[None]
        if im.mode not in ("L", "RGB", "LA", "RGBA"):
            im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
        array = np.array(im)  # a writable copy
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def _convert(image: Tensor, mode: str | None) -> Tensor:
    c = image.shape[0]
    if mode == "RGB" and c == 1:
        return image.expand(3, -1, -1).contiguous()
    if mode == "L" and c == 3:
        weights = torch.tensor(_BT601, dtype=torch.float32).view(3, 1, 1)
        grey = (image.to(torch.float32) * weights).sum(0, keepdim=True)
        return grey.round().clamp_(0, 255).to(torch.uint8) if image.dtype == torch.uint8 else grey
    return image


class ImageFolder:
    """Every PNG, JPEG, BMP and TIFF under ``root`` (8- and 16-bit), each at its native size.

    The files are taken in the order of their paths relative to ``root``
    (sorted), so the order is the same on every machine. ``folder[i]`` is image
    ``i`` as ``(C, H, W)`` (see :func:`read_image`).

    Args:
        root: the folder.
        mode: ``None`` (each file's own channels), ``"L"`` (grey) or ``"RGB"``.
        recursive: also look in subfolders.
        lazy: read each image when it is indexed instead of all at once (for
            sets larger than memory; sizes are read from the headers up front).
        skip_unreadable: skip files that cannot be read, with a warning naming
            each (default: an :class:`ImageReadError` naming the file).

    Example:
        >>> photos = ImageFolder("photos/", mode="L")  # doctest: +SKIP
        >>> train, val = train_val_split(photos, val_fraction=0.1)  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str], mode: str | None = None, recursive: bool = True,
                 lazy: bool = False, skip_unreadable: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be None, 'L' or 'RGB', got {mode!r}")
        self.root, self.mode, self.lazy = Path(root), mode, lazy
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"image folder {str(self.root)!r} does not exist or is not a folder")
        found = self.root.rglob("*") if recursive else self.root.glob("*")
        paths = sorted((p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: p.relative_to(self.root).as_posix())
        if not paths:
            where = "under" if recursive else "in"
            raise DatasetNotFoundError(f"no images (PNG, JPEG, BMP, TIFF) {where} {str(self.root)!r}")
        kept: list[Path] = []
        images: list[Tensor] = []
        self.sizes: list[tuple[int, int]] = []
        for path in paths:
            try:
                if lazy:
                    self.sizes.append(_header_size(path))
                else:
                    images.append(read_image(path, mode))
                    self.sizes.append((int(images[-1].shape[1]), int(images[-1].shape[2])))
            except ImageReadError as err:
                if not skip_unreadable:
                    raise
                warnings.warn(f"skipped an unreadable file: {err}", stacklevel=2)
                continue
            kept.append(path)
        if not kept:
            raise DatasetNotFoundError(f"none of the {len(paths)} image files under {str(self.root)!r} could be read")
        self.paths = kept
        self._images: list[Tensor] | None = None if lazy else images

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        i = int(index)
        if self._images is not None:
            return self._images[i]
        return read_image(self.paths[i], self.mode)

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    def subset(self, indices: Sequence[int] | Tensor) -> ImageFolder:
        """The images at ``indices`` (a view sharing the decoded images)."""
        chosen = [int(i) for i in indices]
        view = object.__new__(ImageFolder)
        view.root, view.mode, view.lazy = self.root, self.mode, self.lazy
        view.paths = [self.paths[i] for i in chosen]
        view.sizes = [self.sizes[i] for i in chosen]
        view._images = [self._images[i] for i in chosen] if self._images is not None else None
        return view

    def to_dataset(self) -> ImageDataset:
        """All images stacked into an :class:`ImageDataset` (they must share one size and be 8-bit)."""
        images = list(self)
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) > 1:
            raise ValueError(f"the images have {len(shapes)} different shapes (e.g. {sorted(shapes)[:2]}); train on "
                             "random patches (vaerepair.training.PatchSource) or resize them first")
        if images[0].dtype != torch.uint8:
            raise TypeError("16-bit images do not fit an ImageDataset (uint8): use PatchSource with the float images")
        return ImageDataset(torch.stack(images), name=self.root.name)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, n={len(self)}, mode={self.mode!r}, lazy={self.lazy})"


class FolderPatches(torch.utils.data.Dataset):
    """Random ``P x P`` patches streamed from a (lazy) :class:`ImageFolder`: for sets larger than memory.

    Item ``k`` reads image ``k mod N`` from disk and cuts one patch at a
    position (and, with ``augment``, one of the 8 flips/rotations) drawn from a
    generator seeded with ``(seed, k)``, so an item is the same in every worker
    and every run; an epoch is the same ``patches_per_image * N`` patches,
    reshuffled. Feed it to :class:`~vaerepair.training.LoaderSource`, whose
    workers read and cut while the Trainer trains (in-memory sets are faster
    with :class:`~vaerepair.training.PatchSource`, which draws new patches in
    every batch).

    Args:
        folder: the images (every one at least ``P x P``).
        patch_size: ``P``.
        patches_per_image: patches per image and epoch.
        augment: random flips/rotations.
        seed: the base seed.
    """

    def __init__(self, folder: ImageFolder, patch_size: int, patches_per_image: int = 16, augment: bool = False,
                 seed: int = 0) -> None:
        small = [(p, s) for p, s in zip(folder.paths, folder.sizes, strict=True) if min(s) < patch_size]
        if small:
            raise ValueError(f"{str(small[0][0])!r} is {small[0][1][0]}x{small[0][1][1]} pixels, smaller than the "
                             f"{patch_size}x{patch_size} patch: use a smaller patch_size or drop the image")
        if patches_per_image < 1 or patch_size < 1:
            raise ValueError(f"patch_size and patches_per_image must be >= 1, got {patch_size}, {patches_per_image}")
        self.folder, self.patch_size, self.per_image = folder, int(patch_size), int(patches_per_image)
        self.augment, self.seed = augment, int(seed)

    def __len__(self) -> int:
        return len(self.folder) * self.per_image

    def __getitem__(self, k: int) -> Tensor:
        image = self.folder[int(k) % len(self.folder)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(k))
        p, (h, w) = self.patch_size, image.shape[-2:]
        top = int(torch.randint(h - p + 1, (1,), generator=g))
        left = int(torch.randint(w - p + 1, (1,), generator=g))
        patch = image[:, top : top + p, left : left + p]
        if self.augment:
            t = int(torch.randint(8, (1,), generator=g))
            patch = patch.transpose(1, 2) if t & 4 else patch
            patch = patch.flip(1) if t & 1 else patch
            patch = patch.flip(2) if t & 2 else patch
        return patch.contiguous()


def _header_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"cannot read {str(path)!r} as an image ({type(err).__name__}: {err}); "
                             "check the file, or skip unreadable files with skip_unreadable=True") from err
    return int(h), int(w)
