"""A kit for unit-testing new objectives and components, and the contract checks the library runs on its own.

>>> from vaerepair.testing import check_objective
>>> check_objective(MyObjective())          # doctest: +SKIP

Every ``check_*`` function returns a :class:`CheckReport` and, by default,
raises :class:`ContractError` (an ``AssertionError``, so pytest shows it as a
failure) with one line per broken check. Importing this module needs neither
pytest nor hypothesis; :mod:`vaerepair.testing.strategies` (hypothesis
strategies for images, latents, corruptions and small models) needs hypothesis
(``pip install vaerepair[test]``).
"""

from vaerepair.testing.components import (
    check_corruption,
    check_likelihood,
    check_network,
    check_posterior,
    check_score,
)
from vaerepair.testing.ladders import ExchangeableLadder, LinearLadder, linear_ladder, small_ladder
from vaerepair.testing.models import (
    ExchangeableModel,
    LinearGaussianModel,
    linear_gaussian_model,
    small_model,
)
from vaerepair.testing.objectives import check_bound, check_objective
from vaerepair.testing.registry import (
    BUILTIN_CORRUPTIONS,
    BUILTIN_LIKELIHOODS,
    BUILTIN_NETWORKS,
    BUILTIN_OBJECTIVES,
    BUILTIN_POSTERIORS,
)
from vaerepair.testing.report import Check, CheckReport, ContractError
from vaerepair.testing.risk import check_unbiased_risk

__all__ = [
    "ExchangeableLadder",
    "LinearLadder",
    "linear_ladder",
    "small_ladder",
    "check_objective",
    "check_bound",
    "check_unbiased_risk",
    "check_score",
    "check_posterior",
    "check_likelihood",
    "check_corruption",
    "check_network",
    "small_model",
    "linear_gaussian_model",
    "ExchangeableModel",
    "LinearGaussianModel",
    "Check",
    "CheckReport",
    "ContractError",
    "BUILTIN_OBJECTIVES",
    "BUILTIN_POSTERIORS",
    "BUILTIN_LIKELIHOODS",
    "BUILTIN_CORRUPTIONS",
    "BUILTIN_NETWORKS",
]
