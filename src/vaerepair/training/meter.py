"""The epoch's running sums of the loss and its terms, kept on the device (no host synchronisation)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vaerepair.objectives import ObjectiveResult
from vaerepair.training.distributed import Distributed
from vaerepair.training.guard import NonFiniteLossError

__all__ = ["EpochMeter"]


class EpochMeter:
    """Sums of ``loss * batch size`` and of each term over the steps taken, and the steps skipped.

    The loss sum is kept step by step (the NaN guard reads it); each term's per-image values are only collected
    (a detached view per step) and summed once per epoch, in order, in one reduction.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.term_values: dict[str, list[Tensor]] = {}
        self.seen = 0
        self.skipped = 0

    def add(self, result: ObjectiveResult, n: int) -> None:
        self.loss_sum.add_(result.loss.detach(), alpha=n)
        for k, v in result.terms.items():
            v = v.detach()
            self.term_values.setdefault(k, []).append(v if v.dim() == 1 else v.reshape(-1))
        self.seen += n

    def skip(self) -> None:
        self.skipped += 1

    def running_loss(self) -> float:
        """The mean loss over the steps taken so far this epoch (reads the device)."""
        return float(self.loss_sum) / max(self.seen, 1)

    def _term_sums(self) -> dict[str, Tensor]:
        return {k: torch.cat(v).float().sum() for k, v in self.term_values.items()}

    def record(self, n_images: int, dist: Distributed, count_skipped: bool, epoch: int = 0) -> dict[str, float]:
        """``train_loss`` and ``train_<term>`` (means over the epoch's ``n_images``, all processes).

        Raises:
            NonFiniteLossError: every step of the epoch was skipped (``nan_policy="skip"``).
        """
        if self.seen == 0 and self.skipped:
            raise NonFiniteLossError(
                f"all {self.skipped} steps of epoch {epoch} were skipped (non-finite loss or gradients): nothing "
                "was trained; try a lower learning rate or check the inputs")
        sums = self._term_sums()
        names = sorted(sums)
        totals = torch.stack([self.loss_sum, *(sums[k] for k in names)])
        values: list[float] = dist.all_sum(totals).tolist()  # one read of the device per epoch
        record = {"train_loss": values[0] / n_images}
        record.update({f"train_{k}": v / n_images for k, v in zip(names, values[1:], strict=True)})
        if count_skipped:
            record["skipped_steps"] = float(self.skipped)
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum.detach().clone(), "seen": self.seen, "skipped": self.skipped,
                "term_values": {k: torch.cat(v).clone() for k, v in self.term_values.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum = state["loss_sum"].to(self.device)
        if "term_values" in state:
            self.term_values = {k: [v.to(self.device)] for k, v in state["term_values"].items()}
        else:  # written before the per-image values were kept: each term's sum so far
            self.term_values = {k: [v.to(self.device).reshape(1)] for k, v in state["term_sums"].items()}
        self.seen, self.skipped = int(state["seen"]), int(state["skipped"])
