r"""The Fisher autoencoder objective (Elkhalil et al., AISTATS 2021), with score terms from autograd.

The joint Fisher divergence between the data-side joint
:math:`q(x, z) = p_d(x)\, q(z \mid x)` and the model joint :math:`p(x, z) = p(z)\, p(x \mid z)`,

.. math::
    D_F = \tfrac12 E_{q(x,z)}\big[\|\nabla_x \log q(x,z) - \nabla_x \log p(x,z)\|^2
          + \|\nabla_z \log q(x,z) - \nabla_z \log p(x,z)\|^2\big],

equals, up to the constant :math:`\tfrac12 E\|\nabla_x \log p_d(x)\|^2` (integration by
parts in x), the mean over images and draws :math:`z \sim q(z \mid x)` of

.. math::
    \ell(x, z) = \tfrac12\|s_{qz} - s_{lik} - s_{prior}\|^2 + \tfrac12\|s_{qx}\|^2
               + \tfrac12\|\nabla_x \log p(x \mid z)\|^2 + \Delta_x \log p(x \mid z)

with :math:`s_{qz} = \partial_z \log q(z \mid x)`, :math:`s_{lik} = \partial_z \log p(x \mid z)`,
:math:`s_{prior} = \partial_z \log p(z)` and :math:`s_{qx} = \partial_x \log q(z \mid x)` at
**fixed** z (MATH.md §1.1).
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from vaerepair._checks import check_count
from vaerepair.distributions import DiagonalGaussian
from vaerepair.models.latent import LatentModel
from vaerepair.objectives.base import ObjectiveBase, ObjectiveResult, check_batch, require_prior

__all__ = ["FisherDivergence", "FisherScores", "fisher_scores", "batch_coupling_layers", "couples_batch"]


class FisherScores(NamedTuple):
    """Every score of the Fisher objective, one row per image (``N = S * B`` rows, sample-major).

    Attributes:
        z: the reparameterised draws :math:`z \\sim q(z \\mid x^{input})` ``(N, D)``.
        posterior_z: :math:`s_{qz} = \\partial_z \\log q(z \\mid x^{input})` ``(N, D)``.
        likelihood_z: :math:`s_{lik} = \\partial_z \\log p(x^{target} \\mid z)` ``(N, D)``.
        prior_z: :math:`s_{prior} = \\partial_z \\log p(z)` ``(N, D)``.
        posterior_x: :math:`s_{qx} = \\partial_{x^{input}} \\log q(z \\mid x^{input})` at fixed z ``(N, C, H, W)``.
        likelihood_x: :math:`\\nabla_{x^{target}} \\log p(x^{target} \\mid z)` ``(N, C, H, W)``.
        laplacian: :math:`\\Delta_{x^{target}} \\log p(x^{target} \\mid z)` ``(N,)``.
        log_likelihood: :math:`\\log p(x^{target} \\mid z)` ``(N,)``.
    """

    z: Tensor
    posterior_z: Tensor
    likelihood_z: Tensor
    prior_z: Tensor
    posterior_x: Tensor
    likelihood_x: Tensor
    laplacian: Tensor
    log_likelihood: Tensor


def batch_coupling_layers(module: nn.Module) -> list[str]:
    """Names of the sub-modules that make one image's output depend on the other images of the batch.

    BatchNorm (any ``_BatchNorm``, ``SyncBatchNorm`` included) couples the batch when it
    normalises with batch statistics: in training mode, or always with
    ``track_running_stats=False``. Per-sample normalisations (LayerNorm, GroupNorm,
    InstanceNorm) do not couple it.
    """
    return [
        name or type(module).__name__
        for name, m in module.named_modules()
        if isinstance(m, _BatchNorm) and (m.training or not m.track_running_stats)
    ]


def couples_batch(model: nn.Module, x: Tensor, condition: Tensor | None = None) -> bool:
    """Behavioural probe: does image 0's output (posterior mean and decoded mean) change when image 1 changes?

    Catches any layer that mixes the batch, whatever its class (batch statistics,
    attention across the batch, a custom module), where :func:`batch_coupling_layers`
    knows BatchNorm by class. Two forward passes on the first two images of ``x``
    without gradients, the same random stream for both (dropout draws the same
    masks), the buffers restored afterwards (BatchNorm's running statistics are
    not moved). A batch of one image cannot couple.
    """
    if len(x) < 2:
        return False
    enc: Any = model
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    pair = x[:2].detach().clone()
    other = pair.clone()
    other[1] = pair[1].flip(-1).flip(-2) * 0.5 + 0.25  # another image in [0, 1]
    cond = condition[:2] if condition is not None else None
    outputs = []
    try:
        with torch.no_grad():
            for batch in (pair, other):
                with torch.random.fork_rng(devices=[batch.device] if batch.device.type == "cuda" else []):
                    torch.manual_seed(0)
                    q = enc.encode(batch, cond)
                    outputs.append(torch.cat([q.mean[0].flatten(), enc.decode(q.mean, cond).mean[0].flatten()]))
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    return not torch.allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-6)


_PROBED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()  # model -> training flag probed


def _check_independent(model: nn.Module, x: Tensor | None = None, condition: Tensor | None = None) -> None:
    coupled = batch_coupling_layers(model)
    if not coupled and x is not None and _PROBED.get(model) is not model.training:
        if couples_batch(model, x, condition):
            raise ValueError(
                "FisherDivergence takes every image's scores from one autograd call over the batch, which is exact "
                "only when images do not interact, but changing one image of a batch changed the model's output "
                "for another (a layer mixes the batch: batch statistics, attention over the batch, ...). Make "
                "every layer act per image."
            )
        _PROBED[model] = model.training  # probed once per model and mode
    if coupled:
        raise ValueError(
            "FisherDivergence takes every image's scores from one autograd call over the batch, which is exact "
            f"only when images do not interact; {', '.join(coupled)} normalise(s) with batch statistics "
            "(BatchNorm in training mode) and couple(s) them. Use a per-sample normalisation (GroupNorm, "
            "LayerNorm: norm='group' in the built-in conv nets), or put the BatchNorm layers in eval mode."
        )


def _grad(outputs: Any, inputs: Any, grad_outputs: Any = None) -> tuple[Tensor | None, ...]:
    return torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs, create_graph=True, allow_unused=True)


def _repeat(x: Tensor, n: int) -> Tensor:
    """``x`` ``(B, ...)`` stacked ``n`` times along the batch: ``(n * B, ...)``."""
    return x if n == 1 else x.repeat(n, *([1] * (x.dim() - 1)))


def _score_z(dist: Any, z: Tensor) -> Tensor:
    """The distribution's own ``score(z)`` when it has one, else autograd of ``log_prob(z)`` with respect to z."""
    if hasattr(dist, "score"):
        return dist.score(z)  # type: ignore[no-any-return]
    grad = _grad(dist.log_prob(z).sum(), z)[0]
    return grad if grad is not None else torch.zeros_like(z)


