"""The evidence lower bound (and the beta-VAE objective)."""

from __future__ import annotations

from torch import Tensor

from vaerepair._checks import check_count, check_positive
from vaerepair.distributions import StandardNormal
from vaerepair.models.latent import LatentModel
from vaerepair.objectives.base import ObjectiveBase, ObjectiveResult
from vaerepair.objectives.schedules import Constant, Schedule

__all__ = ["ELBO"]


class ELBO(ObjectiveBase):
    r"""Negative (beta-)ELBO per image, in nats.

    .. math::
        \ell_b = \underbrace{-\tfrac1S \textstyle\sum_s \log p(x^{target}_b \mid z_{s,b})}_{\texttt{recon}}
                 + \beta\, \underbrace{KL(q(z \mid x^{input}_b) \,\|\, p(z))}_{\texttt{kl}},
        \qquad z_{s,b} \sim q(z \mid x^{input}_b)

    With ``kl="analytic"`` the KL is the closed form (the posterior must provide
    ``kl_standard_normal`` and the prior be :class:`StandardNormal`); with
    ``kl="mc"`` it is :math:`\tfrac1S \sum_s [\log q(z_{s,b}) - \log p(z_{s,b})]`,
    which needs only ``log_prob`` (flows); ``kl="auto"`` (default) takes the
    closed form where there is one, else the Monte-Carlo estimate. ``beta=1`` is the VAE, ``beta>1`` the
    beta-VAE. The loss is the batch mean of :math:`\ell_b`.

    Terms ``(B,)``: ``recon``, ``kl`` (unweighted), ``elbo`` (:math:`-(\texttt{recon}+\texttt{kl})`,
    the bound itself at ``beta=1``).

    ``beta`` may be a :class:`~vaerepair.objectives.schedules.Schedule`: the
    objective then counts its training steps (the Trainer calls :meth:`step`
    after each optimizer step) and uses ``schedule(step)``.

    Args:
        beta: the KL weight, ``>= 0``, or a schedule of it.
        kl: ``"auto"``, ``"analytic"`` or ``"mc"``.
        n_samples: Monte-Carlo samples ``S`` per image, ``>= 1``.
    """

    def __init__(self, beta: float | Schedule = 1.0, kl: str = "auto", n_samples: int = 1) -> None:
        self.schedule = beta if isinstance(beta, Schedule) else Constant(check_positive(beta, "beta", allow_zero=True))
        self.steps = 0
        if kl not in ("auto", "analytic", "mc"):
            raise ValueError(f"kl must be 'auto', 'analytic' or 'mc', got {kl!r}")
        n_samples = check_count(n_samples, "n_samples")
        self.kl = kl
        self.n_samples = n_samples

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult:
        prior = getattr(model, "prior", None)
        if prior is None:
            raise ValueError("the ELBO needs a model with a prior (model.prior is None); build a VAE")
        q = model.encode(x_input, condition)
        z = q.rsample(self.n_samples)  # (S, B, D)
        recon = -model.decode(z, condition).log_prob(x_target).mean(dim=0)
        closed_form = hasattr(q, "kl_standard_normal") and isinstance(prior, StandardNormal)
        if self.kl == "analytic" or (self.kl == "auto" and closed_form):
            if not closed_form:
                raise ValueError(
                    f"kl='analytic' needs a Gaussian posterior and a StandardNormal prior, got "
                    f"{type(q).__name__} and {type(prior).__name__}; use kl='mc'"
                )
            kl = q.kl_standard_normal()
        else:
            kl = (q.log_prob(z) - prior.log_prob(z)).mean(dim=0)
        loss = (recon + self.beta * kl).mean()
        return ObjectiveResult(loss, {"recon": recon, "kl": kl, "elbo": -(recon + kl)})

    @property
    def beta(self) -> float:
        """The KL weight at the current step."""
        return self.schedule(self.steps)

    def step(self) -> None:
        """Advance the beta schedule by one training step (the Trainer calls this)."""
        self.steps += 1

    def state_dict(self) -> dict[str, int]:
        """The schedule's clock, for checkpoints (the Trainer saves and restores it)."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])

    def hparams(self) -> dict[str, float]:
        """Values the Trainer records in the history each epoch."""
        return {"beta": self.beta}

    def __repr__(self) -> str:
        return f"ELBO(beta={self.schedule!r}, kl={self.kl!r}, n_samples={self.n_samples})"
