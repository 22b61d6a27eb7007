"""What each ``vaerepair`` command does, given its parsed arguments (the parser is in :mod:`vaerepair.cli`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vaerepair import corruptions as corr
from vaerepair.data import DatasetNotFoundError, ImageDataset, fetch, locate, train_val_split
from vaerepair.data import load_dataset as load
from vaerepair.models import LabelCondition, LadderSpec, LadderVAE, LatentVariableModel, ModelSpec, PathModel, build
from vaerepair.objectives import ELBO, FisherDivergence, Objective, Reconstruction
from vaerepair.plots import plot_history, plot_latent_scatter, save_image_rows, save_repair_grid, save_samples_grid
from vaerepair.sweep import SweepResult, beta_sweep, plot_sweep
from vaerepair.training import EarlyStopping, Trainer, load_checkpoint, load_model
from vaerepair.training.history import write_json

__all__ = ["CLIError", "prepare_output_folder", "prepare_output_file", "train_command", "sweep_command",
           "evaluate_command", "fetch_command"]


class CLIError(Exception):
    """An error the CLI reports as one line, without a traceback."""


def prepare_output_folder(path: Path, option: str) -> None:
    """Create ``path`` (a folder) or explain in one line why it cannot be one."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is" if parent == path else f"is under {str(parent)!r}, which is"
            raise CLIError(f"{option} {str(path)!r} {where} a file, not a folder; choose another {option}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create {option} {str(path)!r}: {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {str(path)!r} is not writable; choose another {option}")

def prepare_output_file(path: Path, option: str) -> None:
    """``option FILE``: a file whose folder exists or can be made, not a folder itself (one line otherwise)."""
    if path.is_dir():
        raise CLIError(f"{option} {str(path)!r} is a folder; give a file name such as "
                       f"{str(path / ('out.json' if option == '--out' else 'repaired.png'))!r}")
    if str(path.parent) not in ("", "."):
        prepare_output_folder(path.parent, f"{option}'s folder")


VARIATIONAL = ("vae", "ladder")  # model kinds trained with the ELBO
LADDER_WIDTHS = (32, 32, 32)  # --model ladder's widths per level when --hidden is not given


def hidden_widths(args: argparse.Namespace, default: tuple[int, ...]) -> tuple[int, ...]:
    """``--hidden``, or ``default`` when it was not given (its parser default is the MLP's 400)."""
    return default if tuple(args.hidden) == (400,) else tuple(args.hidden)


def _spec(args: argparse.Namespace, data: ImageDataset) -> ModelSpec | LadderSpec:
    if args.model == "ladder":
        if args.arch != "mlp" or args.condition or args.flows or args.spatial:
            raise CLIError("--model ladder has its own network: drop --arch, --condition, --flows and --spatial")
        return LadderSpec(channels=data.image_shape[0], widths=hidden_widths(args, LADDER_WIDTHS),
                          latent_channels=(args.latent_dim,) * len(hidden_widths(args, LADDER_WIDTHS)),
                          likelihood=args.likelihood, sigma=args.sigma, link=args.link, activation=args.activation,
                          repair_samples=16)  # validation repairs every epoch: 16 samples, not 100
    return ModelSpec(
        kind=args.model, image_shape=data.image_shape, latent_dim=args.latent_dim, arch=args.arch,
        hidden=args.hidden, features=args.features, likelihood=args.likelihood, sigma=args.sigma, link=args.link,
        learn_sigma=args.learn_sigma,
        activation=args.activation, spatial=args.spatial, condition=args.condition,
        n_classes=max(10, int(data.labels.max()) + 1), flows=args.flows, amortized=not args.global_flows,
    )


