"""Multi-process data parallelism with ``torch.distributed``: the Trainer's side of ``torchrun``.

Every process holds the whole model and sees the same global batch order;
process ``r`` of ``W`` trains on its contiguous share of each global batch.
After the backward pass one ``all_reduce`` sums the gradients (each process
scaled its loss by its share of the batch, so the sum is the gradient of the
global batch mean) together with two flags: a non-finite loss anywhere, and
a stop signal anywhere, so that every process takes the same decision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Distributed", "init_from_env"]


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
    return dist.get_world_size() > 1


@dataclass
class Distributed:
    """This process's place in the group (``world_size == 1``: a single process, every call a no-op)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Distributed:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This process's contiguous share of ``n`` items (the first ``n % W`` processes get one more)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's parameters and buffers."""
        if self.enabled:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def sync_gradients(self, params: list[Tensor], flags: Tensor) -> Tensor:
        """Sum the gradients of ``params`` and the ``flags`` over all processes, in one ``all_reduce``."""
        if not self.enabled:
            return flags
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads] + [flags.to(grads[0].dtype)])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p)  # a view of this step's fresh buffer: no copy
            offset += n
        return flat[offset:]

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
