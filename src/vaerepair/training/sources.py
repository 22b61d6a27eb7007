"""Batch sources: where the training loop's batches come from.

A source turns clean images into training batches: it orders (or draws) the
images, converts them to the model's float dtype on the device, corrupts the
whole global batch with its own random stream, takes this process's share of
it under ``torchrun``, and builds a conditional model's condition. The loop
only sees :class:`Batch` objects. Every source resumes exactly, mid-epoch:
:meth:`BatchSource.state_dict` holds what the next batch depends on.

Built in: :class:`TensorSource` (a dataset held in memory on the device, the
default), :class:`~vaerepair.training.patches.PatchSource` (random patches of
images of any size) and :class:`~vaerepair.training.loader.LoaderSource` (a
``torch.utils.data.DataLoader`` with workers, for data read from disk).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from vaerepair._checks import finite_range, shape_str
from vaerepair.corruptions import Corruption
from vaerepair.data import ImageDataset, NoisyImages
from vaerepair.training.distributed import Distributed

__all__ = ["Batch", "BatchSource", "SourceContext", "ShuffledSource", "TensorSource", "as_images", "to_unit_float",
           "condition_of", "check_image_shape", "labels_of", "check_noisy_without_corruption"]


class Batch(NamedTuple):
    """One training batch, ready for ``objective(model, input, target, condition)``.

    Attributes:
        input: what the encoder sees (the corrupted images) ``(B, C, H, W)``.
        target: what the likelihood scores (the clean images; for
            :class:`~vaerepair.data.NoisyImages`, the observation itself or the
            other observation of a pair) ``(B, C, H, W)``.
        condition: a conditional model's condition, else ``None``.
        weight: the factor on the loss before ``backward`` (1 in one process; under
            ``torchrun`` it makes the averaged gradients those of the global batch mean).
    """

    input: Tensor
    target: Tensor
    condition: Tensor | None = None
    weight: float = 1.0


@dataclass
class SourceContext:
    """What a source needs from the Trainer: where and how to build batches."""

    device: torch.device
    dtype: torch.dtype
    batch_size: int
    seed: int
    corruption: Corruption | None
    condition: Any = None  # a conditional model's Condition (``prepare(corrupted, mask, labels)``)
    image_shape: tuple[int, int, int] | None = None  # what the model takes, ``(C, H, W)`` (``None``: any size)
    dist: Distributed = field(default_factory=Distributed)


def as_images(data: ImageDataset | NoisyImages | Tensor, name: str) -> Tensor:
    """The images of ``data`` as ``(N, C, H, W)``, uint8 or float in [0, 1] (noisy observations: any finite
    floats)."""
    if isinstance(data, ImageDataset):
        return data.images
    if isinstance(data, NoisyImages):
        return data.observations
    if not isinstance(data, Tensor):
        raise TypeError(f"{name} must be an ImageDataset or a tensor (N, C, H, W), got {type(data).__name__}")
    if data.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {shape_str(data.shape)}")
    if data.dtype != torch.uint8:
        if not data.is_floating_point():
            raise TypeError(f"{name} must be uint8 (0..255) or float in [0, 1], got {data.dtype}")
        lo, hi = finite_range(data, name) if data.numel() else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name} must hold values in [0, 1], got [{lo:.4g}, {hi:.4g}]; scale uint8 images with x / 255"
            )
    return data


def check_image_shape(shape: tuple[int, ...], expected: tuple[int, ...] | None, name: str) -> None:
    """Refuse images of shape ``(C, H, W)`` that a model taking ``expected`` cannot take (a ``None`` side: any)."""
    if expected is not None and any(e is not None and s != e for s, e in zip(shape, expected, strict=True)):
        c, h, w = expected
        raise ValueError(
            f"{name} has images of shape {shape_str(shape)} but the model takes ({c}, {h}, {w}); "
            f"build the model with image_shape={tuple(shape)}"
        )


def to_unit_float(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 images divided by 255, float images cast, to ``dtype``."""
    return x.to(dtype).div_(255.0) if x.dtype == torch.uint8 else x.to(dtype)


def condition_of(condition: Any, x_in: Tensor, mask: Tensor | None, labels: Tensor | None,
                 clean: Tensor | None = None) -> Tensor | None:
    """A conditional model's condition for a batch (``None`` for an unconditional model); ``clean``: the clean
    images of ``x_in`` where they are known (a condition that ``needs_clean`` measures against them)."""
    if condition is None:
        return None
    if getattr(condition, "needs_clean", False):  # the uncorrupted input itself is no clean reference
        return condition.prepare(x_in, mask, labels, clean=clean if clean is not x_in else None)
    return condition.prepare(x_in, mask, labels)


