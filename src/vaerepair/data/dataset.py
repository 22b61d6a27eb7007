"""An image dataset held as one uint8 tensor, and a deterministic train/validation split."""

from __future__ import annotations

import operator
from typing import TypeVar, overload

import torch
from torch import Tensor

from vaerepair._checks import check_count, check_probability

__all__ = ["ImageDataset", "train_val_split"]


class ImageDataset:
    """A whole split in memory: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``.

    Indexing with an int gives ``(image, label)``; with a slice, an index tensor
    or a list it gives another :class:`ImageDataset`.

    Example:
        >>> ds = ImageDataset(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), torch.arange(10))
        >>> len(ds[2:5]), ds.image_shape
        (3, (1, 28, 28))
    """

    def __init__(self, images: Tensor, labels: Tensor | None = None, name: str = "custom", split: str = "") -> None:
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a tensor of shape (N, C, H, W), got {shape}")
        if images.dtype != torch.uint8:
            raise TypeError(
                f"images must be uint8 (0..255), got {images.dtype}; convert with (x * 255).round().to(torch.uint8)"
            )
        if labels is None:
            labels = torch.full((len(images),), -1, dtype=torch.long)
        labels = _integer_labels(labels)
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return len(self.images)

    @overload
    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]: ...

    @overload
    def __getitem__(self, index: slice | Tensor | list[int]) -> ImageDataset: ...

    def __getitem__(self, index: int | slice | Tensor | list[int]) -> tuple[Tensor, Tensor] | ImageDataset:
        if isinstance(index, list):
            index = torch.as_tensor(index, dtype=torch.long)
        if isinstance(index, slice) or (isinstance(index, Tensor) and index.dim() == 1):
            return ImageDataset(self.images[index], self.labels[index], self.name, self.split)
        i = operator.index(index)  # ints, numpy integers, 0-d integer tensors
        return self.images[i], self.labels[i]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def float_images(self) -> Tensor:
        """The images as float32 in ``[0, 1]``, ``(N, C, H, W)``."""
        return self.images.float().div_(255.0)

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split else ""
        return f"ImageDataset(name={self.name!r}{split}, n={len(self)}, image_shape={self.image_shape})"


def _integer_labels(labels: object) -> Tensor:
    """Labels as int64: integers (a tensor, array or sequence of them), not floats, bools or strings."""
    try:
        values = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"labels must be integers (a tensor, array or list of class indices), got "
                        f"{type(labels).__name__} ({err})") from err
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got {values.dtype}"
                        + (" with NaN" if values.is_floating_point() and bool(values.isnan().any()) else "")
                        + "; convert whole-number labels with labels.long()")
    return values.to(torch.long)


_Split = TypeVar("_Split")


def train_val_split(dataset: _Split, val_fraction: float = 0.2, seed: int = 0) -> tuple[_Split, _Split]:
    """Split into train and validation parts by a seeded permutation of the images.

    ``dataset`` is an :class:`ImageDataset` or anything with ``len`` and
    ``subset(indices)`` (an :class:`~vaerepair.data.ImageFolder`: whole
    photographs go to one side). The same ``seed`` gives the same split on every
    machine (a CPU ``torch.Generator``). Default: 20 % validation, as in the reports.
    """
    check_probability(val_fraction, "val_fraction")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    seed = check_count(seed, "seed", minimum=0)
    if not (isinstance(dataset, ImageDataset) or (hasattr(dataset, "__len__") and hasattr(dataset, "subset"))):
        raise TypeError(f"dataset must be an ImageDataset or have len() and subset(indices) (an ImageFolder), got "
                        f"{type(dataset).__name__}")
    n = len(dataset)  # type: ignore[arg-type]
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves an empty part of a dataset of {n} images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if isinstance(dataset, ImageDataset):
        return dataset[perm[n_val:]], dataset[perm[:n_val]]  # type: ignore[return-value]
    subset = getattr(dataset, "subset", None)
    if subset is None:
        raise TypeError(f"train_val_split needs an ImageDataset or an ImageFolder, got {type(dataset).__name__}")
    return subset(perm[n_val:]), subset(perm[:n_val])
