"""Models, objectives and Trainers built from command-line arguments, in one place whatever the data source
(a dataset such as Fashion-MNIST, or a folder of photographs with ``--data``)."""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch

from vaerepair.cli.common import CLIError
from vaerepair.corruptions import Corruption
from vaerepair.models import (
    LadderSpec,
    LadderVAE,
    LikelihoodSpec,
    ModelSpec,
    PathModel,
    build,
    ladder_vae,
    noise_model_vae,
)
from vaerepair.objectives import ELBO, SURE, BlindSpot, FisherDivergence, Noise2Noise, Objective, Reconstruction
from vaerepair.training import EarlyStopping, Trainer, load_model
from vaerepair.training.callbacks import EMA, LRSchedule
from vaerepair.zoo import pretrained

__all__ = ["VARIATIONAL", "SELF_SUPERVISED", "DEFAULT_WIDTHS", "widths", "build_model", "build_objective",
           "build_trainer", "iwae_samples", "named_model", "noisy_only"]

VARIATIONAL = ("vae", "ladder")  # model kinds trained with the ELBO
SELF_SUPERVISED = ("noise2noise", "blindspot", "sure")  # --objective values that train on noisy images only
# --hidden when it is not given: per model kind and architecture
DEFAULT_WIDTHS = {"ladder": (32, 32, 32), "unet": (32, 64, 128), "mlp": (400,), "conv": (32, 64)}


def widths(args: argparse.Namespace) -> tuple[int, ...]:
    """``--hidden``, or the default of the model kind (a ladder's levels) or architecture."""
    if args.hidden is not None:
        return tuple(args.hidden)
    return DEFAULT_WIDTHS["ladder" if args.kind == "ladder" else args.arch]


def noisy_only(args: argparse.Namespace) -> bool:
    """Whether ``train`` learns from noisy images alone: a self-supervised objective, or a VAE on ``--data``
    (a noise-model VAE)."""
    return args.objective in SELF_SUPERVISED or (args.data is not None and args.kind in VARIATIONAL)


def build_model(args: argparse.Namespace, image_shape: tuple[int, int, int], n_classes: int = 10) -> PathModel:
    """The model ``--kind`` asks for, for images of ``image_shape`` ``(C, H, W)`` (``H = W = 0``: photographs of
    any size, ``--data``)."""
    photos, c, hidden = args.data is not None, image_shape[0], widths(args)
    if args.residual and args.kind not in ("ae", "dae"):
        raise CLIError(f"--residual is a point-mass model's (--kind dae or ae): a {args.kind} decodes its latent")
    if args.kind == "ladder":
        if not photos and (args.arch != "mlp" or args.spatial or args.global_flows):
            raise CLIError("--kind ladder has its own network: drop --arch, --spatial and --global-flows (its --flows "
                           "act on each level's posterior)")
        if args.condition not in (None, "image"):
            raise CLIError(f"--kind ladder takes --condition image (the corrupted image and its mask), not "
                           f"--condition {args.condition}")
        if photos and args.condition:
            raise CLIError("--condition image trains a conditional ladder on (corrupted, clean) pairs of a --dataset; "
                           "a --data folder holds noisy images only: drop --condition")
        if photos:  # noisy images only: the noise model is the likelihood
            return ladder_vae(c, widths=hidden, latent_channels=args.latent_dim,
                              sigma=args.noise_sigma / 255, gain=args.noise_gain, activation=args.activation,
                              flows=args.flows)
        return build(LadderSpec(channels=c, widths=hidden, latent_channels=(args.latent_dim,) * len(hidden),
                                likelihood=LikelihoodSpec(args.likelihood, args.sigma, link=args.link),
                                activation=args.activation, condition=args.condition, flows=args.flows,
                                repair_samples=16))  # validation repairs every epoch: 16 samples, not 100
    if photos and args.kind == "vae":
        return noise_model_vae(args.noise_sigma / 255, channels=c, gain=args.noise_gain,
                               latent_channels=args.latent_dim, widths=hidden, activation=args.activation)
    if photos:
        return build(ModelSpec(kind="dae", image_shape=(c, 0, 0), latent_dim=args.latent_dim, arch="unet",
                               hidden=hidden, likelihood=args.likelihood, sigma=args.sigma, link=args.link,
                               learn_sigma=args.learn_sigma, activation=args.activation, residual=args.residual))
    return build(ModelSpec(
        kind=args.kind, image_shape=image_shape, latent_dim=args.latent_dim, arch=args.arch, hidden=hidden,
        features=args.features, likelihood=args.likelihood, sigma=args.sigma, link=args.link,
        learn_sigma=args.learn_sigma, activation=args.activation, spatial=args.spatial, condition=args.condition,
        n_classes=n_classes, n_flows=args.flows, amortized=not args.global_flows, residual=args.residual,
    ))


