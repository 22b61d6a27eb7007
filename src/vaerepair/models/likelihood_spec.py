"""The likelihood's plain-value spec, nested in every model kind's spec (checkpoints hold it as a dict)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from torch import nn

from vaerepair._checks import check_positive
from vaerepair.distributions import Bernoulli, ContinuousBernoulli, Gaussian, PoissonGaussianLikelihood

__all__ = ["LikelihoodSpec", "LIKELIHOODS", "LIKELIHOOD_FIELDS", "nest_likelihood", "spec_from_fields"]

_Spec = TypeVar("_Spec")

LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian", "poisson-gaussian")
# the flat fields a spec written before the likelihood was nested held: (old name, LikelihoodSpec field)
LIKELIHOOD_FIELDS = (("likelihood", "name"), ("sigma", "sigma"), ("gain", "gain"), ("link", "link"),
                     ("learn_sigma", "learn_sigma"))


@dataclass(frozen=True)
class LikelihoodSpec:
    """Plain-value description of a likelihood :math:`p(x \\mid z)`.

    Attributes:
        name: ``"bernoulli"``, ``"continuous-bernoulli"``, ``"gaussian"`` or
            ``"poisson-gaussian"`` (the noise model of noisy observations:
            :class:`~vaerepair.distributions.PoissonGaussianLikelihood`).
        sigma: the Gaussian likelihood's scale (the Poisson-Gaussian one's read noise).
        gain: the Poisson-Gaussian likelihood's photon gain.
        link: the Gaussian likelihoods' link (``"identity"`` or ``"sigmoid"``).
        learn_sigma: learn the Gaussian likelihood's scale.

    Example:
        >>> LikelihoodSpec("gaussian", sigma=0.1).build()
        Gaussian(sigma=0.1, link='identity', learn_sigma=False)
    """

    name: str = "bernoulli"
    sigma: float = 1.0
    gain: float = 0.0
    link: str = "identity"
    learn_sigma: bool = False

    def __post_init__(self) -> None:
        if self.name not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.name!r}; known: {', '.join(LIKELIHOODS)}")
        object.__setattr__(self, "gain", check_positive(self.gain, "gain", allow_zero=True))
        object.__setattr__(self, "sigma", check_positive(self.sigma, "sigma",
                                                         allow_zero=self.gain > 0 and self.name == "poisson-gaussian"))
        if self.link not in ("identity", "sigmoid"):
            raise ValueError(f"unknown link {self.link!r}; known: identity, sigmoid")
        if not isinstance(self.learn_sigma, bool):
            raise TypeError(f"learn_sigma must be True or False, got {self.learn_sigma!r}")

    def build(self) -> nn.Module:
        """The likelihood module."""
        if self.name == "bernoulli":
            return Bernoulli()
        if self.name == "continuous-bernoulli":
            return ContinuousBernoulli()
        if self.name == "poisson-gaussian":
            return PoissonGaussianLikelihood(self.gain, self.sigma, link=self.link)
        return Gaussian(sigma=self.sigma, link=self.link, learn_sigma=self.learn_sigma)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LikelihoodSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(d, dict):
            raise TypeError(f"a likelihood spec must be a dict like {{'name': 'gaussian', 'sigma': 0.1}}, got "
                            f"{type(d).__name__}")
        return spec_from_fields(cls, d, "likelihood spec")


def spec_from_fields(cls: type[_Spec], d: dict[str, Any], what: str) -> _Spec:
    """The dataclass spec ``cls(**d)``; a key that is not one of its fields is an error naming it."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{what} has unknown fields {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)


def nest_likelihood(d: dict[str, Any]) -> dict[str, Any]:
    """A model spec dict with its likelihood as a :class:`LikelihoodSpec`: a nested dict is read as one; the
    flat fields of a spec written before the nesting (``likelihood`` a name, ``sigma``, ``gain``, ``link``,
    ``learn_sigma`` beside it) are gathered into one."""
    out = dict(d)
    value = out.get("likelihood")
    if isinstance(value, LikelihoodSpec):
        return out
    if isinstance(value, dict):
        out["likelihood"] = LikelihoodSpec.from_dict(value)
        return out
    flat = {new: out.pop(old) for old, new in LIKELIHOOD_FIELDS if old in out}
    out["likelihood"] = LikelihoodSpec(**flat)
    return out
