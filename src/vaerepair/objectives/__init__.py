"""Objectives: objects holding only their settings, called with a model and a batch."""

from vaerepair.objectives.base import Objective, ObjectiveBase, ObjectiveResult, objective_hooks
from vaerepair.objectives.elbo import ELBO
from vaerepair.objectives.fisher import FisherDivergence, FisherScores, batch_coupling_layers, fisher_scores
from vaerepair.objectives.iwae import IWAE, iwae_nll, likelihood_metrics, log_weights
from vaerepair.objectives.reconstruction import Reconstruction
from vaerepair.objectives.schedules import Constant, Cyclical, LinearWarmup, Schedule

__all__ = [
    "Objective",
    "ObjectiveResult",
    "ObjectiveBase",
    "objective_hooks",
    "Reconstruction",
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
