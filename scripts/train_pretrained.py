"""Train the blind Gaussian denoisers shipped in ``vaerepair/weights/`` (the script behind every shipped file).

    python scripts/train_pretrained.py grey    # Train400 (400 grey 180x180), sigma ~ U(0, 55/255)
    python scripts/train_pretrained.py colour  # LIVE1 (29 RGB photos), sigma ~ U(0, 55/255)

    # the shipped grey model's second stage: from its first stage's weights, bf16 autocast, 90 epochs of 16 000
    python scripts/train_pretrained.py grey --init src/vaerepair/weights/grey.pt --precision bf16 \
        --epochs 90 --patches-per-epoch 16000 --lr 5e-4 --out runs/pretrained_stage2
    python scripts/train_pretrained.py grey ... --resume    # continue it from its last.pt, exactly
    # the shipped grey model's third stage: half of the patches' noise from sigma 10-30, the rest from 0-55
    python scripts/train_pretrained.py grey --init src/vaerepair/weights/grey.pt --precision bf16 \
        --epochs 20 --patches-per-epoch 16000 --lr 2e-4 --sigma-focus 10 30 --out runs/focus
    # the non-blind grey model (the noise level joins the input as a map), from the blind model's weights
    python scripts/train_pretrained.py grey-sigma --init src/vaerepair/weights/grey.pt --precision bf16 \
        --epochs 16 --patches-per-epoch 16000 --lr 3e-4 --sigma-focus 10 30 --threads 1 --out runs/sigma
    python scripts/train_pretrained.py grey --curve runs/pretrained_stage2/grey/last.pt \
        --curve-start 29.14 29.47   # its learning curve, from the first stage's validation and Set12 PSNRs

Each model is the U-Net photo denoiser (``arch="unet"``, widths 32/64/128,
a 32-channel spatial point-mass code, Gaussian likelihood: the loss is the
squared error) trained by the library's own Trainer on random 48x48 patches
with the 8 flips/rotations, Adam with a cosine learning-rate decay and an EMA of
the weights. A few whole images are held out for validation (the Set12 test
images are never seen). The EMA weights of the best validation epoch are
exported as a weights-only vaerepair checkpoint to
``src/vaerepair/weights/<name>.pt``.

Every epoch's record also holds the process's CPU seconds (``cpu_seconds``:
both threads; a paused process does not count) and, for the grey model, the
Set12 PSNR at sigma 25 under the protocol of ``../shared/datasets/README.md``
with the EMA weights (``set12_psnr_25``: observed for the learning curve, never
used to choose a checkpoint). ``--curve`` plots validation and Set12 PSNR
against CPU-hours, counting the training time of the ``--init`` weights.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

import vaerepair as vr
from vaerepair.cli.train import centre_crop
from vaerepair.data import ImageFolder, train_val_split
from vaerepair.protocol import evaluate_protocol
from vaerepair.training import PatchSource
from vaerepair.training.callbacks import EMA, Callback, LRSchedule
from vaerepair.training.checkpoint import load_checkpoint, load_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
SETS = {"grey": ("train400", "L", 20), "grey-sigma": ("train400", "L", 20), "colour": ("live1", "RGB", 3)}
NOISE_LEVEL_INPUT = {"grey-sigma"}  # non-blind: the noise level joins the input as a map (FFDNet)


class CPUTime(Callback):
    """Adds the epoch's process CPU seconds (all threads) to its record."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.start = time.process_time()

    def on_epoch_end(self, trainer: Any, record: dict[str, float]) -> None:
        record["cpu_seconds"] = time.process_time() - self.start


class Set12Curve(Callback):
    """Set12 PSNR at sigma 25 (and 15) under the protocol, with the weights validation measured (the EMA's)."""

    SIGMAS = (25, 15)

    def __init__(self, images: list[torch.Tensor]) -> None:
        self.images, self.psnr = images, {s: float("nan") for s in self.SIGMAS}

    def on_validation_end(self, trainer: Any) -> None:  # called before the EMA swaps its weights back
        for sigma in self.SIGMAS:
            self.psnr[sigma] = float(evaluate_protocol(repair_given(trainer.model, sigma), self.images, sigma)["psnr"])

    def on_epoch_end(self, trainer: Any, record: dict[str, float]) -> None:
        record.update({f"set12_psnr_{s}": v for s, v in self.psnr.items()})


