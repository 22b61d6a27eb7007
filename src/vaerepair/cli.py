"""Command line: ``vaerepair train | sweep | evaluate | denoise | demo | fetch``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vaerepair import corruptions as corr
from vaerepair.data import DATASETS, DatasetNotFoundError, ImageDataset, fetch, load, locate, train_val_split
from vaerepair.models import CONDITION_KINDS, LabelCondition, LatentVariableModel, ModelSpec, build
from vaerepair.models.factory import ACTIVATIONS
from vaerepair.objectives import ELBO, FisherDivergence, Objective, Reconstruction
from vaerepair.plots import plot_history, plot_latent_scatter, save_image_rows, save_repair_grid, save_samples_grid
from vaerepair.sweep import SELECT_METRICS, SweepResult, beta_range, beta_sweep, plot_sweep
from vaerepair.training import (
    CheckpointError,
    EarlyStopping,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
    load_model,
)
from vaerepair.training.history import write_json

__all__ = ["main", "build_parser"]

# The demo's defaults: chosen by measurement on 2 CPU cores (an MLP gets through more
# epochs in the budget than the conv net, and SiLU beat ReLU at equal time).
DEMO = {
    "dataset": "fashion-mnist",
    "corruption": "gaussian:0.5",
    "arch": "mlp",
    "latent_dim": 64,
    "hidden": "1024,512",
    "activation": "silu",
    "likelihood": "gaussian",
    "sigma": 0.1,
    "link": "sigmoid",
    "epochs": 22,
    "batch_size": 128,
    "lr": 2e-3,
    "out": "runs/demo",
}


class CLIError(Exception):
    """An error the CLI reports as one line, without a traceback."""


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 400 or 32,64, got {text!r}") from None


def _corruption(text: str) -> str:
    try:
        corr.from_spec(text)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _betas(text: str) -> list[float]:
    try:
        return beta_range(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _dataset(text: str) -> str:
    key = text.strip().lower()
    if key not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; known: {', '.join(DATASETS)}")
    return key


def _add_training_args(p: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    p.add_argument("--dataset", type=_dataset, default=defaults.get("dataset", "fashion-mnist"),
                   help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--root", default=None,
                   help="dataset root in torchvision's layout (None: search $VAEREPAIR_DATA, the cache, system places)")
    p.add_argument("--download", action="store_true", help="fetch the dataset with torchvision if missing")
    p.add_argument("--model", choices=("dae", "ae", "vae"), default="dae",
                   help="dae: autoencoder trained on corrupted inputs; ae: plain autoencoder (no corruption); "
                        "vae: variational autoencoder trained with the (beta-)ELBO on corrupted inputs")
    p.add_argument("--beta", type=float, default=1.0, help="vae: the KL weight (beta > 1: beta-VAE)")
    p.add_argument("--objective", choices=("elbo", "fisher"), default="elbo",
                   help="vae: the (beta-)ELBO, or the Fisher autoencoder loss (needs --likelihood gaussian)")
    p.add_argument("--flows", type=int, default=0,
                   help="vae: K planar-flow layers after the Gaussian posterior (report 003)")
    p.add_argument("--global-flows", action="store_true",
                   help="with --flows: layers shared by all images (default: amortised, one set per image)")
    p.add_argument("--condition", choices=CONDITION_KINDS, default=None,
                   help="a conditional model: on the class label (one-hot) or on the corrupted image and its mask "
                        "(inpainting, report 002); encoder and decoder both see it")
    p.add_argument("--arch", choices=("mlp", "conv"), default=defaults.get("arch", "mlp"))
    p.add_argument("--latent-dim", type=int, default=defaults.get("latent_dim", 20))
    p.add_argument("--hidden", type=_widths, default=_widths(defaults.get("hidden", "400")),
                   help="MLP hidden widths or the two conv stages' widths, comma-separated")
    p.add_argument("--features", type=int, default=defaults.get("features", 256), help="conv encoder feature size")
    p.add_argument("--spatial", action="store_true",
                   help="conv only: fully convolutional, the latent is a H/4 x W/4 map (latent-dim a multiple of it)")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default=defaults.get("activation", "relu"))
    p.add_argument("--likelihood", choices=("bernoulli", "continuous-bernoulli", "gaussian"),
                   default=defaults.get("likelihood", "bernoulli"))
    p.add_argument("--sigma", type=float, default=defaults.get("sigma", 1.0), help="Gaussian likelihood scale")
    p.add_argument("--link", choices=("identity", "sigmoid"), default=defaults.get("link", "identity"))
    p.add_argument("--learn-sigma", action="store_true", help="learn the Gaussian likelihood's scale (from --sigma)")
    p.add_argument("--corruption", type=_corruption, default=defaults.get("corruption", "gaussian:0.5"),
                   help=f"e.g. gaussian:0.5, block:12, mask:0.5; known: {', '.join(corr.SPEC_NAMES)}")
    p.add_argument("--epochs", type=int, default=defaults.get("epochs", 10))
    p.add_argument("--batch-size", type=int, default=defaults.get("batch_size", 128))
    p.add_argument("--lr", type=float, default=defaults.get("lr", 1e-3))
    p.add_argument("--patience", type=int, default=None, help="early stopping on val_loss after N epochs")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--eval-n", type=int, default=1000, help="evaluate on the first N test images")
    p.add_argument("--iwae-k", type=int, default=1000, help="vae: importance samples for the -log p(x) estimate")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=Path, default=Path(defaults.get("out", "runs/train")))
    p.add_argument("--resume", type=Path, default=None,
                   help="continue an interrupted run exactly from its last.pt (give the same arguments)")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="also write last.pt every N steps (mid-epoch), so a crash loses at most N steps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaerepair", description="Repair damaged images with autoencoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    p = command("train", help="train a model; writes checkpoints, metrics.json, grid.png, loss.png")
    _add_training_args(p, {})

    p = command("demo", help="a short denoising run on Fashion-MNIST with a before/after table")
    _add_training_args(p, DEMO)

    p = command("sweep", help="beta sweep (report 000): one beta-VAE per beta, pick beta on validation")
    _add_training_args(p, {"out": "runs/sweep"})
    p.set_defaults(model="vae")
    p.add_argument("--betas", type=_betas, default=beta_range("2:6:0.25"),
                   help="start:stop:step (stop included) or a comma-separated list")
    p.add_argument("--select", choices=tuple(SELECT_METRICS), default="neg_elbo",
                   help="neg_elbo: validation recon + KL (comparable across beta); loss: the beta-weighted "
                        "validation loss (report 000's rule, favours small beta); psnr: validation repairs")

    p = command("evaluate", help="PSNR/SSIM and loss of a checkpoint on test images")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--dataset", type=_dataset, default=None, help="default: the one it was trained on")
    p.add_argument("--root", default=None)
    p.add_argument("--corruption", type=_corruption, default=None, help="default: the one it was trained with")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--n", type=int, default=1000, help="the first N images of the split")
    p.add_argument("--iwae-k", type=int, default=1000, help="vae: importance samples for the -log p(x) estimate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="write the metrics as JSON here")
    p.add_argument("--grid", type=Path, default=None, help="write a clean/corrupted/repaired grid PNG here")

    p = command("denoise", help="repair your own image files with a trained checkpoint")
    p.add_argument("inputs", nargs="+", type=Path, help="PNG or JPEG files")
    p.add_argument("--checkpoint", "-c", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file (one input) or folder (several inputs)")
    p.add_argument("--resize", action="store_true",
                   help="resize inputs to the model's size and the result back to the input's size")

    p = command("fetch", help="make a dataset available (Debian files or torchvision's download)")
    p.add_argument("dataset", type=_dataset)
    p.add_argument("--root", default=None)
    p.add_argument("--check", action="store_true", help="only check; exit 1 when missing")
    return parser


# ----------------------------------------------------------------- commands


def _spec(args: argparse.Namespace, data: ImageDataset) -> ModelSpec:
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
    if args.objective == "fisher":
        if args.model != "vae":
            raise CLIError(f"--objective fisher needs --model vae (a posterior with a score), got --model {args.model}")
        if args.likelihood != "gaussian":
            raise CLIError(
                f"--objective fisher needs a density in x: use --likelihood gaussian (e.g. --link sigmoid "
                f"--learn-sigma), got --likelihood {args.likelihood}"
            )
        return FisherDivergence()
    return ELBO(beta=args.beta) if args.model == "vae" else Reconstruction()


def _train(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    train, val, test = _splits(args)
    torch.manual_seed(args.seed)
    model = build(_spec(args, train))
    corruption = corr.from_spec(args.corruption) if args.model != "ae" else None
    objective = _objective(args)
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
    result = trainer.evaluate(test, corruption=test_corruption, seed=args.seed + 100, iwae_k=args.iwae_k)
    _write_grid(args.out / "grid.png", test, test_corruption, model, trainer.device, args.seed)
    plot_history(history, args.out / "loss.png", title=f"{args.model} on {args.dataset}, {args.corruption}")
    pictures = "grid.png, loss.png"
    if model.prior is not None:
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
    model: LatentVariableModel, data: ImageDataset, corruption: corr.Corruption, device: torch.device, seed: int,
) -> tuple[corr.Corrupted, torch.Tensor | None]:
    """One corruption of ``data`` (with its mask) and, for a conditional model, the conditions it gives."""
    clean = data.float_images().to(device)
    out = corruption.to(device)(clean, generator=torch.Generator(device).manual_seed(seed), return_mask=True)
    if model.condition is None:
        return out, None
    return out, model.condition.prepare(out.images, out.mask, data.labels.to(device))


def _write_grid(
    path: Path, test: ImageDataset, corruption: corr.Corruption, model: LatentVariableModel,
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


def _sweep(args: argparse.Namespace) -> SweepResult:
    if args.model != "vae":
        raise CLIError(f"a beta sweep trains VAEs; --model must be vae, got {args.model!r}")
    if args.objective != "elbo":
        raise CLIError("a beta sweep trains beta-VAEs with the ELBO; drop --objective fisher")
    if args.resume is not None:
        raise CLIError("--resume continues one training run; a sweep trains one model per beta")
    t_start = time.perf_counter()
    train, val, _ = _splits(args)
    spec = _spec(args, train)

    def make_model() -> LatentVariableModel:
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


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
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
    objective = ELBO() if (model.spec or {}).get("kind") == "vae" else Reconstruction()
    trainer = Trainer(model, objective, corruption, device=args.device, progress=False, seed=args.seed)
    result = trainer.evaluate(test, seed=args.seed + 100, iwae_k=args.iwae_k)
    _print_table(dataset, len(test), spec_text, result)
    if args.grid:
        _write_grid(args.grid, test, corruption, model, trainer.device, args.seed)
    if args.out:
        write_json(args.out, {"checkpoint": str(args.checkpoint), "dataset": dataset, "corruption": spec_text,
                              **result})
    return result


def _denoise(args: argparse.Namespace) -> None:
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF
    from torchvision.utils import save_image

    model = load_model(args.checkpoint)
    if model.condition is not None:
        raise CLIError(
            f"{str(args.checkpoint)!r} holds a conditional model ({type(model.condition).__name__}), which needs "
            "a label or a mask per image; repair with the Python API: model.repair(x, model.condition.prepare(...))"
        )
    c, h, w = model.image_shape
    if len(args.inputs) > 1:
        args.output.mkdir(parents=True, exist_ok=True)
    for path in args.inputs:
        if not path.is_file():
            raise CLIError(f"input image {str(path)!r} does not exist")
        try:
            with Image.open(path) as pil:
                img = TF.pil_to_tensor(pil.convert("L" if c == 1 else "RGB"))  # (C, H, W) uint8
        except (UnidentifiedImageError, OSError) as err:
            raise CLIError(f"cannot read {str(path)!r} as an image (PNG, JPEG, ... expected): {err}") from err
        size = tuple(img.shape[-2:])
        if size != (h, w):
            if not args.resize:
                raise CLIError(
                    f"{str(path)!r} is {size[0]}x{size[1]} pixels but the model takes {h}x{w} "
                    f"({'grey' if c == 1 else 'RGB'}) images; pass --resize to scale it, or crop it to {h}x{w}"
                )
            img = TF.resize(img, [h, w], antialias=True)
        repaired = model.repair(img.unsqueeze(0).float() / 255.0)[0].clamp(0, 1)
        if size != (h, w):
            repaired = TF.resize(repaired, list(size), antialias=True).clamp(0, 1)
        out = args.output if len(args.inputs) == 1 else args.output / f"{path.stem}_repaired.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(repaired, out)
        print(f"{path} -> {out}")


def _fetch(args: argparse.Namespace) -> int:
    if args.check:
        try:
            print(locate(args.dataset, args.root))
            return 0
        except DatasetNotFoundError as err:
            print(err, file=sys.stderr)
            return 1
    print(fetch(args.dataset, args.root))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vaerepair`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "demo"):
            _train(args)
        elif args.command == "sweep":
            _sweep(args)
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "denoise":
            _denoise(args)
        elif args.command == "fetch":
            return _fetch(args)
    except (CLIError, DatasetNotFoundError, CheckpointError, ValueError, TypeError) as err:
        print(f"vaerepair {args.command}: error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        print(f"vaerepair {args.command}: {err}", file=sys.stderr)
        return 130
    return 0
