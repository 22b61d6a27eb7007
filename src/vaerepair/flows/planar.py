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
    "PlanarParams", "planar_params", "split_layers", "planar_pre_activation", "planar_step", "planar_forward",
    "planar_score_step",
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
    # softplus(w^T u) is the determinant's floor (t = +-1 aside): kept above the dtype's smallest normal number, so
    # a nearly singular layer (w^T u << 0) has a finite log-determinant instead of log 0 = -inf
    sp = F.softplus(wu).clamp_min(torch.finfo(wu.dtype).tiny)
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


def planar_pre_activation(z: Tensor, p: PlanarParams) -> Tensor:
    if p.w.dim() == 1:  # global layer: one matrix-vector product
        return torch.addmv(p.b, z.reshape(-1, z.shape[-1]), p.w).view(z.shape[:-1])
    return torch.linalg.vecdot(z, p.w) + p.b


def planar_step(z: Tensor, p: PlanarParams) -> tuple[Tensor, Tensor]:
    r"""One layer: ``(f(z), det J)`` with :math:`\det J = t^2 + (1 - t^2)\,\mathrm{softplus}(w^\top u) > 0`."""
    t = torch.tanh(planar_pre_activation(z, p))
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
    t = torch.tanh(planar_pre_activation(z, p))
    t2 = t * t
    h1 = 1.0 - t2
    det = t2 + h1 * p.softplus_wu
    alpha = p.softplus_wu - 1.0
    h2 = -2.0 * t * h1
    r = g - (h2 * alpha / det).unsqueeze(-1) * p.w
    g_new = r - (h1 * (p.u_hat * r).sum(dim=-1) / det).unsqueeze(-1) * p.w
    return z + p.u_hat * t.unsqueeze(-1), torch.log(det), g_new


@torch.no_grad()
def planar_inverse(y: Tensor, p: PlanarParams, tol: float | None = None, max_iter: int = 100) -> Tensor:
    r"""Invert one layer numerically: the ``z`` with ``f(z) = y`` ``(..., D)``.

    With :math:`a = w^\top z`, the layer gives :math:`w^\top y = a + \alpha \tanh(a + b)`, a strictly
    increasing function of ``a`` (:math:`\alpha > -1`) whose slope is the layer's
    :math:`\det J = t^2 + (1 - t^2)\,\mathrm{softplus}(w^\top u)` (computed without cancellation); its root
    lies in :math:`[w^\top y - |\alpha|, w^\top y + |\alpha|]` and is found by Newton steps safeguarded by
    bisection. Then :math:`z = y - \hat u \tanh(a + b)`. No gradient flows through the solve.

    The iteration stops per entry once the error left after the current Newton correction
    ``delta = residual / det J``, about :math:`\kappa \delta^2` with :math:`\kappa = |f''| / 2 f'`, is
    below ``tol (1 + |a|)`` (the error in ``a`` itself: a near-singular layer, whose small slope
    amplifies a small residual, keeps iterating), or when the residual is at the rounding level of its
    own terms (nothing more can be gained); the last correction is applied. ``tol`` defaults to the
    dtype's epsilon, so float32 and float64 both stop at their own precision.
    """
    eps = torch.finfo(y.dtype).eps if tol is None else float(tol)
    root_eps = eps**0.5
    y_w = (y * p.w).sum(dim=-1)
    sp = p.softplus_wu.expand_as(y_w)
    alpha, one_minus_sp = sp - 1.0, 1.0 - sp
    b = p.b.expand_as(y_w)
    lo, hi = y_w - alpha.abs(), y_w + alpha.abs()
    a = y_w.clone()
    floor = 4 * eps * (y_w.abs() + alpha.abs())  # the rounding level of the residual's terms (with |a|)
    finished = torch.zeros_like(y_w, dtype=torch.bool)
    for step in range(max_iter):
        t = torch.tanh(a + b)
        t2 = t * t
        residual = torch.addcmul(a - y_w, alpha, t)
        slope = torch.addcmul(sp, t2, one_minus_sp)
        correction = residual / slope
        if step < 2:  # safeguarded Newton steps; no entry converges this early from a = w^T y
            lo = torch.where(residual < 0, a, lo)
            hi = torch.where(residual > 0, a, hi)
            newton = a - correction
            a = torch.where((newton >= lo) & (newton <= hi), newton, 0.5 * (lo + hi))
            continue
        # Newton's error after this correction is about kappa * correction^2, kappa = |f''| / (2 f')
        kappa = (alpha * t * (1.0 - t2)).abs() / slope
        scale = 1.0 + a.abs()
        close = (correction.abs() <= root_eps * scale) & (kappa * correction.square() <= eps * scale)
        done = finished | close | (residual.abs() <= floor + 4 * eps * a.abs())
        lo = torch.where(residual < 0, a, lo)
        hi = torch.where(residual > 0, a, hi)
        newton = a - correction
        inside = (newton >= lo) & (newton <= hi)
        # a converged entry takes its last (tiny) Newton correction, then stays
        a = torch.where(finished, a, torch.where(inside, newton, torch.where(done, a, 0.5 * (lo + hi))))
        finished = done
        if bool(finished.all()):
            break
    return y - p.u_hat * torch.tanh(a + b).unsqueeze(-1)
