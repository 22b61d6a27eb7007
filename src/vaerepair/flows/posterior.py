r"""Planar-flow posteriors: a diagonal Gaussian base pushed through K planar layers.

.. math::
    z_0 = \mu(x) + \sigma(x) \odot \varepsilon, \quad z_k = f_k(z_{k-1}), \quad
    \log q_K(z_K \mid x) = \log q_0(z_0 \mid x) - \sum_{k=1}^K \log|\det J_k(z_{k-1})|

The layers' parameters are global (learned, shared by all images), fixed, or
amortised (produced per image from the encoder features, Rezende & Mohamed's
form). The score :math:`\nabla_{z_K} \log q_K(z_K)` at the drawn samples is
pushed exactly through each layer (:func:`~vaerepair.flows.planar.planar_score_step`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaerepair._checks import check_count
from vaerepair.distributions.gaussian import _HALF_LOG_2PI, DiagonalGaussian, GaussianPosterior
from vaerepair.flows.planar import (
    PlanarParams,
    planar_inverse,
    planar_params,
    planar_pre_activation,
    planar_score_step,
    split_layers,
)

__all__ = ["PlanarFlow", "PlanarFlowDistribution", "PlanarFlowPosterior", "ChannelFlowDistribution", "push_forward"]


def push_forward(
    z: Tensor, layers: list[PlanarParams], score: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Push ``z`` ``(..., D)`` through the layers: ``(z_K, sum of log|det J_k| (...), score at z_K or None)``.

    With ``score`` (the base score at ``z``), the score is carried through every layer.
    """
    if not layers:
        return z, torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device), score
    if score is None:  # the training path: the K determinants in one batched computation after the layers
        lead = z.shape[:-1]
        shared = all(p.w.dim() == 1 for p in layers)  # global layers: rank-1 updates of z as one (N, D) matrix
        if shared:  # samples (S, B, D) too: the ELBO's draws come with a sample axis
            z = z.reshape(-1, z.shape[-1])
        ts = []
        for p in layers:
            if shared:  # z + t u_hat^T as one op (and a matrix product backward), t = tanh(z w + b)
                t = torch.tanh(torch.addmv(p.b, z, p.w))
                z = torch.addr(z, t, p.u_hat)
            else:
                t = torch.tanh(planar_pre_activation(z, p))
                z = torch.addcmul(z, p.u_hat, t.unsqueeze(-1))
            ts.append(t)
        t = torch.stack(ts)  # (K, ...)
        if shared:  # one softplus per layer: (K, 1) against t (K, N)
            sp = torch.stack([p.softplus_wu for p in layers]).unsqueeze(-1)
        else:
            sp = torch.stack([p.softplus_wu.expand_as(tk) for p, tk in zip(layers, ts, strict=True)])
        # det J_k = t_k^2 + (1 - t_k^2) softplus(w_k^T u_k), as planar_step, for all k at once
        log_det = torch.log(torch.addcmul(sp, t.square(), 1.0 - sp)).sum(dim=0)
        if shared:
            return z.reshape(*lead, z.shape[-1]), log_det.reshape(lead), None
        return z, log_det, None
    log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
    for p in layers:
        z, ld, score = planar_score_step(z, score, p)
        log_det = log_det + ld
    return z, log_det, score