def labels_of(data: Any, condition: Any, name: str) -> Tensor | None:
    """The labels when the model's condition needs them, else ``None``."""
    if not getattr(condition, "needs_labels", False):
        return None
    if not isinstance(data, ImageDataset):
        raise TypeError(
            f"this model is conditioned on labels, so {name} must be an ImageDataset with labels "
            f"(vaerepair.load gives them; or ImageDataset(images, labels)), got a {type(data).__name__}"
        )
    if len(data.labels) and int(data.labels.min()) < 0:
        raise ValueError(f"{name} has no labels (they are -1); a label-conditional model needs them")
    return data.labels


class BatchSource:
    """The interface of a batch source, and the corrupt-shard-condition step they share.

    A subclass implements :meth:`_setup` (take the data to the device),
    :meth:`steps_per_epoch`, :meth:`n_images` and :meth:`_clean_batches` (the
    clean float batches and their labels, from step ``start`` of the epoch),
    and keeps what its order depends on in :meth:`state_dict`.
    """

    ctx: SourceContext

    def setup(self, ctx: SourceContext) -> None:
        """Bind to a Trainer's device, dtype, batch size, seed, corruption and process group."""
        self.ctx = ctx
        self._corrupt_gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed + 3)
        self._step = 0  # the next step of the current epoch (0: a new epoch starts)
        self._setup()

    def _setup(self) -> None:
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def n_images(self) -> int:
        """Images per epoch (over all processes): the epoch means divide by it."""
        raise NotImplementedError

    def first_batch(self) -> tuple[Tensor, Tensor | None]:
        """A few clean float images (and labels) for the Trainer's first-batch check, without using any
        random stream."""
        raise NotImplementedError

    def _clean_batches(self, start: int) -> Iterator[tuple[Any, ...]]:
        """``(images, labels)`` per batch, or ``(observations, labels, targets)`` for noisy observations."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Batch]:
        """The batches of the rest of the current epoch; the next iteration starts a new one.

        ``_clean_batches`` yields ``(images, labels)``, or ``(observations, labels,
        targets)`` for noisy observations (which are not corrupted again)."""
        need_mask = self.ctx.condition is not None
        for item in self._clean_batches(self._step):
            self._step += 1
            yield self._batch(item[0], item[1], need_mask, item[2] if len(item) > 2 else None)
        self._step = 0

    def first_target(self) -> Tensor | None:
        """The targets of :meth:`first_batch` when they are not its images (pairs of observations), else ``None``."""
        return None

    @property
    def step(self) -> int:
        """Steps of the current epoch already handed out."""
        return self._step

    def _batch(self, x: Tensor, labels: Tensor | None, need_mask: bool, target: Tensor | None = None) -> Batch:
        ctx = self.ctx
        # the clean image is known where this source corrupts it; noisy observations (pairs or not) have none
        mask, known_clean = None, target is None and ctx.corruption is not None
        if target is not None:  # noisy observations: the input as it is, the target given
            x_in, x = x, target
            mask = torch.zeros_like(x, dtype=torch.bool) if need_mask else None
        elif ctx.corruption is None:
            x_in = x
            mask = torch.zeros_like(x, dtype=torch.bool) if need_mask else None
        elif need_mask:
            x_in, mask = ctx.corruption(x, generator=self._corrupt_gen, return_mask=True)
        else:
            x_in = ctx.corruption(x, generator=self._corrupt_gen)
        weight = 1.0
        if ctx.dist.enabled:  # every process corrupted the whole global batch (one stream): take a share
            part, n_global = ctx.dist.shard(len(x)), len(x)
            x, x_in = x[part], x_in[part]
            mask = mask[part] if mask is not None else None
            labels = labels[part] if labels is not None else None
            weight = ctx.dist.world_size * len(x) / n_global  # DDP averages over processes
        return Batch(x_in, x, condition_of(ctx.condition, x_in, mask, labels, x if known_clean else None), weight)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step, "corruption": self._corrupt_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._step = int(state["step"])
        self._corrupt_gen.set_state(state["corruption"].cpu())


class ShuffledSource(BatchSource):
    """A source of ``N`` items shuffled each epoch by a seeded ``torch.randperm``; a resumed epoch draws
    the same order again from the generator's state at the epoch's start."""

    def _start_order(self, device: torch.device) -> None:
        self._order_gen = torch.Generator(device=device).manual_seed(self.ctx.seed + 2)
        self._epoch_start: Tensor | None = None

    def _epoch_order(self, n: int, start: int) -> Tensor:
        """This epoch's permutation of ``n`` items (the same one again when resuming at ``start > 0``)."""
        if start == 0:
            self._epoch_start = self._order_gen.get_state()
        else:
            assert self._epoch_start is not None
            self._order_gen.set_state(self._epoch_start)
        return torch.randperm(n, generator=self._order_gen, device=self._order_gen.device)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "order": self._order_gen.get_state(), "epoch_start": self._epoch_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._order_gen.set_state(state["order"].cpu())
        start = state.get("epoch_start")
        self._epoch_start = start.cpu() if start is not None else None


