"""``vaerepair sweep``: a beta sweep (report 000): one beta-VAE per beta, beta picked on validation."""

from __future__ import annotations

import argparse
import time

import torch

from vaerepair import corruptions as corr
from vaerepair.cli import arguments as A
from vaerepair.cli import train
from vaerepair.cli.build import build_model
from vaerepair.cli.common import CLIError, config_of
from vaerepair.cli.train import splits
from vaerepair.models import PathModel
from vaerepair.sweep import SELECT_METRICS, SweepResult, beta_range, beta_sweep, plot_sweep
from vaerepair.training.history import write_json

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    train.add_arguments(p, {"out": "runs/sweep", "kind": "vae"})
    p.add_argument("--betas", type=A.betas, default=beta_range("2:6:0.25"),
                   help="start:stop:step (stop included) or a comma-separated list")
    p.add_argument("--select", choices=tuple(SELECT_METRICS), default="neg_elbo",
                   help="neg_elbo: validation recon + KL (comparable across beta); loss: the beta-weighted "
                        "validation loss (report 000's rule, favours small beta); psnr: validation repairs")


def run(args: argparse.Namespace) -> SweepResult:
    """One beta-VAE per beta of ``--betas``, each from the same initial weights; beta picked on validation."""
    if args.kind != "vae":
        raise CLIError(f"a beta sweep trains VAEs; --kind must be vae, got {args.kind!r}")
    if args.objective != "elbo":
        raise CLIError("a beta sweep trains beta-VAEs with the ELBO; drop --objective fisher")
    if args.resume is not None:
        raise CLIError("--resume continues one training run; a sweep trains one model per beta")
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, val, _ = splits(args)
    n_classes = max(10, int(train.labels.max()) + 1)

    def make_model() -> PathModel:
        torch.manual_seed(args.seed)  # every beta starts from the same weights
        return build_model(args, train.image_shape, n_classes)

    corruption = corr.from_spec(args.corruption)
    print(f"beta sweep: {len(args.betas)} {args.arch} VAEs (latent {args.latent_dim}) on {args.dataset} "
          f"({len(train)} train / {len(val)} val), corruption {args.corruption}, {args.epochs} epochs each; "
          f"selecting by validation {args.select}", flush=True)

    def report(row: dict[str, float]) -> None:
        print(f"beta {row['beta']:g}: val -ELBO {row['val_neg_elbo']:.2f}, loss {row['val_loss']:.2f}, "
              f"PSNR {row['val_psnr']:.2f} dB ({row['seconds']:.0f} s)", flush=True)

    options = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed,
                   progress=not args.no_progress)
    result = beta_sweep(args.betas, make_model, train, val, corruption, select=args.select, on_result=report,
                        **options)
    args.out.mkdir(parents=True, exist_ok=True)
    result.write_csv(args.out / "sweep.csv")
    (args.out / "sweep.md").write_text(result.table() + "\n")
    write_json(args.out / "sweep.json", {"select": args.select, "rows": result.rows, "histories": result.histories,
                                         "config": config_of(args)})
    plot_sweep(result, args.out / "sweep.png", title=f"beta sweep on {args.dataset}, {args.corruption}")
    print("\n" + result.table())
    print(f"\nbest beta: {result.best['beta']:g} (by validation {args.select}); "
          f"wrote {args.out}/sweep.csv, sweep.md, sweep.json, sweep.png ({time.perf_counter() - t_start:.0f} s)")
    return result