def build_objective(args: argparse.Namespace) -> Objective:
    """The objective ``--objective`` and ``--kind`` ask for (checked against the data source)."""
    if args.objective in SELF_SUPERVISED and args.data is None:
        raise CLIError(f"--objective {args.objective} trains on noisy images only, from a folder: give --data DIR "
                       "(a dataset such as fashion-mnist is clean; train a dae with --corruption instead)")
    if args.objective == "fisher":
        if args.data is not None:
            raise CLIError("--objective fisher trains vector-latent VAEs on a --dataset, not photo folders")
        if args.kind != "vae":
            raise CLIError(f"--objective fisher needs --kind vae (one latent with a score), got --kind {args.kind}")
        if args.likelihood != "gaussian":
            raise CLIError(
                f"--objective fisher needs a density in x: use --likelihood gaussian (e.g. --link sigmoid "
                f"--learn-sigma), got --likelihood {args.likelihood}"
            )
        return FisherDivergence()
    if args.objective == "noise2noise":
        return Noise2Noise()
    if args.objective == "sure":
        return SURE(args.noise_sigma / 255)
    if args.objective == "blindspot":
        return BlindSpot(args.blind_spacing, args.blind_replacement)
    return ELBO(beta=args.beta, free_bits=args.free_bits) if args.kind in VARIATIONAL else Reconstruction()


def build_trainer(args: argparse.Namespace, model: PathModel, objective: Objective, corruption: Corruption | None,
                  steps_per_epoch: int | None = None, **options: Any) -> Trainer:
    """The Trainer of ``train``, ``demo`` and ``sweep``: the shared options from ``args``, a cosine learning
    rate over the run (per step with ``steps_per_epoch``: photographs, with an EMA of the weights; per epoch
    otherwise), early stopping with ``--patience``, and ``options`` (metadata, monitor...)."""
    callbacks = list(options.pop("callbacks", []))
    scheduler = None
    if steps_per_epoch is not None:
        steps = args.epochs * steps_per_epoch
        callbacks += [EMA(0.999), LRSchedule(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, steps, eta_min=args.lr / 100), interval="step")]
    else:
        def scheduler(opt: torch.optim.Optimizer) -> Any:
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    return Trainer(
        model, objective, corruption, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        scheduler=scheduler, device=args.device, seed=args.seed, checkpoint_dir=args.out,
        progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
        early_stopping=EarlyStopping("val_loss", patience=args.patience) if args.patience else None,
        callbacks=callbacks, **options,
    )


def photo_steps(args: argparse.Namespace) -> int:
    """Optimizer steps per epoch of patch training."""
    return math.ceil(args.patches_per_epoch / args.batch_size)


def iwae_samples(args: argparse.Namespace, model: Any) -> int | None:
    """``--iwae-k``, or its default: 1000 importance samples for a single-latent VAE, none for a ladder."""
    if args.iwae_k is not None:
        return int(args.iwae_k)
    return None if isinstance(model, LadderVAE) else 1000


def named_model(args: argparse.Namespace) -> PathModel:
    """The model ``--model NAME`` (shipped) or ``--checkpoint FILE`` names (exactly one of them)."""
    if (args.model is None) == (args.checkpoint is None):
        raise CLIError("give exactly one of --model NAME (a shipped model: see `vaerepair models`) and "
                       "--checkpoint FILE")
    if args.model is not None:
        return pretrained(args.model)
    return load_model(args.checkpoint)
