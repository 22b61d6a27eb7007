"""A batch source over a ``torch.utils.data.DataLoader``: datasets read from disk, with worker processes
and pinned memory, resumable exactly mid-epoch.

The order is drawn in the main process (a seeded ``torch.randperm`` per
epoch, as :class:`~vaerepair.training.sources.TensorSource` draws it), handed
to the loader as a batch sampler, and a resumed epoch starts the sampler at
the step where the checkpoint was taken, so the skipped batches are never
read. Workers only read and decode; the corruption runs on the device in the
main process from the source's own random stream, so the batches do not
depend on the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vaerepair._checks import check_count
from vaerepair.training.sources import ShuffledSource, check_image_shape, to_unit_float

__all__ = ["LoaderSource"]


class _EpochPlan:
    """The batch sampler: this epoch's batches of indices from ``start`` on (set before each epoch)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class LoaderSource(ShuffledSource):
    """Batches from a map-style dataset through a ``DataLoader``.

    Args:
        dataset: ``dataset[i]`` is an image ``(C, H, W)`` (uint8, or float in
            [0, 1]) or a pair ``(image, label)``; all images of one size (use
            :class:`~vaerepair.training.patches.PatchSource` for sizes that differ).
        num_workers: loader processes (0: read in the main process).
        pin_memory: page-locked host memory for faster copies to a GPU
            (``None``: when the Trainer's device is CUDA).
        drop_last: drop the last incomplete batch of an epoch.
        prefetch_factor: batches each worker reads ahead (with workers).
        **loader_options: more ``DataLoader`` arguments (``timeout``,
            ``multiprocessing_context``, ...); not ``batch_size``/``shuffle``/samplers.
    """

    def __init__(self, dataset: Dataset[Any], num_workers: int = 0, pin_memory: bool | None = None,
                 drop_last: bool = False, prefetch_factor: int | None = None, **loader_options: Any) -> None:
        if not isinstance(dataset, Sized):
            raise TypeError(f"dataset must be a map-style torch Dataset with a length, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("the dataset is empty")
        num_workers = check_count(num_workers, "num_workers", minimum=0)
        for key in ("batch_size", "shuffle", "sampler", "batch_sampler", "drop_last", "generator"):
            if key in loader_options:
                raise ValueError(f"{key} is set by the source and the Trainer, not through loader_options")
        self.dataset, self.num_workers, self.pin_memory = dataset, num_workers, pin_memory
        self.drop_last, self.prefetch_factor, self.loader_options = drop_last, prefetch_factor, loader_options
        self._loader: DataLoader[Any] | None = None

    def _setup(self) -> None:
        self._n = len(self.dataset)  # type: ignore[arg-type]
        self._start_order(torch.device("cpu"))  # the order is drawn on the CPU, where the loader indexes
        self._plan = _EpochPlan()
        pin = self.ctx.device.type == "cuda" if self.pin_memory is None else self.pin_memory
        self._non_blocking = pin
        workers = self.num_workers
        # the loader draws its workers' base seed from its own generator, not from the global stream (the
        # models' latent noise), which a resumed run must continue unchanged
        self._loader = DataLoader(self.dataset, batch_sampler=self._plan, num_workers=workers, pin_memory=pin,
                                  persistent_workers=workers > 0, prefetch_factor=self.prefetch_factor if workers
                                  else None, generator=torch.Generator().manual_seed(self.ctx.seed + 6),
                                  **self.loader_options)
        image, label = self._split(self.dataset[0])
        check_image_shape(tuple(image.shape), self.ctx.image_shape, "train")
        if getattr(self.ctx.condition, "needs_labels", False) and label is None:
            raise TypeError("this model is conditioned on labels: the dataset must give (image, label) pairs")

    @staticmethod
    def _split(item: Any) -> tuple[Tensor, Tensor | None]:
        if isinstance(item, (tuple, list)):
            return torch.as_tensor(item[0]), torch.as_tensor(item[1])
        return torch.as_tensor(item), None

    def steps_per_epoch(self) -> int:
        n, b = len(self.dataset), self.ctx.batch_size  # type: ignore[arg-type]
        return n // b if self.drop_last else math.ceil(n / b)

    def n_images(self) -> int:
        return self.steps_per_epoch() * self.ctx.batch_size if self.drop_last else len(self.dataset)  # type: ignore[arg-type]

    def first_batch(self) -> tuple[Tensor, Tensor | None]:
        items = [self._split(self.dataset[i]) for i in range(min(self._n, self.ctx.batch_size))]
        images = to_unit_float(torch.stack([im for im, _ in items]).to(self.ctx.device), self.ctx.dtype)
        found = [lb for _, lb in items if lb is not None]
        labels = torch.stack(found).to(self.ctx.device) if len(found) == len(items) else None
        return images, labels

    def _clean_batches(self, start: int) -> Iterator[tuple[Tensor, Tensor | None]]:
        order = self._epoch_order(self._n, start).tolist()  # resumed: the same order, from step ``start``
        b = self.ctx.batch_size
        self._plan.batches = [order[i * b : (i + 1) * b] for i in range(start, self.steps_per_epoch())]
        assert self._loader is not None
        for item in self._loader:
            images, labels = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
            images = images.to(self.ctx.device, non_blocking=self._non_blocking)
            labels = labels.to(self.ctx.device, non_blocking=self._non_blocking) if labels is not None else None
            yield to_unit_float(images, self.ctx.dtype), labels