class TensorSource(ShuffledSource):
    """A dataset held in memory on the device, shuffled each epoch and batched by index.

    Args:
        data: an :class:`~vaerepair.data.ImageDataset`, images ``(N, C, H, W)``
            (uint8, or float in [0, 1]), or :class:`~vaerepair.data.NoisyImages`
            (noisy observations, trained on as they are: the Trainer's corruption
            must be ``None``; a batch's target is the observation itself, or for
            pairs the other observation, the two swapped per image at random).
        drop_last: drop the last incomplete batch of an epoch.
    """

    def __init__(self, data: ImageDataset | NoisyImages | Tensor, drop_last: bool = False,
                 name: str = "train") -> None:
        self.data, self.drop_last, self.name = data, drop_last, name
        self.images = as_images(data, name)
        self.second = data.second if isinstance(data, NoisyImages) else None
        if len(self.images) == 0:
            raise ValueError(f"{name} is empty")

    def _setup(self) -> None:
        check_image_shape(tuple(self.images.shape[1:]), self.ctx.image_shape, self.name)
        check_noisy_without_corruption(self.data, self.ctx.corruption, self.name)
        self._images = self.images.to(self.ctx.device)
        self._second = self.second.to(self.ctx.device) if self.second is not None else None
        labels = labels_of(self.data, self.ctx.condition, self.name)
        self._labels = labels.to(self.ctx.device) if labels is not None else None
        self._start_order(self.ctx.device)
        if self.drop_last and len(self._images) < self.ctx.batch_size:
            raise ValueError(f"{self.name} has {len(self._images)} images, fewer than one batch "
                             f"of {self.ctx.batch_size} with drop_last=True")

    def steps_per_epoch(self) -> int:
        n, b = len(self.images), self.ctx.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def n_images(self) -> int:
        return self.steps_per_epoch() * self.ctx.batch_size if self.drop_last else len(self.images)

    def first_batch(self) -> tuple[Tensor, Tensor | None]:
        first = slice(0, min(len(self._images), self.ctx.batch_size))
        labels = self._labels[first] if self._labels is not None else None
        return to_unit_float(self._images[first], self.ctx.dtype), labels

    def first_target(self) -> Tensor | None:
        if self._second is None:
            return None
        return self._second[: min(len(self._images), self.ctx.batch_size)].to(self.ctx.dtype)

    def _clean_batches(self, start: int) -> Iterator[tuple[Any, ...]]:
        order = self._epoch_order(len(self._images), start)
        b = self.ctx.batch_size
        for step in range(start, self.steps_per_epoch()):
            index = order[step * b : (step + 1) * b]
            x = to_unit_float(self._images[index], self.ctx.dtype)
            labels = self._labels[index] if self._labels is not None else None
            if self._second is None:
                yield x, labels
                continue
            other = self._second[index].to(self.ctx.dtype)
            swap = (torch.rand(len(index), generator=self._corrupt_gen, device=x.device) < 0.5).view(-1, 1, 1, 1)
            yield torch.where(swap, other, x), labels, torch.where(swap, x, other)


def check_noisy_without_corruption(data: Any, corruption: Corruption | None, name: str) -> None:
    """Noisy observations are trained on as they are: refuse a corruption on top of them."""
    if isinstance(data, NoisyImages) and corruption is not None:
        raise ValueError(f"{name} holds noisy observations (NoisyImages), which are trained on as they are; "
                         f"build the Trainer with corruption=None, not {corruption!r}")
