"""vaerepair: repair damaged images with autoencoders.

Compose encoders and decoders (:mod:`vaerepair.nets`), posteriors and
likelihoods (:mod:`vaerepair.distributions`) into a model
(:mod:`vaerepair.models`), pick an objective (:mod:`vaerepair.objectives`) and a
corruption (:mod:`vaerepair.corruptions`), and train with :class:`Trainer`.
"""

__version__ = "0.1.0"

from vaerepair import (
    corruptions,
    data,
    distributions,
    flows,
    metrics,
    models,
    nets,
    objectives,
    plots,
    tiling,
    training,
)
from vaerepair.corruptions import BlockErasure, GaussianNoise, PixelInversion, RandomMask, SaltAndPepper
from vaerepair.data import ImageDataset, load, train_val_split
from vaerepair.metrics import psnr, ssim
from vaerepair.models import (
    LatentVariableModel,
    autoencoder,
    conditional_vae,
    flow_vae,
    noise_model_vae,
    variational_autoencoder,
)
from vaerepair.objectives import ELBO, FisherDivergence, ObjectiveResult, Reconstruction
from vaerepair.training import Callback, EarlyStopping, History, Trainer, load_checkpoint, load_model
from vaerepair.zoo import PretrainedModel, pretrained

__all__ = [
    "__version__",
    "corruptions",
    "data",
    "distributions",
    "flows",
    "metrics",
    "models",
    "nets",
    "objectives",
    "plots",
    "tiling",
    "training",
    "Trainer",
    "Callback",
    "EarlyStopping",
    "History",
    "load_checkpoint",
    "load_model",
    "pretrained",
    "PretrainedModel",
    "LatentVariableModel",
    "autoencoder",
    "variational_autoencoder",
    "conditional_vae",
    "noise_model_vae",
    "flow_vae",
    "ELBO",
    "FisherDivergence",
    "ObjectiveResult",
    "Reconstruction",
    "ImageDataset",
    "load",
    "train_val_split",
    "psnr",
    "ssim",
    "GaussianNoise",
    "SaltAndPepper",
    "BlockErasure",
    "RandomMask",
    "PixelInversion",
]
