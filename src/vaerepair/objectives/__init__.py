"""Objectives: objects holding only their settings, called with a model and a batch."""

from vaerepair.objectives.base import Objective, ObjectiveBase, ObjectiveResult, check_batch, objective_hooks
from vaerepair.objectives.elbo import ELBO
from vaerepair.objectives.fisher import FisherDivergence, FisherScores, batch_coupling_layers, fisher_scores
from vaerepair.objectives.iwae import IWAE, iwae_nll, likelihood_metrics, log_weights
from vaerepair.objectives.reconstruction import Reconstruction
from vaerepair.objectives.schedules import Constant, Cyclical, LinearWarmup, Schedule
from vaerepair.objectives.self_supervised import BLIND_SPOT_REPLACEMENTS, SURE, BlindSpot, Noise2Noise, denoise

__all__ = [
    "Objective",
    "ObjectiveResult",
    "ObjectiveBase",
    "objective_hooks",
    "check_batch",
    "Reconstruction",
    "Noise2Noise",
    "BlindSpot",
    "SURE",
    "BLIND_SPOT_REPLACEMENTS",
    "denoise",
    "ELBO",
    "FisherDivergence",
    "FisherScores",
    "fisher_scores",
    "batch_coupling_layers",
    "IWAE",
    "iwae_nll",
    "log_weights",
    "likelihood_metrics",
    "Schedule",
    "Constant",
    "LinearWarmup",
    "Cyclical",
]
