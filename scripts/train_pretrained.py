"""Train the blind Gaussian denoisers shipped in ``vaerepair/weights/`` (the script behind every shipped file).

    python scripts/train_pretrained.py grey    # Train400 (400 grey 180x180), sigma ~ U(0, 55/255)
    python scripts/train_pretrained.py colour  # LIVE1 (29 RGB photos), sigma ~ U(0, 55/255)

Each model is the U-Net photo denoiser (``arch="unet"``, widths 32/64/128,
a 32-channel spatial point-mass code, Gaussian likelihood: the loss is the
squared error) trained by the library's own Trainer on random 48x48 patches
with the 8 flips/rotations, Adam with a cosine learning-rate decay and an EMA of
the weights. A few whole images are held out for validation (the Set12 test
images are never seen). The EMA weights of the best validation epoch are
exported as a weights-only vaerepair checkpoint to
``src/vaerepair/weights/<name>.pt``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

import vaerepair as vr
from vaerepair.cli.train import centre_crop
from vaerepair.data import ImageFolder, train_val_split
from vaerepair.training import PatchSource
from vaerepair.training.callbacks import EMA, LRSchedule
from vaerepair.training.checkpoint import load_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
SETS = {"grey": ("train400", "L", 20), "colour": ("live1", "RGB", 3)}


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder, mode, n_val = SETS[args.name]
    photos = ImageFolder(args.data / folder, mode=mode)
    train, val = train_val_split(photos, val_fraction=n_val / len(photos), seed=0)
    channels = 1 if mode == "L" else 3
    model = vr.models.build(vr.models.ModelSpec(kind="dae", image_shape=(channels, None, None), arch="unet",
                                                hidden=(32, 64, 128), latent_dim=32, likelihood="gaussian"))
    steps = args.epochs * math.ceil(args.patches_per_epoch / args.batch_size)
    trainer = vr.Trainer(
        model, vr.objectives.Reconstruction(), vr.corruptions.GaussianNoise((0.0, 55 / 255)),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device="cpu", seed=0,
        checkpoint_dir=args.out / args.name, monitor="val_psnr", eval_batch_size=8,
        callbacks=[EMA(0.999), LRSchedule(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, steps, eta_min=args.lr / 100), interval="step")],
        metadata={"trained_on": folder, "sigma_range_255": [0, 55]},
    )
    side = min(min(s) for s in val.sizes)
    start = time.perf_counter()
    trainer.fit(PatchSource(list(train), args.patch, patches_per_epoch=args.patches_per_epoch, augment=True),
                val=torch.stack([centre_crop(im, side) for im in val]))
    minutes = (time.perf_counter() - start) / 60
    best = load_model(args.out / args.name / "best.pt", ema=True)
    record = max(trainer.history.records, key=lambda r: r["val_psnr"])
    meta = {"name": args.name, "trained_on": folder, "mode": mode, "sigma_range": [0.0, 55 / 255],
            "patch": args.patch, "epochs": args.epochs, "patches_per_epoch": args.patches_per_epoch,
            "train_minutes": round(minutes, 1), "val_psnr": round(record["val_psnr"], 3),
            "script": "scripts/train_pretrained.py"}
    args.export.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(args.export / f"{args.name}.pt", {"model_spec": best.spec, "model": best.state_dict(),
                                                              "pretrained": meta})
    print(f"{args.name}: {minutes:.1f} min, best val PSNR {record['val_psnr']:.2f} dB -> {path} "
          f"({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
