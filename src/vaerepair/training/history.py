"""Per-epoch training history: a list of plain-value records."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any

from vaerepair._io import atomic_open, naming_the_file

__all__ = ["History"]


class History:
    """What :meth:`Trainer.fit` records, one dict of floats per epoch.

    Keys: ``epoch``, ``train_loss``, ``train_<term>``, and with validation data
    ``val_loss``, ``val_<term>``, ``val_psnr``, ``val_ssim``, ``val_mse`` (the
    repairs) and ``val_psnr_input``, ``val_ssim_input``, ``val_mse_input`` (the
    corrupted inputs); ``val_psnr_missing`` and ``val_psnr_missing_input`` when
    the corruption leaves some pixels untouched (the PSNR of the pooled squared
    error over the missing pixels); ``worse_than_input = 1.0`` on an epoch whose
    repairs have a larger mean squared error than their inputs (see
    :class:`~vaerepair.training.callbacks.TrainingHealth`); ``skipped_steps``
    with ``nan_policy="skip"``; ``seconds`` and ``lr``, and the objective's
    hyperparameters (``beta``). Each image's PSNR is capped at 100 dB
    (:data:`vaerepair.metrics.PSNR_CAP_DB`): an image the corruption left as it
    was would make a mean over images infinite.

    Example:
        >>> h = History([{"epoch": 1, "val_loss": 3.0}, {"epoch": 2, "val_loss": 2.0}])
        >>> h["val_loss"], h.best("val_loss")["epoch"]
        ([3.0, 2.0], 2)
    """

    def __init__(self, records: list[dict[str, float]] | None = None) -> None:
        self.records: list[dict[str, float]] = [dict(r) for r in records or []]
        self.stopped_early = False
        self.best_epoch: int | None = None

    def append(self, record: dict[str, float]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.records)

    def __getitem__(self, key: str) -> list[float]:
        """The values of one metric over the epochs that recorded it."""
        values = [r[key] for r in self.records if key in r]
        if not values and self.records:
            raise KeyError(f"no metric {key!r} in the history; known: {', '.join(self.keys())}")
        return values

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    @property
    def last(self) -> dict[str, float]:
        if not self.records:
            raise IndexError("the history is empty")
        return self.records[-1]

    def best(self, monitor: str, mode: str = "min") -> dict[str, float]:
        """The record with the best finite value of ``monitor``."""
        candidates = [r for r in self.records if monitor in r and math.isfinite(r[monitor])]
        if not candidates:
            raise KeyError(f"no finite values of {monitor!r} in the history; known: {', '.join(self.keys())}")
        pick = min if mode == "min" else max
        return pick(candidates, key=lambda r: r[monitor])

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "stopped_early": self.stopped_early, "best_epoch": self.best_epoch}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        h = cls(d.get("records", []))
        h.stopped_early = bool(d.get("stopped_early", False))
        h.best_epoch = d.get("best_epoch")
        return h

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the history as JSON (atomically)."""
        write_json(path, self.to_dict())

    def __repr__(self) -> str:
        return f"History(epochs={len(self)}, keys={self.keys()})"


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to ``path`` atomically (temp file in the same folder, then rename)."""
    with naming_the_file(path), atomic_open(path, "w") as f:
        json.dump(data, f, indent=2, allow_nan=True)
        f.write("\n")
