"""Models: the latent path every model gives, one single-latent class, the ladder VAE, the built-in
configurations, and conditions for conditional models."""

from vaerepair.models.conditions import CONDITION_KINDS, Condition, ImageCondition, LabelCondition, NoiseLevel
from vaerepair.models.factory import (
    MODEL_KINDS,
    SPECS,
    ModelSpec,
    autoencoder,
    build,
    conditional_vae,
    flow_vae,
    noise_model_vae,
    variational_autoencoder,
)
from vaerepair.models.ladder import LadderVAE
from vaerepair.models.ladder_spec import LadderSpec, ladder_vae
from vaerepair.models.latent import ImageDistribution, LatentModel, LatentVariableModel, PosteriorLike
from vaerepair.models.latent_specs import AutoencoderSpec, VAESpec
from vaerepair.models.likelihood_spec import LikelihoodSpec
from vaerepair.models.path import LatentLevel, LatentPath, PathModel, latent_path

__all__ = [
    "LatentVariableModel",
    "PathModel",
    "LatentPath",
    "LatentLevel",
    "latent_path",
    "LadderVAE",
    "LadderSpec",
    "ladder_vae",
    "LatentModel",
    "PosteriorLike",
    "ImageDistribution",
    "ModelSpec",
    "AutoencoderSpec",
    "VAESpec",
    "LikelihoodSpec",
    "SPECS",
    "build",
    "autoencoder",
    "variational_autoencoder",
    "conditional_vae",
    "noise_model_vae",
    "flow_vae",
    "Condition",
    "LabelCondition",
    "ImageCondition",
    "NoiseLevel",
    "CONDITION_KINDS",
    "MODEL_KINDS",
]
