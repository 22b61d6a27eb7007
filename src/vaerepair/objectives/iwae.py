"""The importance-weighted bound (Burda et al., 2016): a training objective and an estimate of log p(x)."""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor

from vaerepair._checks import check_count
from vaerepair.models.latent import LatentModel
from vaerepair.models.path import latent_path, posterior_images
from vaerepair.objectives.base import ObjectiveBase, ObjectiveResult, check_batch, require_prior
from vaerepair.objectives.elbo import ELBO

__all__ = ["IWAE", "log_weights", "iwae_nll", "likelihood_metrics"]


def log_weights(
    model: LatentModel, x_input: Tensor, x_target: Tensor, k: int, condition: Tensor | None = None
) -> Tensor:
    r"""Importance log-weights ``(k, B)`` over the levels of the model's latent path (one for a single-latent VAE):

    .. math:: \log p(x^{target} \mid z_j)
        + \textstyle\sum_l [\log p(z_{j,l} \mid z_{j,>l}) - \log q(z_{j,l} \mid z_{j,>l}, x^{input})]

    (:math:`x^{target}` in :math:`q` for a model whose ``posterior_sees_target`` is set).
    """
    require_prior(model, "importance weighting (IWAE, iwae_nll)")
    path = latent_path(model, posterior_images(model, x_input, x_target), condition, k)  # (k, B, ...)
    return cast(Tensor, path.likelihood.log_prob(x_target) + path.log_prior_ratio())


def _check_k(k: int) -> int:
    return check_count(k, "k")


class IWAE(ObjectiveBase):
    r"""The k-sample importance-weighted bound as a loss, in nats per image.

    .. math::
        \mathcal L_k(x) = \log \frac1k \sum_{j=1}^k \frac{p(x \mid z_j)\, p(z_j)}{q(z_j \mid \tilde x)},
        \qquad z_j \sim q(z \mid \tilde x)

    computed with a stable log-sum-exp. ``k = 1`` is the ELBO with a Monte-Carlo
    KL; the bound tightens as ``k`` grows. Terms ``(B,)``: ``nll``, the bound's
    negative :math:`-\mathcal L_k`; the loss is its batch mean.

    Args:
        k: importance samples per image, ``>= 1``.
    """

    def __init__(self, k: int = 5) -> None:
        self.k = _check_k(k)

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult:
        check_batch(model, x_input, x_target, condition)
        bound = torch.logsumexp(log_weights(model, x_input, x_target, self.k, condition), dim=0) - math.log(self.k)
        return ObjectiveResult(-bound.mean(), {"nll": -bound})

    def __repr__(self) -> str:
        return f"IWAE(k={self.k})"


@torch.no_grad()
def iwae_nll(
    model: LatentModel, x: Tensor, k: int = 1000, chunk: int = 100, batch_size: int = 100,
    condition: Tensor | None = None,
) -> Tensor:
    r"""Estimate :math:`-\log p(x)` (or :math:`-\log p(x \mid c)`) per image ``(B,)`` in nats with the k-sample bound.

    The ``k`` samples are drawn ``chunk`` at a time and combined with a running
    log-sum-exp, so memory does not grow with ``k``. The estimate is an upper
    bound on :math:`-\log p(x)` in expectation, tight as :math:`k \to \infty`.
    A conditional model takes ``condition`` (one row per image).
    """
    _check_k(k)
    chunk, batch_size = check_count(chunk, "chunk"), check_count(batch_size, "batch_size")
    check_batch(model, x, x, condition)
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        cb = condition[i : i + batch_size] if condition is not None else None
        total = torch.full((len(xb),), -math.inf, device=xb.device, dtype=xb.dtype)
        for start in range(0, k, chunk):
            lw = log_weights(model, xb, xb, min(chunk, k - start), cb)
            total = torch.logaddexp(total, torch.logsumexp(lw, dim=0))
        out.append(-(total - math.log(k)))
    return torch.cat(out)


@torch.no_grad()
def likelihood_metrics(
    model: LatentModel, x: Tensor, k: int = 1000, batch_size: int = 100, condition: Tensor | None = None
) -> dict[str, float]:
    r"""On clean images ``x``: the negative ELBO and the IWAE estimate of :math:`-\log p(x)`, nats per image.

    The ELBO uses one sample and the closed-form KL where the posterior has one
    (else a Monte-Carlo KL). Returns ``{"neg_elbo": ..., "nll_iwae": ...}``.
    A conditional model takes ``condition`` (one row per image): the numbers
    are then for :math:`\log p(x \mid c)`.
    """
    elbo = ELBO(kl="auto")
    neg_elbo = torch.cat([
        -elbo(model, x[i : i + batch_size], x[i : i + batch_size],
              condition[i : i + batch_size] if condition is not None else None).terms["elbo"]
        for i in range(0, len(x), batch_size)
    ])
    nll = iwae_nll(model, x, k=k, batch_size=batch_size, condition=condition)
    return {"neg_elbo": float(neg_elbo.mean()), "nll_iwae": float(nll.mean())}
