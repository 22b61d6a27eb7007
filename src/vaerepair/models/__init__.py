"""Models: one latent-variable class, the built-in configurations, and conditions for conditional models."""

from vaerepair.models.conditions import CONDITION_KINDS, Condition, ImageCondition, LabelCondition
from vaerepair.models.factory import (
    MODEL_KINDS,
    ModelSpec,
    autoencoder,
    build,
    conditional_vae,
    flow_vae,
    noise_model_vae,
    variational_autoencoder,
)
from vaerepair.models.latent import ImageDistribution, LatentModel, LatentVariableModel, PosteriorLike

__all__ = [
    "LatentVariableModel",
    "LatentModel",
    "PosteriorLike",
    "ImageDistribution",
    "ModelSpec",
    "build",
    "autoencoder",
    "variational_autoencoder",
    "conditional_vae",
    "noise_model_vae",
    "flow_vae",
    "Condition",
    "LabelCondition",
    "ImageCondition",
    "CONDITION_KINDS",
    "MODEL_KINDS",
]
