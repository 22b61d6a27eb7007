"""Models: one latent-variable class, and the built-in configurations."""

from vaerepair.models.factory import MODEL_KINDS, ModelSpec, autoencoder, build, variational_autoencoder
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
    "MODEL_KINDS",
]
