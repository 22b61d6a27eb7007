"""Posteriors q(z | x) and likelihoods p(x | z)."""

from vaerepair.distributions._validation import validation, validation_enabled
from vaerepair.distributions.gaussian import (
    DiagonalGaussian,
    GaussianPosterior,
    SpatialGaussianPosterior,
    SpatialStandardNormal,
    StandardNormal,
)
from vaerepair.distributions.likelihoods import (
    Bernoulli,
    BernoulliImage,
    ContinuousBernoulli,
    ContinuousBernoulliImage,
    Gaussian,
    GaussianImage,
    PoissonGaussianImage,
    PoissonGaussianLikelihood,
    negative_log_likelihood,
)
from vaerepair.distributions.posteriors import PointMass, PointMassPosterior, SpatialPointMassPosterior, spatial_head

__all__ = [
    "DiagonalGaussian",
    "GaussianPosterior",
    "SpatialGaussianPosterior",
    "StandardNormal",
    "SpatialStandardNormal",
    "PointMass",
    "PointMassPosterior",
    "SpatialPointMassPosterior",
    "spatial_head",
    "Bernoulli",
    "BernoulliImage",
    "ContinuousBernoulli",
    "ContinuousBernoulliImage",
    "Gaussian",
    "GaussianImage",
    "PoissonGaussianLikelihood",
    "PoissonGaussianImage",
    "negative_log_likelihood",
    "validation",
    "validation_enabled",
]
