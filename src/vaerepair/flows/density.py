r"""Fitting a planar flow to a 2-D density by reverse KL (report 003; Rezende & Mohamed, figure 3).

A standard-normal base pushed through K planar layers is fitted to a target
:math:`p(z) \propto \exp(-U(z))` by minimising the Monte-Carlo estimate of
:math:`E_{q}[\log q(z) + U(z)] = KL(q \,\|\, p) - \log Z` (the free energy).
Targets: report 003's two-Gaussian mixture (normalised, so the KL is exact) and
the energies U1-U4 of Rezende & Mohamed. U1 is a proper density; U2-U4 do not
decay along :math:`z_1` (improper on :math:`\mathbb R^2`, MATH.md §4.2):
their free energy can be lowered without bound by spreading along
:math:`z_1`, so compare them at equal budgets and look at the mass outside
:math:`[-4, 4]^2`, or use the walled versions, which add a steep energy
outside the box and are proper.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from vaerepair.flows.posterior import PlanarFlow

__all__ = [
    "Energy",
    "two_gaussians",
    "energy",
    "walled",
    "ENERGIES",
    "log_partition",
    "FlowFit",
    "fit_flow",
]

Energy = Callable[[Tensor], Tensor]  # z (N, 2) -> U(z) (N,)
_LOG_HALF = math.log(0.5)


def two_gaussians(mean: float = 1.5, std: float = 1.0) -> Energy:
    r"""Report 003's target as an energy: :math:`U = -\log p` for the equal mixture of
    :math:`N((-m, -m), s^2 I)` and :math:`N((m, m), s^2 I)` (normalised: :math:`\log Z = 0`)."""
    centres = torch.tensor([[-mean, -mean], [mean, mean]])

    def u(z: Tensor) -> Tensor:
        c = centres.to(z)
        sq = ((z.unsqueeze(-2) - c) ** 2).sum(dim=-1) / std**2  # (N, 2)
        log_comp = -0.5 * sq - math.log(2 * math.pi * std**2)
        return -(torch.logsumexp(log_comp, dim=-1) + _LOG_HALF)

    return u


def _w1(z: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z[..., 0] / 4)


def _u1(z: Tensor) -> Tensor:
    r = z.norm(dim=-1)
    lobes = torch.stack([-0.5 * ((z[..., 0] - 2) / 0.6) ** 2, -0.5 * ((z[..., 0] + 2) / 0.6) ** 2], dim=-1)
    return 0.5 * ((r - 2) / 0.4) ** 2 - torch.logsumexp(lobes, dim=-1)


def _u2(z: Tensor) -> Tensor:
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2


def _u3(z: Tensor) -> Tensor:
    w2 = 3 * torch.exp(-0.5 * ((z[..., 0] - 1) / 0.6) ** 2)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + w2) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b], dim=-1), dim=-1)


def _u4(z: Tensor) -> Tensor:
    w3 = 3 * torch.sigmoid((z[..., 0] - 1) / 0.3)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + w3) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b], dim=-1), dim=-1)


ENERGIES: dict[str, Energy] = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


def energy(name: str) -> Energy:
    """One of Rezende & Mohamed's energies ``"U1"``-``"U4"`` (log-sum-exp forms, no ``+1e-6`` floors)."""
    if name not in ENERGIES:
        raise ValueError(f"unknown energy {name!r}; known: {', '.join(ENERGIES)}")
    return ENERGIES[name]


def walled(u: Energy, box: float = 4.0, steepness: float = 10.0) -> Energy:
    r"""A proper version of ``u``: adds :math:`\tfrac{k}{2} \sum_i \max(|z_i| - L, 0)^2` (``L = box``,
    ``k = steepness``), so the density decays like a Gaussian outside :math:`[-L, L]^2`."""

    def w(z: Tensor) -> Tensor:
        excess = (z.abs() - box).clamp_min(0.0)
        return u(z) + 0.5 * steepness * (excess**2).sum(dim=-1)

    return w


