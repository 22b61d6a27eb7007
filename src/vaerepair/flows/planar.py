r"""Planar flows (Rezende & Mohamed, 2015): :math:`f(z) = z + \hat u \tanh(w^\top z + b)`.

Invertibility is built in: ``u`` is reparameterised so that
:math:`w^\top \hat u = -1 + \mathrm{softplus}(w^\top u) > -1`,

.. math::
    \hat u = u + \big[m(w^\top u) - w^\top u\big] \frac{w}{\|w\|^2}, \qquad m(a) = -1 + \mathrm{softplus}(a),

and the log-determinant uses the cancellation-free form
:math:`\log(1 + \hat u^\top \psi) = \log\big(t^2 + (1 - t^2)\,\mathrm{softplus}(w^\top u)\big)`,
:math:`t = \tanh(w^\top z + b)`, :math:`\psi = (1 - t^2) w`.

Parameters broadcast: ``u``, ``w`` of shape ``(D,)`` (global, shared by all
images) or ``(B, D)`` (amortised, one layer per image) act on ``z`` of shape
``(B, D)`` or ``(S, B, D)``; ``b`` has the shape of ``u`` without the last axis.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PlanarParams", "planar_params", "split_layers", "planar_step", "planar_forward", "planar_score_step",
    "planar_inverse",
]

_TINY = 1e-30  # floor of ||w||^2 (w = 0 makes the layer a translation; u_hat = u then)


class PlanarParams(NamedTuple):
    """One planar layer's constrained parameters.

    Attributes:
        u_hat: the constrained ``u``, ``(..., D)``.
        w: ``(..., D)``.
        b: ``(...)``.
        softplus_wu: :math:`\\mathrm{softplus}(w^\\top u)` ``(...)``, kept for the stable log-determinant
            (:math:`w^\\top \\hat u = \\texttt{softplus\\_wu} - 1`).
    """

    u_hat: Tensor
    w: Tensor
    b: Tensor
    softplus_wu: Tensor


def planar_params(u: Tensor, w: Tensor, b: Tensor) -> PlanarParams:
    """Constrain raw ``(u, w, b)`` so the layer is invertible: any raw values give a valid layer."""
    if u.shape != w.shape or b.shape != u.shape[:-1]:
        raise ValueError(
            f"planar parameters must have u, w of shape (..., D) and b of shape (...), got u {tuple(u.shape)}, "
            f"w {tuple(w.shape)}, b {tuple(b.shape)}"
        )
    wu = torch.linalg.vecdot(w, u)
    sp = F.softplus(wu)
    w_sq = torch.linalg.vecdot(w, w).clamp_min(_TINY)
    u_hat = torch.addcmul(u, ((sp - 1.0 - wu) / w_sq).unsqueeze(-1), w)
    return PlanarParams(u_hat, w, b, sp)


def split_layers(p: PlanarParams, dim: int = -2) -> list[PlanarParams]:
    """Layers stacked along ``dim`` of ``u_hat``/``w`` (``(..., K, D)``, ``b`` ``(..., K)``) as a list of K layers.

    Constraining all K layers in one :func:`planar_params` call and splitting
    them afterwards costs a few tensor operations instead of a few per layer.
    """
    scalar_dim = dim if dim >= 0 else dim + 1  # the same axis of b and softplus_wu, which lack the last one
    return [PlanarParams(*parts) for parts in zip(p.u_hat.unbind(dim), p.w.unbind(dim), p.b.unbind(scalar_dim),
                                                   p.softplus_wu.unbind(scalar_dim), strict=True)]


def _pre_activation(z: Tensor, p: PlanarParams) -> Tensor:
    if p.w.dim() == 1:  # global layer: one matrix-vector product
        return torch.addmv(p.b, z.reshape(-1, z.shape[-1]), p.w).view(z.shape[:-1])
    return torch.linalg.vecdot(z, p.w) + p.b


def planar_step(z: Tensor, p: PlanarParams) -> tuple[Tensor, Tensor]:
    r"""One layer: ``(f(z), det J)`` with :math:`\det J = t^2 + (1 - t^2)\,\mathrm{softplus}(w^\top u) > 0`."""
    t = torch.tanh(_pre_activation(z, p))
    det = torch.addcmul(p.softplus_wu, t * t, 1.0 - p.softplus_wu)
    return torch.addcmul(z, p.u_hat, t.unsqueeze(-1)), det


def planar_forward(z: Tensor, p: PlanarParams) -> tuple[Tensor, Tensor]:
    r"""One layer: ``(f(z), log|det J|)``, ``f(z)`` shaped like ``z`` ``(..., D)``, the log-det ``(...)``."""
    z_new, det = planar_step(z, p)
    return z_new, torch.log(det)


def planar_score_step(z: Tensor, g: Tensor, p: PlanarParams) -> tuple[Tensor, Tensor, Tensor]:
    r"""One layer with the score pushed through it exactly.

    Given :math:`z_{k-1}` and :math:`g_{k-1} = \nabla \log q_{k-1}(z_{k-1})`, returns
    ``(z_k, log|det J_k|, g_k)`` where, with :math:`h' = 1 - t^2`,
    :math:`h'' = -2 t h'`, :math:`\alpha = w^\top \hat u` and :math:`\det = 1 + h' \alpha`,

    .. math::
        r = g_{k-1} - \frac{h'' \alpha}{\det} w, \qquad
        g_k = J_k^{-\top} r = r - \psi \frac{\hat u^\top r}{\det}
        \quad (\text{Sherman-Morrison}, \ \psi = h' w).
    """
    t = torch.tanh(_pre_activation(z, p))
    t2 = t * t
    h1 = 1.0 - t2
    det = t2 + h1 * p.softplus_wu
    alpha = p.softplus_wu - 1.0
    h2 = -2.0 * t * h1
    r = g - (h2 * alpha / det).unsqueeze(-1) * p.w
    g_new = r - (h1 * (p.u_hat * r).sum(dim=-1) / det).unsqueeze(-1) * p.w
    return z + p.u_hat * t.unsqueeze(-1), torch.log(det), g_new


@torch.no_grad()
def planar_inverse(y: Tensor, p: PlanarParams, tol: float = 1e-12, max_iter: int = 100) -> Tensor:
    r"""Invert one layer numerically: the ``z`` with ``f(z) = y`` ``(..., D)``.

    With :math:`a = w^\top z`, the layer gives :math:`w^\top y = a + \alpha \tanh(a + b)`, a strictly
    increasing function of ``a`` (:math:`\alpha > -1`); its root lies in
    :math:`[w^\top y - |\alpha|, w^\top y + |\alpha|]` and is found by Newton steps safeguarded by
    bisection. Then :math:`z = y - \hat u \tanh(a + b)`. No gradient flows through the solve.
    """
    y_w = (y * p.w).sum(dim=-1)
    alpha = (p.softplus_wu - 1.0).expand_as(y_w)
    b = p.b.expand_as(y_w)
    lo, hi = y_w - alpha.abs(), y_w + alpha.abs()
    a = y_w.clone()
    for _ in range(max_iter):
        t = torch.tanh(a + b)
        residual = a + alpha * t - y_w
        done = residual.abs() <= tol * (1.0 + y_w.abs())  # tested before moving: converged entries stay
        if bool(done.all()):
            break
        lo = torch.where(residual < 0, a, lo)
        hi = torch.where(residual > 0, a, hi)
        newton = a - residual / (1.0 + alpha * (1.0 - t * t))
        inside = (newton > lo) & (newton < hi)
        a = torch.where(done, a, torch.where(inside, newton, 0.5 * (lo + hi)))
    return y - p.u_hat * torch.tanh(a + b).unsqueeze(-1)