class PlanarFlow(nn.Module):
    """K planar layers with global parameters (the 2-D density experiments' flow).

    The layers start near the identity with informative directions:
    ``u ~ N(0, 0.01^2)``, ``w ~ N(0, 1)``, ``b = 0`` (with ``u`` and ``w`` both
    small the gradients of each are small too, and fits stall; measured on
    report 003's target, this start reached a 7x lower KL than ``N(0, 1)`` for all).

    Args:
        dim: ``D``.
        n_flows: ``K``.
        trainable: learn the parameters (``False``: fixed parameters, e.g. set by hand).

    Example:
        >>> flow = PlanarFlow(2, n_flows=4)
        >>> z, log_det, _ = flow(torch.randn(10, 2))
        >>> z.shape, log_det.shape
        (torch.Size([10, 2]), torch.Size([10]))
    """

    def __init__(self, dim: int, n_flows: int, trainable: bool = True) -> None:
        super().__init__()
        if dim < 1 or n_flows < 0:
            raise ValueError(f"dim must be >= 1 and n_flows >= 0, got dim={dim}, n_flows={n_flows}")
        self.dim, self.n_flows = int(dim), int(n_flows)
        self.u = nn.Parameter(0.01 * torch.randn(n_flows, dim), requires_grad=trainable)
        self.w = nn.Parameter(torch.randn(n_flows, dim), requires_grad=trainable)
        self.b = nn.Parameter(torch.zeros(n_flows), requires_grad=trainable)

    def layers(self) -> list[PlanarParams]:
        """The constrained parameters of each layer."""
        return split_layers(planar_params(self.u, self.w, self.b), dim=0)

    def forward(self, z: Tensor, score: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(z_K, sum log|det J|, score at z_K)`` for ``z`` ``(..., D)``; see :func:`push_forward`."""
        return push_forward(z, self.layers(), score)

    def inverse(self, y: Tensor) -> Tensor:
        """Invert the whole flow numerically (no gradient): ``z_0`` with ``f(z_0) = y``."""
        for p in reversed(self.layers()):
            y = planar_inverse(y, p)
        return y

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_flows={self.n_flows}"


class PlanarFlowDistribution:
    r"""q_K: a :class:`DiagonalGaussian` base ``(B, D)`` pushed through planar layers.

    ``rsample`` draws :math:`z_K` and keeps :math:`\log q_K(z_K)`: ``log_prob``
    of those samples is then exact and free (and differentiable along the
    sample path); ``score`` of them pushes the base score through the layers
    from the kept :math:`z_0` (exact, differentiable, computed only when asked).
    For any other ``z`` both invert the flow numerically (no gradient through
    the inverse).

    ``mean`` is the image of the base mean, :math:`f_K \circ \dots \circ f_1(\mu)`:
    the deterministic code that :meth:`reconstruct` decodes (not :math:`E[z_K]`,
    which has no closed form).
    """

    def __init__(self, base: DiagonalGaussian, layers: list[PlanarParams]) -> None:
        self.base = base
        self.layers = layers
        self._cache: tuple[Tensor, Tensor, Tensor, Tensor] | None = None  # (z_K, log q_K(z_K), z_0, eps)

    @property
    def mean(self) -> Tensor:
        """:math:`f(\\mu)` ``(B, D)``."""
        return push_forward(self.base.loc, self.layers)[0]

    def rsample(self, n_samples: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Samples :math:`z_K`: ``(B, D)``, or ``(S, B, D)`` when ``n_samples=S``."""
        loc, scale = self.base.loc, self.base.scale
        shape = loc.shape if n_samples is None else (n_samples, *loc.shape)
        eps = self.base.standard_noise(shape, generator)
        z0 = torch.addcmul(loc, scale, eps)
        log_q0 = -(0.5 * eps.square() + scale.log() + _HALF_LOG_2PI).sum(dim=-1)  # log q_0(z_0), with eps known
        z, log_det, _ = push_forward(z0, self.layers)
        self._cache = (z, log_q0 - log_det, z0, eps)  # the base score -eps / scale is formed only when asked
        return z

    def _invert(self, z: Tensor) -> Tensor:
        for p in reversed(self.layers):
            z = planar_inverse(z, p)
        return z

    def log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log q_K(z)` summed over ``D``: ``(..., B)``."""
        if self._cache is not None and z is self._cache[0]:
            return self._cache[1]
        z0 = self._invert(z.detach())
        _, log_det, _ = push_forward(z0, self.layers)
        return self.base.log_prob(z0) - log_det

    def score(self, z: Tensor) -> Tensor:
        r""":math:`\nabla_z \log q_K(z)`, shaped like ``z``."""
        if self._cache is not None and z is self._cache[0]:
            base_score = -self._cache[3] / self.base.scale
            return push_forward(self._cache[2], self.layers, base_score)[2]  # type: ignore[return-value]
        z0 = self._invert(z.detach())
        return push_forward(z0, self.layers, self.base.score(z0))[2]  # type: ignore[return-value]


class ChannelFlowDistribution:
    r"""A spatial code's posterior: a :class:`DiagonalGaussian` base over ``(..., L, H, W)`` whose every
    pixel's channel vector :math:`z_0 \in \mathbb R^L` goes through the same planar layers (a ladder level's
    flow).

    .. math::
        \log q(z) = \log q_0(z_0) - \textstyle\sum_{h,w} \sum_k \log|\det J_k(z_{k-1, hw})|

    :meth:`draw` pushes base draws through the layers and keeps :math:`\log q`
    of them, so ``log_prob`` of those draws is exact and free; for any other
    ``z`` it inverts the layers numerically (no gradient through the inverse).
    ``loc`` (and ``mean``) is the image of the base mean, the code a
    deterministic repair decodes. There is no closed-form KL: objectives take
    the Monte-Carlo one.
    """

    def __init__(self, base: DiagonalGaussian, layers: list[PlanarParams]) -> None:
        self.base, self.layers = base, layers
        self._cache: tuple[Tensor, Tensor] | None = None  # (z, log q(z))

    def _push(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        z, log_det, _ = push_forward(z0.movedim(-3, -1), self.layers)  # channels last: (..., H, W, L)
        return z.movedim(-1, -3), log_det.sum(dim=(-2, -1))

    @property
    def loc(self) -> Tensor:
        r""":math:`f(\mu)`, shaped like the codes."""
        return self._push(self.base.loc)[0]

    mean = loc

    def draw(self, eps: Tensor) -> Tensor:
        r"""The codes :math:`f(\mu + \sigma \odot \varepsilon)` of standard normal ``eps`` (the base's shape)."""
        z0 = torch.addcmul(self.base.loc, self.base.scale, eps)
        z, log_det = self._push(z0)
        log_q0 = -(0.5 * eps.square() + self.base.scale.log() + _HALF_LOG_2PI).flatten(-3).sum(dim=-1)
        self._cache = (z, log_q0 - log_det)
        return z

    def log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log q(z)` summed over ``(L, H, W)``: ``(...)``."""
        if self._cache is not None and z is self._cache[0]:
            return self._cache[1]
        y = z.detach().movedim(-3, -1)
        for p in reversed(self.layers):
            y = planar_inverse(y, p)
        z0 = y.movedim(-1, -3)
        return self.base.log_prob(z0) - self._push(z0)[1]

    def reshape(self, lead: tuple[int, ...], z: Tensor | None = None) -> ChannelFlowDistribution:
        """The same distribution with codes seen as ``(*lead, L, H, W)``; ``z``: the kept draws seen that way."""
        base = DiagonalGaussian(self.base.loc.reshape(*lead, *self.base.loc.shape[-3:]),
                                self.base.scale.reshape(*lead, *self.base.scale.shape[-3:]), event_dims=3)
        out = ChannelFlowDistribution(base, self.layers)
        if z is not None and self._cache is not None:
            out._cache = (z, self._cache[1].reshape(lead))
        return out


class PlanarFlowPosterior(nn.Module):
    """A Gaussian posterior head followed by K planar layers.

    ``n_flows=0`` returns the :class:`GaussianPosterior`'s own
    :class:`DiagonalGaussian` (the closed-form KL stays available): exactly the
    Gaussian posterior.

    Args:
        in_features: the encoder's feature size ``F``.
        latent_dim: ``D``.
        n_flows: ``K >= 0``.
        amortized: ``True``: each image gets its own layers, from a linear head on
            the features (Rezende & Mohamed's VAE); ``False``: global layers
            shared by all images.
        min_scale: the base scale's floor.
    """

    def __init__(
        self, in_features: int, latent_dim: int, n_flows: int = 5, amortized: bool = True, min_scale: float = 1e-4
    ) -> None:
        super().__init__()
        n_flows = check_count(n_flows, "n_flows", minimum=0)
        self.gaussian = GaussianPosterior(in_features, latent_dim, min_scale)
        self.in_features, self.latent_dim = self.gaussian.in_features, self.gaussian.latent_dim
        self.n_flows, self.amortized = n_flows, bool(amortized)
        d = self.latent_dim
        self.flow_head: nn.Linear | None = None
        self.flow: PlanarFlow | None = None
        if n_flows and amortized:
            self.flow_head = nn.Linear(self.in_features, n_flows * (2 * d + 1))
            # Start near the identity with informative directions, as PlanarFlow: u ~ 0, w ~ N(0, 1), b = 0.
            nn.init.normal_(self.flow_head.weight, std=0.01)
            with torch.no_grad():
                bias = self.flow_head.bias.view(n_flows, 2 * d + 1)
                bias.zero_()
                bias[:, d : 2 * d].normal_()
        elif n_flows:
            self.flow = PlanarFlow(d, n_flows)

    def forward(self, features: Tensor) -> DiagonalGaussian | PlanarFlowDistribution:
        """The posterior for features ``(B, F)``."""
        base = self.gaussian(features)
        if self.n_flows == 0:
            return base
        if self.flow is not None:
            return PlanarFlowDistribution(base, self.flow.layers())
        assert self.flow_head is not None
        d, k = self.latent_dim, self.n_flows
        raw = self.flow_head(features).view(-1, k, 2 * d + 1)
        u, w, b = raw.split([d, d, 1], dim=-1)
        return PlanarFlowDistribution(base, split_layers(planar_params(u, w, b.squeeze(-1))))

    def extra_repr(self) -> str:
        return f"n_flows={self.n_flows}, amortized={self.amortized}"
