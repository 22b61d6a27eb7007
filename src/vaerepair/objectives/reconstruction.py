"""Reconstruction objective: the (denoising) autoencoder's negative log-likelihood."""

from __future__ import annotations

from torch import Tensor

from vaerepair.distributions.likelihoods import negative_log_likelihood
from vaerepair.models.latent import LatentModel
from vaerepair.models.path import latent_path
from vaerepair.objectives.base import ObjectiveBase, ObjectiveResult, check_batch, refuse_prior_repairs

__all__ = ["Reconstruction"]


class Reconstruction(ObjectiveBase):
    r"""Negative log-likelihood of the clean target given the code of the input.

    Per sample :math:`\ell_b = -\log p(x^{target}_b \mid z_b)`, with
    :math:`z_b` drawn from the posterior path of :math:`x^{input}_b` (one level
    for most models; for the point-mass posterior of a plain autoencoder, the
    code itself). The loss is
    the batch mean in nats per image: binary cross-entropy summed over pixels
    for a Bernoulli likelihood, squared error / (2σ²) plus the Gaussian
    normaliser for a Gaussian one. Denoising is ``x_input != x_target``.

    Terms: ``recon`` ``(B,)``.

    Example:
        >>> from vaerepair.models import autoencoder
        >>> x = torch.rand(4, 1, 28, 28)
        >>> result = Reconstruction()(autoencoder(), x, x)
        >>> result.loss.shape, result.terms["recon"].shape
        (torch.Size([]), torch.Size([4]))
    """

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult:
        check_batch(model, x_input, x_target, condition)
        refuse_prior_repairs(model, "Reconstruction")
        recon = negative_log_likelihood(latent_path(model, x_input, condition).likelihood, x_target)
        return ObjectiveResult(recon.mean(), {"recon": recon})

    def __repr__(self) -> str:
        return "Reconstruction()"
