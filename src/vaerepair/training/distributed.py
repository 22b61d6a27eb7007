"""Multi-process data parallelism: the Trainer's side of ``torchrun``, on ``DistributedDataParallel``.

Every process holds the whole model and sees the same global batch order;
process ``r`` of ``W`` trains on its contiguous share of each global batch
(:meth:`Distributed.shard`). The objective runs inside :class:`ObjectiveStep`,
a small module whose ``forward`` calls ``objective(model, x_input, x_target,
condition)``; wrapped in ``torch.nn.parallel.DistributedDataParallel`` its
backward pass all-reduces the gradients in buckets, overlapped with the
computation. Each process scales its loss by ``W * share / global batch`` so
that DDP's average is the gradient of the global batch mean.

Objectives that differentiate inside their loss (the Fisher divergence's
``torch.autograd.grad(..., create_graph=True)`` with respect to the latent code
and the image) work under DDP: those inner derivatives are taken with respect
to activations, not parameters, so they fire none of DDP's parameter hooks;
only the final ``backward`` does, once per parameter.

The NaN and stop flags travel in one further ``all_reduce`` of two numbers,
on check steps only (:class:`~vaerepair.training.guard.Guard`).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["Distributed", "ObjectiveStep", "init_from_env"]


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment), once.

    The backend is NCCL for CUDA devices and gloo otherwise. Returns whether a
    group with more than one process is active.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    atexit.register(_leave_group)  # a process that exits inside a group can abort in the backend's teardown
    return dist.get_world_size() > 1


def _leave_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ObjectiveStep(nn.Module):
    """``forward(x_input, x_target, condition)`` = ``objective(model, x_input, x_target[, condition])``.

    The module DDP wraps: its parameters are the model's, and the objective's
    calls to ``model.encode``/``decode`` run inside its ``forward``.
    """

    def __init__(self, model: nn.Module, objective: Any) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None) -> Any:
        return call_objective(self.objective, self.model, x_input, x_target, condition)


def call_objective(objective: Any, model: nn.Module, x_input: Tensor, x_target: Tensor,
                   condition: Tensor | None = None) -> Any:
    """``objective(model, x_input, x_target)``, and the condition for a conditional model (an objective written
    for unconditional models need not take one)."""
    if condition is None:
        return objective(model, x_input, x_target)
    return objective(model, x_input, x_target, condition)


@dataclass
class Distributed:
    """This process's place in the group (``world_size == 1``: a single process, every call a no-op)."""

    rank: int = 0
    world_size: int = 1
    enabled: bool = field(init=False)  # several processes: read on every step, so an attribute, not a property

    def __post_init__(self) -> None:
        self.enabled = self.world_size > 1

    @classmethod
    def current(cls) -> Distributed:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This process's contiguous share of ``n`` items (the first ``n % W`` processes get one more)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def wrap(self, step: ObjectiveStep, device: torch.device) -> nn.Module:
        """``step`` in ``DistributedDataParallel`` (which first gives every process rank 0's weights);
        ``step`` itself in one process."""
        if not self.enabled:
            return step
        ids = [device.index] if device.type == "cuda" and device.index is not None else None
        # Objectives may leave parameters out of a step's graph (a fixed-scale likelihood's log-sigma, say):
        # find_unused_parameters lets DDP mark them ready instead of waiting for them.
        return nn.parallel.DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True)

    def all_sum(self, values: Tensor) -> Tensor:
        """``values`` summed over all processes."""
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_object(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out