def repair_given(model: Any, sigma: float) -> Any:
    """``model.repair``, told the noise level ``sigma`` (0..255) when the model takes one."""
    if model.condition is None:
        return model.repair
    return lambda x: model.repair(x, model.condition.levels(x, sigma / 255))


def load_widened(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a blind model's weights into a model whose input has the noise-level map as one more channel: the
    weights of that channel start at 0, so the model starts as the blind one and learns what the map adds."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].dim() == 4 and value.dim() == 4 and own[key].shape[1] == value.shape[1] + 1:
            state[key] = torch.cat([value, torch.zeros_like(value[:, :1])], dim=1)
    model.load_state_dict(state)


def training_noise(focus: tuple[float, float] | None) -> vr.corruptions.Corruption:
    """Blind Gaussian noise, sigma ~ U(0, 55/255) per patch; with ``focus`` (0-255 scale), half of the patches
    draw it from U(focus) instead: a mixture that weights the middle of the range, still covering all of it."""
    blind = vr.corruptions.GaussianNoise((0.0, 55 / 255))
    if focus is None:
        return blind
    return vr.corruptions.OneOf([blind, vr.corruptions.GaussianNoise((focus[0] / 255, focus[1] / 255))])


def plot_curve(path: Path, out: Path, start: tuple[float, float] | None = None) -> None:
    """Validation and Set12 PSNR against CPU-hours of the run in ``path`` (a ``last.pt``); ``start``: the
    validation and Set12 PSNRs of its ``--init`` weights, drawn at the CPU-hours they took."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load_checkpoint(path)
    records = data["history"]["records"]
    start_hours = float(data.get("metadata", {}).get("init_cpu_hours", 0.0))
    hours, total = [], start_hours
    for r in records:
        total += r["cpu_seconds"] / 3600
        hours.append(total)
    val, set12 = [r["val_psnr"] for r in records], [r.get("set12_psnr_25") for r in records]
    if start is not None:
        hours, val, set12 = [start_hours, *hours], [start[0], *val], [start[1], *set12]
    at_15 = "set12_psnr_15" in records[0]  # runs that also observed Set12 at sigma 15: a second panel
    fig, axes = plt.subplots(1, 2 if at_15 else 1, figsize=(10 if at_15 else 6, 3.6), squeeze=False)
    ax = axes[0, 0]
    held_out = {"train400": "20 held-out Train400 images", "live1": "3 held-out LIVE1 photos"}.get(
        data.get("metadata", {}).get("trained_on", ""), "held-out images")
    focus = data.get("metadata", {}).get("sigma_focus_255")
    noise = f"sigma 0-55, half of it {focus[0]:g}-{focus[1]:g}" if focus else "sigma 0-55"
    ax.plot(hours, val, marker=".", label=f"validation ({held_out}, {noise})")
    if "set12_psnr_25" in records[0]:
        ax.plot(hours, set12, marker=".", label="Set12, sigma 25 (protocol)")
        ax.axhline(29.97, color="grey", linestyle="--", linewidth=1, label="BM3D, Set12 sigma 25")
    if at_15:
        at15 = axes[0, 1]
        at15.plot(hours[-len(records):], [r["set12_psnr_15"] for r in records], marker=".", color="C2",
                  label="Set12, sigma 15 (protocol)")
        at15.axhline(32.37, color="grey", linestyle="--", linewidth=1, label="BM3D, Set12 sigma 15")
    for panel in axes[0]:
        panel.set_xlabel("CPU-hours (the process's CPU time, all its threads)")
        panel.set_ylabel("PSNR (dB)")
        panel.legend(fontsize=7)
        panel.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    keys = ("epoch", "val_psnr", "set12_psnr_25", "set12_psnr_15", "cpu_seconds", "seconds", "lr")
    out.with_suffix(".json").write_text(json.dumps({
        "run": str(path), "metadata": data.get("metadata", {}), "init_cpu_hours": start_hours,
        "start": [None if math.isnan(v) else v for v in start] if start is not None else None,
        "records": [{k: round(float(r[k]), 4) for k in keys if k in r} for r in records]}, indent=1))
    print(f"{len(records)} epochs, {hours[-1]:.2f} CPU-hours -> {out} (numbers: {out.with_suffix('.json')})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(SETS))
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--patches-per-epoch", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "pretrained")
    parser.add_argument("--export", type=Path, default=ROOT / "src" / "vaerepair" / "weights")
    parser.add_argument("--init", type=Path, default=None, help="start from the weights of this checkpoint")
    parser.add_argument("--precision", choices=["bf16"], default=None, help="autocast the training steps")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/<name>/last.pt")
    parser.add_argument("--curve", type=Path, default=None, help="plot the learning curve of this last.pt and stop")
    parser.add_argument("--curve-out", type=Path, default=ROOT / "docs" / "images" / "grey_learning_curve.png")
    parser.add_argument("--curve-start", type=float, nargs=2, default=None, metavar=("VAL", "SET12"),
                        help="the --init weights' validation and Set12 PSNR, the curve's first point (nan: "
                             "not comparable, e.g. validation under another noise mixture)")
    parser.add_argument("--sigma-focus", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="half of the patches draw sigma from U(LOW, HIGH) (0-255 scale), half from U(0, 55)")
    args = parser.parse_args()
    if args.curve is not None:
        plot_curve(args.curve, args.curve_out, tuple(args.curve_start) if args.curve_start else None)
        return
    torch.set_num_threads(args.threads)
    folder, mode, n_val = SETS[args.name]
    photos = ImageFolder(args.data / folder, mode=mode)
    train, val = train_val_split(photos, val_fraction=n_val / len(photos), seed=0)
    channels = 1 if mode == "L" else 3
    model = vr.models.build(vr.models.ModelSpec(
        kind="dae", image_shape=(channels, None, None), arch="unet", hidden=(32, 64, 128), latent_dim=32,
        likelihood="gaussian", condition="noise_level" if args.name in NOISE_LEVEL_INPUT else None))
    init_meta: dict[str, Any] = {}
    if args.init is not None:
        start = load_checkpoint(args.init)
        load_widened(model, dict(start["model"]))
        init_meta = dict(start.get("pretrained", {}))
    # the first stage's wall minutes at 2 threads, as CPU-hours
    init_cpu_hours = float(init_meta.get("cpu_hours", 2 * init_meta.get("train_minutes", 0.0) / 60))
    steps = args.epochs * math.ceil(args.patches_per_epoch / args.batch_size)
    trainer = vr.Trainer(
        model, vr.objectives.Reconstruction(), training_noise(args.sigma_focus),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device="cpu", seed=0,
        checkpoint_dir=args.out / args.name, monitor="val_psnr", eval_batch_size=8,
        precision=args.precision,
        callbacks=[EMA(0.999), LRSchedule(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, steps, eta_min=args.lr / 100), interval="step"), CPUTime()]
        + ([Set12Curve(list(ImageFolder(args.data / "set12", mode="L")))] if mode == "L" else []),
        metadata={"trained_on": folder, "sigma_range_255": [0, 55], "sigma_focus_255": args.sigma_focus,
                  "init": str(args.init),
                  "init_cpu_hours": init_cpu_hours},
    )
    side = min(min(s) for s in val.sizes)
    start = time.perf_counter()
    trainer.fit(PatchSource(list(train), args.patch, patches_per_epoch=args.patches_per_epoch, augment=True),
                val=torch.stack([centre_crop(im, side) for im in val]),
                resume=args.out / args.name / "last.pt" if args.resume else None)
    minutes = (time.perf_counter() - start) / 60
    best = load_model(args.out / args.name / "best.pt", ema=True)
    record = max(trainer.history.records, key=lambda r: r["val_psnr"])
    cpu_hours = init_cpu_hours + sum(r.get("cpu_seconds", 0.0) for r in trainer.history.records) / 3600
    meta = {"name": args.name, "trained_on": folder, "mode": mode, "sigma_range": [0.0, 55 / 255],
            "patch": args.patch, "epochs": args.epochs, "patches_per_epoch": args.patches_per_epoch,
            "train_minutes": round(minutes, 1), "val_psnr": round(record["val_psnr"], 3),
            "cpu_hours": round(cpu_hours, 2), "init": init_meta or None, "precision": args.precision,
            "sigma_focus": args.sigma_focus,
            "script": "scripts/train_pretrained.py"}
    args.export.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(args.export / f"{args.name}.pt", {"model_spec": best.spec, "model": best.state_dict(),
                                                              "pretrained": meta})
    print(f"{args.name}: {minutes:.1f} min, best val PSNR {record['val_psnr']:.2f} dB -> {path} "
          f"({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
