"""Contract checks for components: scores, posteriors, likelihoods, corruptions, encoders and decoders."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from vaerepair.corruptions import Corruption
from vaerepair.distributions import (
    BernoulliImage,
    ContinuousBernoulliImage,
    DiagonalGaussian,
    GaussianImage,
)
from vaerepair.flows import PlanarFlowDistribution, push_forward
from vaerepair.testing.report import CheckReport

__all__ = ["check_score", "check_posterior", "check_likelihood", "check_corruption", "check_network"]


def _finish(report: CheckReport, raise_on_failure: bool) -> CheckReport:
    return report.raise_if_failed() if raise_on_failure else report


def _close(a: Tensor, b: Tensor, rtol: float, atol: float) -> tuple[bool, str]:
    if a.shape != b.shape:
        return False, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    a, b = a.detach(), b.detach()
    err = (a - b).abs()
    bad = err > atol + rtol * b.abs()
    if bool(bad.any()):
        i = int(err.flatten().argmax())
        return False, f"max abs error {float(err.max()):.3g} (got {float(a.flatten()[i]):.6g}, expected " \
                      f"{float(b.flatten()[i]):.6g})"
    return True, ""


def check_score(
    score: Callable[[Tensor], Tensor],
    log_density: Callable[[Tensor], Tensor],
    points: Tensor,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    name: str = "score",
    raise_on_failure: bool = True,
) -> CheckReport:
    r"""Check a score function against autograd of its log-density, in float64.

    ``score(z)`` must equal :math:`\nabla_z \log p(z)` computed by
    ``torch.autograd.grad(log_density(z).sum(), z)``, where ``log_density`` maps
    points ``(..., D)`` to one value per point ``(...)`` (each point's value may
    depend only on that point).

    Args:
        score: the function to check, ``(..., D) -> (..., D)``.
        log_density: the log-density, ``(..., D) -> (...)``.
        points: where to compare (cast to float64).
        rtol: relative tolerance.
        atol: absolute tolerance.
        name: what to call it in the messages.
        raise_on_failure: raise :class:`~vaerepair.testing.ContractError` on failure.
    """
    report = CheckReport(f"check_score({name})")
    z = points.detach().to(torch.float64).requires_grad_(True)
    (expected,) = torch.autograd.grad(log_density(z).sum(), z)
    got = score(z.detach())
    ok, why = _close(got.to(torch.float64), expected, rtol, atol)
    report.add("score equals autograd of the log-density", ok, f"{name}(z) differs from grad log p(z): {why}")
    return _finish(report, raise_on_failure)


def _central_differences(log_prob: Callable[[Tensor], Tensor], z: Tensor, h: float = 1e-5) -> Tensor:
    """Gradient of ``log_prob`` ``(B, D) -> (B,)`` by central differences (float64)."""
    eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    return torch.stack([(log_prob(z + h * e) - log_prob(z - h * e)) / (2 * h) for e in eye], dim=-1)


def _independent_log_prob(q: Any, z: Tensor) -> Tensor | None:
    """log q(z) computed another way: torch.distributions, or the change of variables with a Jacobian."""
    if type(q) is DiagonalGaussian:
        return torch.distributions.Independent(torch.distributions.Normal(q.loc, q.scale), 1).log_prob(z)
    if isinstance(q, PlanarFlowDistribution):
        z0 = q._invert(z.detach())
        rows = []
        for b in range(z0.shape[-2]):
            # amortised layers (w of shape (B, D)) are per image; global ones (D,) are shared
            layers = [type(p)(*(t[b : b + 1] for t in p)) if p.w.dim() == 2 else p for p in q.layers]
            jac = jacobian(lambda v, layers=layers: push_forward(v[None], layers)[0][0], z0[b])
            base = torch.distributions.Independent(torch.distributions.Normal(q.base.loc[b], q.base.scale[b]), 1)
            rows.append(base.log_prob(z0[b]) - torch.linalg.slogdet(jac)[1])
        return torch.stack(rows)
    return None


def check_posterior(
    posterior: nn.Module, in_features: int | None = None, batch: int = 3, has_density: bool = True,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Check a posterior head: features ``(B, F)`` -> a distribution over ``(B, D)``.

    In float64 (on a copy): ``rsample`` shapes ``(B, D)`` and ``(S, B, D)``;
    gradients from the draws reach every trainable parameter; ``log_prob`` is
    ``(B,)`` and finite; at the drawn samples it equals ``log_prob`` of a fresh
    copy of them (a cached value against a recomputed one) and an independent
    computation (``torch.distributions`` for the Gaussian, the change of
    variables with an autograd Jacobian for planar flows); ``score`` (when
    present) equals autograd of ``log_prob`` at fresh points. With
    ``has_density=False`` (a point mass) only the draws are checked.
    """
    import copy

    head = copy.deepcopy(posterior).double()
    f = in_features if in_features is not None else getattr(head, "in_features", None)
    if f is None:
        raise ValueError("pass in_features: the posterior has no in_features attribute")
    report = CheckReport(f"check_posterior({type(posterior).__name__})")
    features = torch.randn(batch, f, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    q = head(features)
    z = q.rsample()
    d = z.shape[-1]
    report.add("rsample() is (B, D)", z.dim() == 2 and z.shape[0] == batch, f"got {tuple(z.shape)}")
    z_s = head(features).rsample(3)
    report.add("rsample(S) is (S, B, D)", tuple(z_s.shape) == (3, batch, d), f"got {tuple(z_s.shape)}")
    params = [p for p in head.parameters() if p.requires_grad]
    if params:
        grads = torch.autograd.grad(z.square().sum(), params, allow_unused=True, retain_graph=True)
        dead = [n for (n, p), g in zip([(n, p) for n, p in head.named_parameters() if p.requires_grad], grads,
                                       strict=True) if g is None or not bool(g.abs().sum() > 0)]
        report.add("draws are reparameterised", not dead, f"no gradient from rsample() reaches {', '.join(dead)}")
    if not has_density:
        return _finish(report, raise_on_failure)
    lp = q.log_prob(z)
    report.add("log_prob is (B,) and finite", lp.shape == (batch,) and bool(torch.isfinite(lp).all()),
               f"got shape {tuple(lp.shape)}, values {lp.detach().tolist()}")
    fresh = q.log_prob(z.detach().clone())
    ok, why = _close(fresh, lp.detach(), 1e-8, 1e-8)
    report.add("log_prob of the draws equals log_prob recomputed", ok, why)
    independent = _independent_log_prob(q, z.detach())
    if independent is not None:
        ok, why = _close(fresh, independent, 1e-8, 1e-8)
        report.add("log_prob equals an independent computation", ok, why)
    if hasattr(q, "score"):
        # against central differences of log_prob (a flow's log_prob at new points goes through a numerical
        # inverse that autograd does not follow), at the draws and at fresh points
        fresh_points = (z.detach() + 0.1 * torch.randn_like(z)).clone()
        for where, points, score in (("at the draws", z, q.score(z)), ("at new points", fresh_points, None)):
            got = (score if score is not None else q.score(points)).detach()
            ok, why = _close(got, _central_differences(q.log_prob, points.detach()), 1e-5, 1e-6)
            report.add(f"posterior score {where} equals differences of log_prob", ok, why)
        probe = fresh_points.clone().requires_grad_(True)
        lp_probe = q.log_prob(probe)
        grad_z = torch.autograd.grad(lp_probe.sum(), probe, allow_unused=True)[0] if lp_probe.requires_grad else None
        if grad_z is not None:  # log_prob is differentiable in z (a flow's goes through a numerical inverse)
            report.extend(check_score(q.score, q.log_prob, fresh_points, rtol=1e-8, atol=1e-10,
                                      name="posterior score", raise_on_failure=False))
    return _finish(report, raise_on_failure)


def _reference_log_prob(p: Any, x: Tensor) -> Tensor | None:
    def indep(dist: torch.distributions.Distribution) -> Tensor:
        return dist.log_prob(x.expand_as(dist.mean)).sum(dim=(-3, -2, -1))

    if type(p) is BernoulliImage:
        return indep(torch.distributions.Bernoulli(logits=p.logits, validate_args=False))
    if type(p) is ContinuousBernoulliImage:
        return indep(torch.distributions.ContinuousBernoulli(logits=p.logits, validate_args=False))
    if type(p) is GaussianImage:
        scale = torch.as_tensor(p.scale, dtype=p.loc.dtype).expand_as(p.loc)
        return indep(torch.distributions.Normal(p.loc, scale))
    return None


def check_likelihood(
    likelihood: nn.Module, image_shape: tuple[int, int, int] = (1, 4, 4), batch: int = 3,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Check a likelihood: decoder outputs ``(B, C * P, H, W)`` -> an image distribution.

    In float64: ``log_prob(x)`` is ``(B,)``, finite on images in ``[0, 1]`` (edges
    included) and carries a leading sample dimension ``(S, B)``; ``mean`` is
    ``(B, C, H, W)``; gradients reach the decoder outputs (and the likelihood's
    own parameters); ``log_prob`` equals ``torch.distributions`` for the built-in
    kinds; ``x_score`` / ``x_laplacian`` / ``param_score`` (when present) equal autograd.
    """
    import copy

    lik = copy.deepcopy(likelihood).double()
    c, h, w = image_shape
    per_pixel = int(getattr(lik, "params_per_pixel", 1))
    report = CheckReport(f"check_likelihood({type(likelihood).__name__})")
    g = torch.Generator().manual_seed(0)
    params = torch.randn(batch, c * per_pixel, h, w, dtype=torch.float64, generator=g).requires_grad_(True)
    x = torch.rand(batch, c, h, w, dtype=torch.float64, generator=g)
    x[0] = 0.0
    x[-1] = 1.0
    p = lik(params)
    lp = p.log_prob(x)
    report.add("log_prob is (B,) and finite", lp.shape == (batch,) and bool(torch.isfinite(lp).all()),
               f"got shape {tuple(lp.shape)}, values {lp.detach().tolist()}")
    report.add("mean is (B, C, H, W)", tuple(p.mean.shape) == (batch, c, h, w), f"got {tuple(p.mean.shape)}")
    stacked = lik(torch.stack([params, params.flip(0)]))
    lp_s = stacked.log_prob(x)
    ok, why = _close(lp_s[0].detach(), lp.detach(), 1e-10, 1e-10) if lp_s.shape == (2, batch) else (
        False, f"shape {tuple(lp_s.shape)} instead of (2, {batch})")
    report.add("a leading sample dimension is carried", ok, why)
    wrt = [params, *[q for q in lik.parameters() if q.requires_grad]]
    grads = torch.autograd.grad(lp.sum(), wrt, allow_unused=True)
    report.add("gradients reach the decoder outputs and parameters",
               all(gr is not None and bool(torch.isfinite(gr).all()) and bool(gr.abs().sum() > 0) for gr in grads),
               "log_prob is not differentiable in the decoder outputs (or in the likelihood's parameters)")
    reference = _reference_log_prob(p, x)
    if reference is not None:
        ok, why = _close(lp.detach(), reference.detach(), 1e-9, 1e-9)
        report.add("log_prob equals torch.distributions", ok, why)
    if hasattr(p, "x_score"):
        report.extend(check_score(lambda v: p.x_score(v.view_as(x)).flatten(1),
                                  lambda v: p.log_prob(v.view_as(x)), x.flatten(1), name="x_score",
                                  raise_on_failure=False))
    if hasattr(p, "param_score"):
        tensor, derivative = p.param_score(x)
        (expected,) = torch.autograd.grad(p.log_prob(x).sum(), tensor)
        ok, why = _close(derivative, expected, 1e-8, 1e-10)
        report.add("param_score equals autograd", ok, why)
    if hasattr(p, "x_laplacian"):
        xv = x.clone().requires_grad_(True)
        (score,) = torch.autograd.grad(p.log_prob(xv).sum(), xv, create_graph=True)
        second = torch.autograd.grad(score.sum(), xv, allow_unused=True)[0] if score.requires_grad else None
        expected = second.flatten(1).sum(1) if second is not None else torch.zeros(batch, dtype=torch.float64)
        ok, why = _close(p.x_laplacian(x).detach().expand(batch), expected.detach(), 1e-8, 1e-8)
        report.add("x_laplacian equals autograd", ok, why)
    return _finish(report, raise_on_failure)


def check_corruption(
    corruption: Corruption, x: Tensor | None = None, value_range: tuple[float, float] | None = (0.0, 1.0),
    raise_on_failure: bool = True,
) -> CheckReport:
    """Check a corruption on images ``(B, C, H, W)`` in ``[0, 1]`` (default: a random float32 batch).

    Shape, dtype and device are kept (float32 and float64); values stay in
    ``value_range`` (``None``: not checked, e.g. unclipped Gaussian noise); the
    input is not changed in place; the mask (``return_mask=True``) is boolean,
    shaped like the images, and every pixel outside it is unchanged; the same
    generator seed gives the same result, with or without the mask.
    """
    report = CheckReport(f"check_corruption({corruption!r})")
    if x is None:
        x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x = x.clone()  # the caller's images stay untouched, whatever the corruption does to its input
    for images in (x.clone(), x.double()):
        kept = images.clone()
        out = corruption(images, generator=torch.Generator(images.device).manual_seed(1))
        tag = str(images.dtype).removeprefix("torch.")
        report.add(f"shape, dtype and device kept ({tag})",
                   out.shape == images.shape and out.dtype == images.dtype and out.device == images.device,
                   f"input {tuple(images.shape)} {images.dtype} on {images.device}, output {tuple(out.shape)} "
                   f"{out.dtype} on {out.device}")
        report.add(f"input not changed in place ({tag})", torch.equal(images, kept),
                   "the corruption modified its input tensor: work on a copy")
        if value_range is not None:
            lo, hi = value_range
            report.add(f"values in [{lo}, {hi}] ({tag})", bool(((out >= lo) & (out <= hi)).all()),
                       f"values span [{float(out.min()):.4g}, {float(out.max()):.4g}]")
    gen = torch.Generator(x.device)
    a = corruption(x.clone(), generator=gen.manual_seed(7))  # a copy each call: an in-place one was reported
    b = corruption(x.clone(), generator=gen.manual_seed(7))
    report.add("reproducible with a generator", torch.equal(a, b), "the same generator seed gave different results")
    result = corruption(x.clone(), generator=gen.manual_seed(7), return_mask=True)
    images, mask = result
    report.add("return_mask gives the same images", torch.equal(images, a),
               "return_mask=True changed the corrupted images drawn with the same seed")
    report.add("mask is boolean and shaped like the images", mask.dtype == torch.bool and mask.shape == x.shape,
               f"got {mask.dtype} {tuple(mask.shape)}")
    if mask.shape == x.shape:
        outside = ~mask
        report.add("pixels outside the mask are unchanged", torch.equal(images[outside], x[outside]),
                   f"{int((images[outside] != x[outside]).sum())} pixels changed outside the mask")
    return _finish(report, raise_on_failure)


def check_network(
    factory: Callable[[], nn.Module], input_shape: tuple[int, ...], batch: int = 3, raise_on_failure: bool = True,
) -> CheckReport:
    """Check an encoder or decoder built by ``factory()`` on inputs ``(B, *input_shape)``.

    The output has one row per input; gradients reach every trainable
    parameter; images are independent in eval mode (one input alone gives
    the same output as in the batch); a ``state_dict`` saved with
    ``torch.save`` and loaded into a fresh ``factory()`` reproduces the outputs,
    and loads with ``weights_only=True``.
    """
    net = factory()
    report = CheckReport(f"check_network({type(net).__name__})")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *input_shape, generator=g)
    out = net(x)
    report.add("one output row per input", out.shape[0] == batch, f"got output {tuple(out.shape)} for {batch} inputs")
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.square().sum(), [p for _, p in named], allow_unused=True)
    dead = [n for (n, _), gr in zip(named, grads, strict=True) if gr is None or not bool(gr.abs().sum() > 0)]
    report.add("gradients reach every parameter", not dead, f"no gradient reaches {', '.join(dead)}")
    net.eval()
    with torch.no_grad():
        batched, alone = net(x), net(x[1:2])
    ok, why = _close(alone, batched[1:2], 1e-5, 1e-6)
    report.add("inputs are independent (eval mode)", ok, why)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = factory()
    try:
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        fresh.eval()
        with torch.no_grad():
            ok, why = _close(fresh(x), batched, 0.0, 0.0)
    except Exception as err:  # the round trip itself failed
        ok, why = False, f"{type(err).__name__}: {err}"
    report.add("state_dict save/load round trip", ok, why)
    report.add("finite outputs", bool(torch.isfinite(batched).all()), "some outputs are NaN or infinite")
    return _finish(report, raise_on_failure)