def _splits(args: argparse.Namespace) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Train, validation and test sets as the training arguments ask."""
    if args.threads:
        torch.set_num_threads(args.threads)
    full = load(args.dataset, "train", root=args.root, download=args.download)
    test = load(args.dataset, "test", root=args.root, download=False)[: args.eval_n]
    if args.limit:
        full = full[: args.limit]
    train, val = train_val_split(full, args.val_fraction, seed=args.seed)
    return train, val, test


def _objective(args: argparse.Namespace) -> Objective:
    if args.objective not in ("elbo", "fisher"):
        raise CLIError(f"--objective {args.objective} trains on noisy images only, from a folder: give --data DIR "
                       "(a dataset such as fashion-mnist is clean; train a dae with --corruption instead)")
    if args.objective == "fisher":
        if args.model != "vae":
            raise CLIError(f"--objective fisher needs --model vae (one latent with a score), got --model {args.model}")
        if args.likelihood != "gaussian":
            raise CLIError(
                f"--objective fisher needs a density in x: use --likelihood gaussian (e.g. --link sigmoid "
                f"--learn-sigma), got --likelihood {args.likelihood}"
            )
        return FisherDivergence()
    return ELBO(beta=args.beta, free_bits=args.free_bits) if args.model in VARIATIONAL else Reconstruction()


def iwae_samples(args: argparse.Namespace, model: Any) -> int | None:
    """``--iwae-k``, or its default: 1000 importance samples for a single-latent VAE, none for a ladder."""
    if args.iwae_k is not None:
        return int(args.iwae_k)
    return None if isinstance(model, LadderVAE) else 1000


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    objective = _objective(args)
    train, val, test = _splits(args)
    torch.manual_seed(args.seed)
    model = build(_spec(args, train))
    corruption = corr.from_spec(args.corruption) if args.model != "ae" else None
    trainer = Trainer(
        model, objective, corruption, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs),
        device=args.device, seed=args.seed, checkpoint_dir=args.out, progress=not args.no_progress,
        early_stopping=EarlyStopping("val_loss", patience=args.patience) if args.patience else None,
        metadata={"dataset": args.dataset, "corruption": args.corruption if corruption else None},
        checkpoint_every=args.checkpoint_every,
    )
    print(f"training {args.arch} {args.model} (latent {args.latent_dim}) on {args.dataset} "
          f"({len(train)} train / {len(val)} val), corruption {args.corruption if corruption else 'none'}, "
          f"{args.epochs} epochs on {trainer.device}" + (f", resuming {args.resume}" if args.resume else ""),
          flush=True)
    history = trainer.fit(train, val, resume=args.resume)
    # Report on the best epoch's weights, which best.pt holds.
    model.load_state_dict(load_checkpoint(args.out / "best.pt", map_location=trainer.device)["model"])
    test_corruption = corruption or corr.from_spec(args.corruption)
    result = trainer.evaluate(test, corruption=test_corruption, seed=args.seed + 100,
                              iwae_k=iwae_samples(args, model))
    _write_grid(args.out / "grid.png", test, test_corruption, model, trainer.device, args.seed)
    plot_history(history, args.out / "loss.png", title=f"{args.model} on {args.dataset}, {args.corruption}")
    pictures = "grid.png, loss.png"
    if isinstance(model, LadderVAE):
        _write_uncertainty(args.out / "uncertainty.png", model, test, test_corruption, trainer.device, args.seed)
        size = (int(test.image_shape[1]), int(test.image_shape[2]))
        generator = torch.Generator(trainer.device).manual_seed(args.seed)
        save_image_rows(args.out / "samples.png",  # 32 prior samples, 8 per row
                        {f"samples {8 * i + 1}-{8 * i + 8}": model.sample(8, size=size, generator=generator)
                         for i in range(4)})
        pictures += ", uncertainty.png, samples.png"
    elif model.prior is not None:
        _write_samples(args.out / "samples.png", model, test, test_corruption, trainer.device, args.seed)
        images = test.float_images().to(trainer.device)
        condition = (_conditions(model, test, test_corruption, trainer.device, args.seed)[1]
                     if model.condition is not None else None)
        plot_latent_scatter(args.out / "latent.png", model, images, test.labels,
                            title=f"{args.dataset} test images, latent means", condition=condition)
        pictures += ", samples.png, latent.png"
    metrics = {
        "config": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                   for k, v in vars(args).items()},
        "test": {"n": int(result.pop("n")), "corruption": args.corruption, **result},
        "best_epoch": history.best_epoch,
        "seconds": time.perf_counter() - t_start,
        "history": history.to_dict(),
    }
    write_json(args.out / "metrics.json", metrics)
    _print_table(args.dataset, len(test), args.corruption, result)
    print(f"wrote {args.out}/best.pt, last.pt, metrics.json, {pictures} ({metrics['seconds']:.0f} s)")
    return metrics


def _conditions(
    model: PathModel, data: ImageDataset, corruption: corr.Corruption, device: torch.device, seed: int,
) -> tuple[corr.Corrupted, torch.Tensor | None]:
    """One corruption of ``data`` (with its mask) and, for a conditional model, the conditions it gives."""
    clean = data.float_images().to(device)
    out = corruption.to(device)(clean, generator=torch.Generator(device).manual_seed(seed), return_mask=True)
    if model.condition is None:
        return out, None
    return out, model.condition.prepare(out.images, out.mask, data.labels.to(device))


def _write_grid(
    path: Path, test: ImageDataset, corruption: corr.Corruption, model: PathModel,
    device: torch.device, seed: int, n: int = 8,
) -> None:
    """The clean / corrupted / repaired grid of the first ``n`` test images."""
    first = test[:n]
    corrupted, condition = _conditions(model, first, corruption, device, seed)
    save_repair_grid(path, first.float_images(), corrupted.images, model.repair(corrupted.images, condition))


def _write_samples(
    path: Path, model: LatentVariableModel, test: ImageDataset, corruption: corr.Corruption,
    device: torch.device, seed: int,
) -> None:
    """Prior samples: 64 of them; per class (one row each) for a label condition; for an image
    condition, three completions drawn from the prior for each of 8 incomplete test images."""
    generator = torch.Generator(device).manual_seed(0)
    if model.condition is None:
        save_samples_grid(path, model, generator=generator)
    elif isinstance(model.condition, LabelCondition):
        classes = torch.arange(model.condition.n_classes, device=device).repeat_interleave(8)
        save_samples_grid(path, model, n=len(classes), generator=generator, condition=model.condition(classes))
    else:
        first = test[:8]
        corrupted, condition = _conditions(model, first, corruption, device, seed)
        assert condition is not None
        rows = {"clean": first.float_images(), "corrupted": corrupted.images}
        for i in range(3):
            rows[f"completion {i + 1}"] = model.sample(len(first), condition=condition, generator=generator)
        save_image_rows(path, rows)


def _write_uncertainty(path: Path, model: LadderVAE, test: ImageDataset, corruption: corr.Corruption,
                       device: torch.device, seed: int) -> None:
    """Eight test images: clean, corrupted, the repair (the mean of 64 posterior samples) and their std (x4)."""
    clean = test[:8].float_images().to(device)
    corrupted = corruption.to(device)(clean, generator=torch.Generator(device).manual_seed(seed))
    mean, std = model.repair(corrupted, n_samples=64, return_std=True,
                             generator=torch.Generator(device).manual_seed(seed))
    save_image_rows(path, {"clean": clean, "corrupted": corrupted.clamp(0, 1), "repair (mean of 64)": mean,
                           "posterior std (x4)": (4 * std).clamp(0, 1)})


def _print_table(dataset: str, n: int, corruption: str, r: dict[str, float]) -> None:
    print(f"\n{dataset} test images (first {n}), corruption {corruption}")
    print(f"{'':12}{'PSNR (dB)':>12}{'SSIM':>10}")
    print(f"{'corrupted':12}{r['psnr_input']:12.2f}{r['ssim_input']:10.3f}")
    print(f"{'repaired':12}{r['psnr']:12.2f}{r['ssim']:10.3f}")
    if "psnr_missing" in r:
        print(f"missing region only: PSNR {r['psnr_missing_input']:.2f} dB corrupted, "
              f"{r['psnr_missing']:.2f} dB repaired")
    if "nll_iwae" in r:
        print(f"clean images: negative ELBO {r['neg_elbo']:.2f} nats, IWAE -log p(x) {r['nll_iwae']:.2f} nats")


def sweep_command(args: argparse.Namespace) -> SweepResult:
    if args.model != "vae":
        raise CLIError(f"a beta sweep trains VAEs; --model must be vae, got {args.model!r}")
    if args.objective != "elbo":
        raise CLIError("a beta sweep trains beta-VAEs with the ELBO; drop --objective fisher")
    if args.resume is not None:
        raise CLIError("--resume continues one training run; a sweep trains one model per beta")
    t_start = time.perf_counter()
    train, val, _ = _splits(args)
    spec = _spec(args, train)

    def make_model() -> PathModel:
        torch.manual_seed(args.seed)  # every beta starts from the same weights
        return build(spec)

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
                                         "config": {k: (str(v) if isinstance(v, Path) else v)
                                                    for k, v in vars(args).items()}})
    plot_sweep(result, args.out / "sweep.png", title=f"beta sweep on {args.dataset}, {args.corruption}")
    print("\n" + result.table())
    print(f"\nbest beta: {result.best['beta']:g} (by validation {args.select}); "
          f"wrote {args.out}/sweep.csv, sweep.md, sweep.json, sweep.png ({time.perf_counter() - t_start:.0f} s)")
    return result


def evaluate_command(args: argparse.Namespace) -> dict[str, Any]:
    ckpt = load_checkpoint(args.checkpoint)
    meta = ckpt.get("metadata") or {}
    dataset = args.dataset or meta.get("dataset")
    spec_text = args.corruption or meta.get("corruption")
    if dataset is None:
        raise CLIError("the checkpoint does not record its dataset; pass --dataset")
    if spec_text is None:
        raise CLIError("the checkpoint does not record a corruption; pass --corruption (e.g. gaussian:0.5)")
    model = load_model(args.checkpoint)
    test = load(dataset, args.split, root=args.root)[: args.n]
    corruption = corr.from_spec(spec_text)
    objective = ELBO() if (model.spec or {}).get("kind") in VARIATIONAL else Reconstruction()
    if args.samples is not None:
        model.repair_samples = args.samples
    trainer = Trainer(model, objective, corruption, device=args.device, progress=False, seed=args.seed)
    result = trainer.evaluate(test, seed=args.seed + 100, iwae_k=iwae_samples(args, model))
    _print_table(dataset, len(test), spec_text, result)
    if args.grid:
        _write_grid(args.grid, test, corruption, model, trainer.device, args.seed)
    if args.out:
        write_json(args.out, {"checkpoint": str(args.checkpoint), "dataset": dataset, "corruption": spec_text,
                              **result})
    return result


def fetch_command(args: argparse.Namespace) -> int:
    if args.check:
        try:
            print(locate(args.dataset, args.root))
            return 0
        except DatasetNotFoundError as err:
            print(err, file=sys.stderr)
            return 1
    print(fetch(args.dataset, args.root))
    return 0


