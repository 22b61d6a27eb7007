r"""A registry of closed-form KL divergences between pairs of distributions, with no closed form as ``None``.

Objectives ask :func:`kl_divergence` for :math:`KL(q \,\|\, p)`; it looks the pair of
types up (walking both classes' MROs, most specific first) and returns the
closed form, or ``None`` when no rule is registered, in which case the caller
falls back to a Monte-Carlo estimate :math:`\log q(z) - \log p(z)` at its draws
(a planar-flow posterior at any level, for example).

Register a rule for your own distributions::

    @register_kl(MyPosterior, MyPrior)
    def _kl_mine(q, p):
        return ...  # per-image KL, shaped like q's batch
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import Tensor

from vaerepair.distributions.gaussian import DiagonalGaussian, StandardNormal

__all__ = ["register_kl", "kl_divergence", "KL_RULES"]

KLRule = Callable[[Any, Any], Tensor]
KL_RULES: dict[tuple[type, type], KLRule] = {}
_F = TypeVar("_F", bound=KLRule)


def register_kl(q_type: type, p_type: type) -> Callable[[_F], _F]:
    """Decorator: ``rule(q, p)`` computes :math:`KL(q \\| p)` in closed form for ``q: q_type``, ``p: p_type``."""
    if not isinstance(q_type, type) or not isinstance(p_type, type):
        raise TypeError(f"register_kl takes two classes, got {q_type!r} and {p_type!r}")

    def decorate(rule: _F) -> _F:
        KL_RULES[(q_type, p_type)] = rule
        return rule

    return decorate


def kl_divergence(q: Any, p: Any) -> Tensor | None:
    r"""The closed-form :math:`KL(q \,\|\, p)` per image when a rule is registered for the pair, else ``None``.

    The most specific registered pair wins (``q``'s class first, then ``p``'s).
    A posterior with a ``kl_standard_normal()`` method (users' own, as before the
    registry) against a :class:`StandardNormal` prior uses that method.
    """
    for q_cls in type(q).__mro__:
        for p_cls in type(p).__mro__:
            rule = KL_RULES.get((q_cls, p_cls))
            if rule is not None:
                return rule(q, p)
    if isinstance(p, StandardNormal) and callable(getattr(q, "kl_standard_normal", None)):
        result: Tensor = q.kl_standard_normal()
        return result
    return None


@register_kl(DiagonalGaussian, StandardNormal)
def _kl_gaussian_standard(q: DiagonalGaussian, p: StandardNormal) -> Tensor:
    return q.kl_standard_normal()


@register_kl(DiagonalGaussian, DiagonalGaussian)
def _kl_gaussian_gaussian(q: DiagonalGaussian, p: DiagonalGaussian) -> Tensor:
    return q.kl(p)
