"""β sweeps (report 000): train one β-VAE per β with the same data, budget and seed; pick β on validation.

Report 000 picks β "by validation loss". The β-weighted loss
``recon + β·KL`` is not comparable across β (a larger β adds more KL), so the
default criterion here is the validation negative ELBO ``recon + KL``, the
same bound for every model; ``select="loss"`` reproduces the report's rule and
``select="psnr"`` picks the best repairs.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vaerepair.corruptions import Corruption
from vaerepair.data import ImageDataset
from vaerepair.objectives import ELBO
from vaerepair.training import Trainer

__all__ = ["SweepResult", "beta_sweep", "beta_range", "plot_sweep", "SELECT_METRICS"]

# criterion -> (history key, sign): the best model minimises sign * value
SELECT_METRICS: dict[str, tuple[str, float]] = {"neg_elbo": ("val_neg_elbo", 1.0), "loss": ("val_loss", 1.0),
                                                 "psnr": ("val_psnr", -1.0)}
_COLUMNS = ("beta", "val_neg_elbo", "val_loss", "val_recon", "val_kl", "val_psnr", "val_ssim", "best_epoch",
            "seconds")


MAX_BETAS = 1000  # a sweep trains one model per beta


def beta_range(text: str) -> list[float]:
    """Parse ``"2:6:0.25"`` (start:stop:step, stop included) or ``"1,4,8"`` into a list of β values.

    Example:
        >>> beta_range("2:3:0.25")
        [2.0, 2.25, 2.5, 2.75, 3.0]
    """
    try:
        if ":" in text:
            start, stop, step = (float(t) for t in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            wanted = (stop - start) / step + 1e-9 + 1
            if not math.isfinite(wanted) or wanted > MAX_BETAS:
                raise OverflowError(f"{text!r} asks for {wanted:.3g} betas, more than {MAX_BETAS}; use a larger step")
            count = int(math.floor(wanted))
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(t) for t in text.split(",")]
    except OverflowError as err:
        raise ValueError(str(err)) from None
    except ValueError:
        raise ValueError(
            f"expected betas as start:stop:step (e.g. 2:6:0.25) or a list (e.g. 1,4,8), got {text!r}"
        ) from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"betas must be finite and >= 0, got {values}")
    return values


@dataclass
class SweepResult:
    """One row per β: validation metrics at that model's best epoch (by the selection criterion).

    Attributes:
        rows: dicts with the keys ``beta``, ``val_neg_elbo``, ``val_loss``,
            ``val_recon``, ``val_kl``, ``val_psnr``, ``val_ssim``, ``best_epoch``, ``seconds``.
        select: the criterion (a key of :data:`SELECT_METRICS`).
        histories: each model's history as plain values, in the order of ``rows``.
    """

    rows: list[dict[str, float]]
    select: str = "neg_elbo"
    histories: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> dict[str, float]:
        """The row of the selected β."""
        key, sign = SELECT_METRICS[self.select]
        return min(self.rows, key=lambda r: sign * r[key])

    def table(self) -> str:
        """A Markdown table of the rows, the selected β marked with ``*``."""
        best = self.best["beta"]
        lines = ["| β | val −ELBO | val loss (β-weighted) | val recon | val KL | val PSNR | val SSIM |",
                 "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            mark = " *" if r["beta"] == best else ""
            lines.append(f"| {r['beta']:g}{mark} | {r['val_neg_elbo']:.2f} | {r['val_loss']:.2f} | "
                         f"{r['val_recon']:.2f} | {r['val_kl']:.2f} | {r['val_psnr']:.2f} | {r['val_ssim']:.3f} |")
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the rows as CSV."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(_COLUMNS))
            writer.writeheader()
            writer.writerows({k: r[k] for k in _COLUMNS} for r in self.rows)
        return path


def beta_sweep(
    betas: Sequence[float],
    make_model: Callable[[], nn.Module],
    train: ImageDataset | Tensor,
    val: ImageDataset | Tensor,
    corruption: Corruption | None,
    select: str = "neg_elbo",
    on_result: Callable[[dict[str, float]], None] | None = None,
    **trainer_options: Any,
) -> SweepResult:
    """Train ``make_model()`` with ``ELBO(beta)`` for each β and collect validation metrics.

    Every model gets the same data, corruption, budget and seed (pass them in
    ``trainer_options``: ``epochs``, ``batch_size``, ``lr``, ``seed``,
    ``device``...); ``make_model`` should seed its own initialisation (e.g.
    ``torch.manual_seed`` inside) so the models differ only by β.

    Args:
        betas: the β values.
        make_model: builds a fresh VAE.
        train: training images.
        val: validation images.
        corruption: the training (and validation) corruption.
        select: ``"neg_elbo"`` (default), ``"loss"`` or ``"psnr"``.
        on_result: called with each row as soon as it is measured (progress).
        **trainer_options: passed to :class:`~vaerepair.Trainer`.
    """
    if select not in SELECT_METRICS:
        raise ValueError(f"select must be one of {', '.join(SELECT_METRICS)}, got {select!r}")
    if not betas:
        raise ValueError("betas is empty")
    key, sign = SELECT_METRICS[select]
    rows, histories = [], []
    for beta in betas:
        trainer = Trainer(make_model(), ELBO(beta=beta), corruption, **trainer_options)
        history = trainer.fit(train, val)
        records = [{**r, "val_neg_elbo": -r["val_elbo"]} for r in history]
        best = min(records, key=lambda r: sign * r[key])
        row = {"beta": float(beta), **{k: float(best[k]) for k in _COLUMNS if k.startswith("val_")},
               "best_epoch": float(best["epoch"]), "seconds": float(sum(r["seconds"] for r in history))}
        rows.append(row)
        histories.append(history.to_dict())
        if on_result is not None:
            on_result(row)
    return SweepResult(rows, select, histories)


def plot_sweep(result: SweepResult, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write a PNG: validation −ELBO and β-weighted loss against β, and validation PSNR, the selected β marked."""
    from vaerepair.plots import _pyplot, _save_figure

    plt = _pyplot()
    betas = [r["beta"] for r in result.rows]
    best = result.best["beta"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(betas, [r["val_neg_elbo"] for r in result.rows], marker="o", label="−ELBO (recon + KL)")
    ax1.plot(betas, [r["val_loss"] for r in result.rows], marker="s", label="β-weighted loss")
    ax1.set_ylabel("validation nats per image")
    ax2.plot(betas, [r["val_psnr"] for r in result.rows], marker="o", color="tab:green")
    ax2.set_ylabel("validation PSNR of repairs (dB)")
    for ax in (ax1, ax2):
        ax.axvline(best, color="grey", linestyle="--", label=f"selected β = {best:g} ({result.select})")
        ax.set_xlabel("β")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save_figure(plt, fig, path)
