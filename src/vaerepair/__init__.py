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
from vaerepair.memory import keep_freed_memory
from vaerepair.metrics import psnr, ssim
from vaerepair.models import (
    LadderVAE,
    LatentPath,
    LatentVariableModel,
    PathModel,
    autoencoder,
    conditional_vae,
    flow_vae,
    ladder_vae,
    noise_model_vae,
    variational_autoencoder,
)
from vaerepair.noise_level import estimate_noise_sigma
from vaerepair.objectives import ELBO, IWAE, FisherDivergence, ObjectiveResult, Reconstruction, iwae_nll
from vaerepair.training import Callback, EarlyStopping, History, Trainer, load_checkpoint, load_model
from vaerepair.zoo import PretrainedModel, pretrained

__all__ = [
    "__version__",
    "corruptions",
    "data",
    "distributions",
    "flows",
    "metrics",
    "estimate_noise_sigma",
    "keep_freed_memory",
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
    "PathModel",
    "LatentPath",
    "LadderVAE",
    "ladder_vae",
    "autoencoder",
    "variational_autoencoder",
    "conditional_vae",
    "noise_model_vae",
    "flow_vae",
    "ELBO",
    "FisherDivergence",
    "IWAE",
    "iwae_nll",
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
