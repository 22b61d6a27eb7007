"""Planar normalizing flows: layers, flow posteriors, and 2-D density fitting."""

from vaerepair.flows.planar import PlanarParams, planar_forward, planar_inverse, planar_params, planar_score_step
from vaerepair.flows.posterior import (
    ChannelFlowDistribution,
    PlanarFlow,
    PlanarFlowDistribution,
    PlanarFlowPosterior,
    push_forward,
)

__all__ = [
    "PlanarParams",
    "planar_params",
    "planar_forward",
    "planar_score_step",
    "planar_inverse",
    "push_forward",
    "PlanarFlow",
    "PlanarFlowDistribution",
    "ChannelFlowDistribution",
    "PlanarFlowPosterior",
]
