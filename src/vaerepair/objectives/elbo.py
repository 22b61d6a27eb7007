"""The evidence lower bound (and the beta-VAE objective)."""

from __future__ import annotations

import torch
from torch import Tensor

from vaerepair._checks import check_count, check_positive
from vaerepair.distributions.likelihoods import negative_log_likelihood
from vaerepair.models.latent import LatentModel
from vaerepair.models.path import latent_path, posterior_images
from vaerepair.objectives.base import ObjectiveBase, ObjectiveResult, check_batch, require_prior
from vaerepair.objectives.schedules import Constant, Schedule

__all__ = ["ELBO"]


class ELBO(ObjectiveBase):
    r"""Negative (beta-)ELBO per image, in nats.

    .. math::
        \ell_b = \underbrace{-\tfrac1S \textstyle\sum_s \log p(x^{target}_b \mid z_{s,b})}_{\texttt{recon}}
                 + \beta\, \underbrace{KL(q(z \mid x^{input}_b) \,\|\, p(z))}_{\texttt{kl}},
        \qquad z_{s,b} \sim q(z \mid x^{input}_b)

    The model's latent path (:func:`~vaerepair.models.path.latent_path`) may have
    several levels (a ladder VAE): the KL is then the sum over levels of
    :math:`KL(q(z_l \mid z_{>l}, x) \,\|\, p(z_l \mid z_{>l}))`, each averaged over the
    ``S`` draws of the levels above. With ``kl="analytic"`` each level's KL is its
    closed form (:func:`~vaerepair.distributions.kl.kl_divergence`; an error
    where none is registered); with ``kl="mc"`` it is
    :math:`\tfrac1S \sum_s [\log q(z_{s,b}) - \log p(z_{s,b})]`, which needs only
    ``log_prob`` (flows); ``kl="auto"`` (default) takes the closed form where there
    is one, else the Monte-Carlo estimate, level by level. ``beta=1`` is the VAE,
    ``beta>1`` the beta-VAE. The loss is the batch mean of :math:`\ell_b`.

    A conditional model whose ``posterior_sees_target`` is set (the conditional
    ladder VAE) is scored as a conditional VAE:
    :math:`\log p(x \mid c) \ge E_{q(z \mid x, c)} \log p(x \mid z, c) - KL(q(z \mid x, c) \,\|\, p(z \mid c))`,
    the posterior seeing the clean target :math:`x = x^{target}` and the prior only the condition.

    **Free bits** (``free_bits`` :math:`= \lambda` nats per latent element): in the
    loss, level :math:`l`'s KL of image :math:`b` counts as
    :math:`\max(KL_{l,b}, \lambda\, n_l)` for a level of :math:`n_l` elements, so a
    level is not pushed below that information content (against posterior
    collapse); the reported terms are the true KLs.

    Terms ``(B,)``: ``recon``, ``kl`` (unweighted, summed over levels), ``elbo``
    (:math:`-(\texttt{recon}+\texttt{kl})`, the bound itself at ``beta=1``), and
    for a path of several levels ``kl_0``, ``kl_1``... per level, top first.

    ``beta`` may be a :class:`~vaerepair.objectives.schedules.Schedule`: the
    objective then counts its training steps (the Trainer calls :meth:`step`
    after each optimizer step) and uses ``schedule(step)``.

    Args:
        beta: the KL weight, ``>= 0``, or a schedule of it.
        kl: ``"auto"``, ``"analytic"`` or ``"mc"``.
        n_samples: Monte-Carlo samples ``S`` per image, ``>= 1``.
        free_bits: nats per latent element below which a level's KL is not
            penalised, ``>= 0`` (0: off).
    """

    def __init__(self, beta: float | Schedule = 1.0, kl: str = "auto", n_samples: int = 1,
                 free_bits: float = 0.0) -> None:
        self.schedule = beta if isinstance(beta, Schedule) else Constant(check_positive(beta, "beta", allow_zero=True))
        self.steps = 0
        if kl not in ("auto", "analytic", "mc"):
            raise ValueError(f"kl must be 'auto', 'analytic' or 'mc', got {kl!r}")
        n_samples = check_count(n_samples, "n_samples")
        self.kl = kl
        self.n_samples = n_samples
        self.free_bits = check_positive(free_bits, "free_bits", allow_zero=True)

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult:
        check_batch(model, x_input, x_target, condition)
        require_prior(model, "the ELBO")
        # one draw per image is a path without a sample dimension (the same draws, fewer operations per step)
        s = None if self.n_samples == 1 else self.n_samples
        path = latent_path(model, posterior_images(model, x_input, x_target), condition, s)  # (S, B, ...) or (B, ...)
        recon = _per_image(negative_log_likelihood(path.likelihood, x_target), s)
        closed_form = {"auto": None, "analytic": True, "mc": False}[self.kl]
        levels = [_per_image(level.kl_estimate(closed_form), s) for level in path.levels]  # each (B,)
        kl = levels[0] if len(levels) == 1 else torch.stack(levels).sum(dim=0)
        penalty = kl if not self.free_bits else sum(
            torch.clamp(k, min=self.free_bits * level.z.shape[level.z.dim() - level.event_dims:].numel())
            for k, level in zip(levels, path.levels, strict=True))
        beta = self.beta
        bound = recon + kl  # -ELBO per image
        per_image = bound if penalty is kl and beta == 1.0 else recon + beta * penalty
        loss = per_image.mean()
        terms = {"recon": recon, "kl": kl, "elbo": -bound}
        if len(levels) > 1:
            terms.update({f"kl_{i}": k for i, k in enumerate(levels)})
        return ObjectiveResult(loss, terms)

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
        bits = f", free_bits={self.free_bits}" if self.free_bits else ""
        return f"ELBO(beta={self.schedule!r}, kl={self.kl!r}, n_samples={self.n_samples}{bits})"


def _per_image(values: Tensor, n_samples: int | None) -> Tensor:
    """``(B,)`` values of a path without a sample dimension as they are; ``(S, B)`` averaged over the draws."""
    return values if n_samples is None else values.mean(dim=0)