def log_partition(u: Energy, box: float = 8.0, n: int = 801) -> float:
    r""":math:`\log \int_{[-L, L]^2} e^{-U}` by the trapezoid rule on an ``n x n`` grid (float64)."""
    t = torch.linspace(-box, box, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 2)
    neg_u = -u(grid).reshape(n, n)
    weights = torch.ones(n, dtype=torch.float64)
    weights[0] = weights[-1] = 0.5
    log_w = (weights[:, None] * weights[None, :]).log() + 2 * math.log(t[1] - t[0])
    return float(torch.logsumexp(neg_u + log_w, dim=(0, 1)))


@dataclass
class FlowFit:
    """The result of :func:`fit_flow`.

    Attributes:
        flow: the fitted :class:`PlanarFlow`.
        free_energy: the final :math:`E_q[\\log q + U]` (float64, ``n_eval`` fresh samples).
        kl: ``free_energy + log Z`` when ``log_z`` was given, else ``None``.
        mass_outside: the fraction of the fitted q's samples outside ``[-4, 4]^2``.
        losses: the training loss per step.
    """

    flow: PlanarFlow
    free_energy: float
    kl: float | None
    mass_outside: float
    losses: list[float] = field(default_factory=list)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples ``(n, 2)`` of the fitted density."""
        z0 = torch.randn(n, self.flow.dim, generator=generator, dtype=self.flow.u.dtype)
        return self.flow(z0)[0]

    @torch.no_grad()
    def log_prob(self, z: Tensor) -> Tensor:
        """The fitted log-density at points ``z`` ``(N, 2)`` (by numerical inversion)."""
        z0 = self.flow.inverse(z.to(self.flow.u.dtype))
        _, log_det, _ = self.flow(z0)
        return _log_q(z0, log_det)


def _log_q(z0: Tensor, log_det: Tensor) -> Tensor:
    """log q_K(z_K) = log N(z_0; 0, I) - sum_k log|det J_k|."""
    return -0.5 * (z0**2).sum(dim=-1) - 0.5 * z0.shape[-1] * math.log(2 * math.pi) - log_det


def _free_energy(flow: PlanarFlow, u: Energy, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    z0 = torch.randn(n, flow.dim, generator=generator, dtype=flow.u.dtype)
    z, log_det, _ = flow(z0)
    return _log_q(z0, log_det) + u(z), z


def fit_flow(
    u: Energy,
    n_flows: int = 15,
    steps: int = 1500,
    lr: float = 1e-3,
    batch_size: int = 1000,
    seed: int = 0,
    log_z: float | None = None,
    anneal_steps: int = 0,
    n_eval: int = 200_000,
) -> FlowFit:
    r"""Fit a standard-normal base and ``n_flows`` planar layers to :math:`\exp(-U)` by reverse KL (Adam).

    Args:
        u: the energy, ``(N, 2) -> (N,)``.
        n_flows: ``K``.
        steps: Adam steps.
        lr: the learning rate.
        batch_size: samples per step.
        seed: seeds the initial layers and the samples.
        log_z: the target's log-normaliser (0 for :func:`two_gaussians`; see
            :func:`log_partition`): then the result has the KL.
        anneal_steps: > 0 multiplies ``U`` by :math:`\min(1, 0.01 + t/\texttt{anneal\_steps})`
            during training (Rezende & Mohamed's annealed free energy).
        n_eval: fresh samples for the final estimate (float64).
    """
    torch.manual_seed(seed)
    flow = PlanarFlow(2, n_flows)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        z0 = torch.randn(batch_size, 2, generator=gen)
        z, log_det, _ = flow(z0)
        log_q = _log_q(z0, log_det)
        weight = min(1.0, 0.01 + step / anneal_steps) if anneal_steps else 1.0
        loss = (log_q + weight * u(z)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"the free energy became {losses[-1]} at step {step + 1}; lower lr={lr}")
    flow64 = PlanarFlow(2, n_flows).double()
    flow64.load_state_dict({k: v.double() for k, v in flow.state_dict().items()})
    with torch.no_grad():
        values, z = _free_energy(flow64, u, n_eval, torch.Generator().manual_seed(seed + 2))
    free = float(values.mean())
    outside = float((z.abs() > 4).any(dim=-1).double().mean())
    return FlowFit(flow64, free, free + log_z if log_z is not None else None, outside, losses)