def _posterior_x_score(q: Any, z: Tensor, s_qz: Tensor, x_in: Tensor, closed_form: bool) -> Tensor:
    r""":math:`s_{qx} = \partial_x \log q(z \mid x)` at fixed z, by one backward pass through the encoder."""
    if closed_form and isinstance(q, DiagonalGaussian):
        # J_mu^T (eps / sigma) + J_sigma^T ((eps^2 - 1) / sigma): one VJP of (mu, sigma)
        inv_scale = q.scale.reciprocal()
        eps = (z - q.loc) * inv_scale
        grad = _grad((q.loc, q.scale), x_in, grad_outputs=(eps * inv_scale, (eps.square() - 1) * inv_scale))[0]
    else:
        # d/dx log q(z(x, eps) | x) along the sample path, minus the path's share (dz/dx)^T s_qz
        log_q = q.log_prob(z).sum()
        grad = _grad((log_q, z), x_in, grad_outputs=(torch.ones_like(log_q), -s_qz))[0]
    return grad if grad is not None else torch.zeros_like(x_in)


def fisher_scores(
    model: LatentModel,
    x_input: Tensor,
    x_target: Tensor,
    condition: Tensor | None = None,
    n_samples: int = 1,
    closed_form: bool | None = None,
    relax_discrete: bool = False,
    generator: torch.Generator | None = None,
) -> FisherScores:
    r"""All score terms of the Fisher objective for a batch, from batched autograd.

    The encoder sees ``x_input`` (the corrupted image) and the likelihood scores
    ``x_target`` (the clean image): :math:`s_{qz}` and :math:`s_{qx}` belong to
    :math:`q(z \mid x^{input})`, :math:`s_{lik}`, the likelihood's x-score and its
    Laplacian to :math:`p(x^{target} \mid z)`. A condition is held fixed.

    How each score is computed:

    * :math:`s_{qz}`: the posterior's ``score(z)`` at its own draw when it has one
      (closed form for the Gaussian, pushed exactly through the layers for a
      planar flow), else autograd of ``log_prob(z)`` with respect to z.
    * :math:`s_{lik}` and :math:`\nabla_x \log p(x \mid z)`: one autograd call on
      :math:`\sum_b \log p(x_b \mid z_b)` with respect to ``(z, x_target)``.
    * :math:`s_{qx}` at fixed z, with one backward pass through the encoder:
      :math:`\tfrac{d}{dx}\log q(z(x, \varepsilon) \mid x) - (\partial z / \partial x)^\top s_{qz}`
      (the reparameterisation-path derivative minus the path's share), which also
      holds for flows whose layers depend on x. The path derivative alone
      (the authors' code) is not :math:`s_{qx}`.
    * The Laplacian: autograd of :math:`\sum_i \partial_{x_i} \log p` with respect
      to x, which is the Hessian's diagonal because the built-in likelihoods are
      independent over pixels (a custom likelihood must be too).
    * With closed forms (``closed_form=None``, the default, wherever the
      likelihood has them: every built-in one; ``True``: required) the
      likelihood's ``x_score(x)``, ``x_laplacian(x)`` and ``param_score(x)`` replace
      the x-derivatives and the likelihood's autograd, and a diagonal Gaussian
      posterior's :math:`s_{qx}` is one vector-Jacobian product of its mean and
      scale: the same numbers (tested against autograd), fewer passes.
      ``closed_form=False`` differentiates everything by autograd.

    Every score keeps its graph (``create_graph=True``), so a loss built from them
    trains encoder and decoder through them. Autograd is turned on inside, so this
    also works under ``torch.no_grad()``, where the results come back detached.

    **Batched, not looped:** the gradient of a sum over the batch gives every
    image's own score only if images do not interact; models with train-mode
    BatchNorm are refused (:func:`batch_coupling_layers`).

    Args:
        model: a model with a stochastic posterior (``rsample``, ``log_prob``) and a prior.
        x_input: encoder inputs ``(B, C, H, W)``.
        x_target: likelihood targets ``(B, C, H, W)``.
        condition: a conditional model's condition ``(B, ...)``.
        n_samples: draws S per image; rows are ordered sample-major (row ``s * B + b``).
        closed_form: ``None`` (closed forms where the likelihood has them), ``True``
            (required) or ``False`` (autograd throughout).
        relax_discrete: accept a likelihood of discrete pixels (Bernoulli) through
            its continuous extension (see :class:`FisherDivergence`).
        generator: random generator for the draws.

    Returns:
        :class:`FisherScores` with ``N = S * B`` rows.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_batch(model, x_input, x_target, condition)
    levels = getattr(model, "n_levels", 1)
    if levels != 1:
        raise ValueError(f"the Fisher objective takes a model with one latent level; this one has {levels} "
                         "(a ladder VAE): train it with ELBO or IWAE")
    _check_independent(model, x_input, condition)
    require_prior(model, "the Fisher objective")
    prior: Any = model.prior  # type: ignore[attr-defined]
    n_samples = check_count(n_samples, "n_samples")
    outer_grad = torch.is_grad_enabled()
    with torch.enable_grad():
        x_in = _repeat(x_input, n_samples).detach().requires_grad_(True)
        x_t = _repeat(x_target, n_samples).detach()
        cond = _repeat(condition, n_samples) if condition is not None else None

        q = model.encode(x_in, cond)
        if not hasattr(q, "rsample") or not hasattr(q, "log_prob"):
            raise TypeError(
                f"the Fisher objective needs a stochastic posterior with rsample and log_prob, got {type(q).__name__}"
            )
        z = q.rsample(generator=generator)
        s_qz, s_prior = _score_z(q, z), _score_z(prior, z)
        s_qx = _posterior_x_score(q, z, s_qz, x_in, closed_form is not False)

        p = model.decode(z, cond)
        if getattr(p, "discrete", False) and not relax_discrete:
            raise ValueError(
                f"the Fisher objective needs a likelihood with a density in x, but {type(p).__name__} models "
                "discrete pixels: its x-score and the integration by parts behind the x-terms are undefined. "
                "Use a Gaussian likelihood (likelihood='gaussian', e.g. sigma=1, link='sigmoid'), or "
                "FisherDivergence(relax_discrete=True) for the continuous relaxation (x-score = logits, Laplacian 0)."
            )
        missing = [m for m in ("x_score", "x_laplacian", "param_score") if not hasattr(p, m)]
        if closed_form and missing:
            raise TypeError(
                f"closed_form=True needs the likelihood's closed-form derivatives, but {type(p).__name__} has no "
                f"{', '.join(missing)}; use closed_form=False (autograd)"
            )
        closed_form = not missing if closed_form is None else closed_form
        if not closed_form:
            x_t.requires_grad_(True)  # a leaf the decoder did not see: its derivatives come from log_prob alone
        log_p = p.log_prob(x_t)
        if closed_form:
            params, d_params = p.param_score(x_t)
            s_lik = _grad(params, z, grad_outputs=d_params)[0]
            x_score, laplacian = p.x_score(x_t), p.x_laplacian(x_t)
        else:
            s_lik, x_score = _grad(log_p.sum(), (z, x_t))
            if x_score is None:
                x_score = torch.zeros_like(x_t)
            lap_map = _grad(x_score.sum(), x_t)[0] if x_score.requires_grad else None
            laplacian = lap_map.flatten(1).sum(1) if lap_map is not None else x_t.new_zeros(len(x_t))
        if s_lik is None:
            s_lik = torch.zeros_like(z)
    scores = FisherScores(z, s_qz, s_lik, s_prior, s_qx, x_score, laplacian, log_p)
    if not outer_grad:
        scores = FisherScores(*(t.detach() for t in scores))
    return scores


class FisherDivergence(ObjectiveBase):
    r"""The Fisher autoencoder loss: a joint Fisher divergence of q(x, z) and p(x, z), up to a constant.

    Per image (and per draw :math:`z \sim q(z \mid x^{input})`, averaged over ``n_samples``):

    .. math::
        \ell = \underbrace{\tfrac12\|s_{qz} - s_{lik} - s_{prior}\|^2}_{\texttt{fisher\_z}}
             + \underbrace{\tfrac12\|s_{qx}\|^2}_{\texttt{score\_qx}}
             + \underbrace{\tfrac12\|\nabla_x \log p(x \mid z)\|^2}_{\texttt{score\_px}}
             + \underbrace{\Delta_x \log p(x \mid z)}_{\texttt{laplacian}}

    The first term is the Fisher divergence between :math:`q(z \mid x)` and the true
    posterior :math:`p(z \mid x)` (no normaliser needed); the others are the x-block
    after integration by parts. The Laplacian is a constant for a fixed-scale
    Gaussian likelihood (:math:`-D_x/\sigma^2`) and is always kept, so learned
    scales are trained correctly. The loss is the batch mean of :math:`\ell`.
    Terms ``(B,)``: the four above and ``recon`` (:math:`-\log p(x^{target} \mid z)`,
    logged only).

    Which image each term sees: the encoder scores (:math:`s_{qz}, s_{qx}`) belong
    to :math:`q(z \mid x^{input})`, the likelihood ones to
    :math:`p(x^{target} \mid z)`: for denoising the input is the corrupted image
    and :math:`s_{qx}` its derivative; with ``x_input == x_target`` this is exactly
    MATH.md §1.1. Scores come from batched autograd with ``create_graph=True``
    (see :func:`fisher_scores`); train-mode BatchNorm is refused.

    Likelihoods: any with a density in x and a differentiable ``log_prob``
    (Gaussian, fixed or learned scale; continuous Bernoulli). The Bernoulli
    likelihood models discrete pixels, for which the x-block is undefined: it is
    refused unless ``relax_discrete=True``, which uses the continuous extension
    :math:`x l - \log(1 + e^l)` (x-score: the logits; Laplacian 0), a relaxation
    whose x-terms do not depend on x.

    Args:
        n_samples: draws per image, ``>= 1``.
        closed_form: ``None`` (default): the likelihood's closed-form derivatives
            (``x_score``, ``x_laplacian``, ``param_score``) where it has them, autograd
            otherwise; ``True``: require them; ``False``: autograd throughout (see
            :func:`fisher_scores`).
        relax_discrete: accept a Bernoulli likelihood as the relaxation above.
    """

    needs_grad = True  # it differentiates inside its loss (with respect to z and the images)

    def __init__(self, n_samples: int = 1, closed_form: bool | None = None, relax_discrete: bool = False) -> None:
        n_samples = check_count(n_samples, "n_samples")
        self.n_samples = n_samples
        self.closed_form = None if closed_form is None else bool(closed_form)
        self.relax_discrete = bool(relax_discrete)

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult:
        terms = self.per_draw_terms(  # fisher_scores checks the batch
            fisher_scores(model, x_input, x_target, condition, self.n_samples, self.closed_form, self.relax_discrete)
        )
        b = len(x_input)
        terms = {k: v.reshape(self.n_samples, b).mean(dim=0) for k, v in terms.items()}
        loss = (terms["fisher_z"] + terms["score_qx"] + terms["score_px"] + terms["laplacian"]).mean()
        return ObjectiveResult(loss, terms)

    @staticmethod
    def per_draw_terms(scores: FisherScores) -> dict[str, Tensor]:
        """The named terms ``(N,)`` of each row of ``scores``."""
        residual = scores.posterior_z - scores.likelihood_z - scores.prior_z
        return {
            "fisher_z": 0.5 * residual.square().flatten(1).sum(dim=1),  # a vector (N, D) or a spatial code
            "score_qx": 0.5 * scores.posterior_x.square().flatten(1).sum(dim=1),
            "score_px": 0.5 * scores.likelihood_x.square().flatten(1).sum(dim=1),
            "laplacian": scores.laplacian,
            "recon": -scores.log_likelihood,
        }

    def __repr__(self) -> str:
        return (f"FisherDivergence(n_samples={self.n_samples}, closed_form={self.closed_form}, "
                f"relax_discrete={self.relax_discrete})")
