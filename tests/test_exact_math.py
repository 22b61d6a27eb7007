"""Float64 formulas against 40-digit references (mpmath): exact to rounding on the whole line."""

from __future__ import annotations

import mpmath
import torch

from vaerepair.distributions.likelihoods import _continuous_bernoulli_mean, _log_normaliser

EPS = torch.finfo(torch.float64).eps


def _relative_errors(ours: torch.Tensor, reference: list[mpmath.mpf]) -> torch.Tensor:
    ref = torch.tensor([float(r) for r in reference], dtype=torch.float64)
    return (ours - ref).abs() / ref.abs().clamp_min(1e-300)


def test_continuous_bernoulli_normaliser_mean_and_gradient_to_float64_rounding():
    mpmath.mp.dps = 40
    grid = torch.cat([torch.linspace(-4, 4, 801, dtype=torch.float64),  # every switch point inside
                      torch.tensor([1e-9, -3e-5, 0.0999999, 0.1, 0.1000001, 0.9999999, 1.0, 1.0000001, 25.0, -60.0],
                                   dtype=torch.float64)])
    grid = grid[grid != 0]

    def log_c(v: mpmath.mpf) -> mpmath.mpf:
        return mpmath.log(v / mpmath.tanh(v / 2))

    points = [mpmath.mpf(v) for v in grid.tolist()]
    x = grid.clone().requires_grad_(True)
    values = _log_normaliser(x)
    (grad,) = torch.autograd.grad(values.sum(), x)
    value_err = _relative_errors(values.detach(), [log_c(v) for v in points])
    mean_err = _relative_errors(_continuous_bernoulli_mean(grid), [1 / (1 - mpmath.exp(-v)) - 1 / v for v in points])
    grad_err = _relative_errors(grad, [1 / v - 1 / mpmath.sinh(v) for v in points])
    # the error curve, in units of float64 epsilon (the series were cut one term early: 1e-7 relative gradient)
    assert float(value_err.max()) < 4 * EPS, float(value_err.max()) / EPS
    assert float(mean_err.max()) < 4 * EPS, float(mean_err.max()) / EPS
    assert float(grad_err.max()) < 16 * EPS, float(grad_err.max()) / EPS
    zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    assert float(_continuous_bernoulli_mean(zero.detach())) == 0.5
    assert float(_log_normaliser(zero).detach()) == float(mpmath.log(2))


def test_planar_inverse_is_exact_to_the_conditioning_on_near_singular_layers():
    from vaerepair.flows.planar import planar_forward, planar_inverse, planar_params

    # w^T u = -30 ||w||^2: det J = t^2 + (1 - t^2) softplus(-30), from 1e-8 (t = 1e-4) to 1e-2 (t = 0.1)
    w = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    u = -30 * w + torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
    p = planar_params(u, w, torch.tensor(0.0, dtype=torch.float64))
    s = torch.tensor([1e-4, 3e-4, 1e-3, 1e-2, 0.1], dtype=torch.float64)
    z = s[:, None] * w + torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)
    y, log_det = planar_forward(z, p)
    error = (planar_inverse(y, p) - z).norm(dim=-1)
    # the best possible is about eps / det J (y itself is rounded); a residual test at 1e-12 gave 1e-12 / det J
    assert bool((error * log_det.exp() <= 4 * EPS).all()), (error * log_det.exp() / EPS).tolist()


def test_planar_inverse_stops_at_each_dtypes_precision():
    from vaerepair.flows.planar import planar_forward, planar_inverse, planar_params

    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        eps = torch.finfo(dtype).eps
        u, w, b = torch.randn(64, 5, dtype=dtype), torch.randn(64, 5, dtype=dtype), torch.randn(64, dtype=dtype)
        p = planar_params(u, w, b)
        z = torch.randn(64, 5, dtype=dtype)
        y, log_det = planar_forward(z, p)
        error = (planar_inverse(y, p) - z).norm(dim=-1)
        bound = 64 * eps * (1 + y.norm(dim=-1) + p.u_hat.norm(dim=-1)) / log_det.exp()
        assert bool((error <= bound).all()), dtype
        # it stops within a dozen steps (a fixed 1e-12 residual test never stopped in float32: 100 steps)
        torch.testing.assert_close(planar_inverse(y, p, max_iter=12), planar_inverse(y, p), rtol=0, atol=0)


def test_kl_between_two_diagonal_gaussians_matches_torch_distributions():
    from torch import distributions as td

    from vaerepair.distributions import DiagonalGaussian

    torch.manual_seed(0)
    loc_q, loc_p = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    scale_q, scale_p = torch.rand(4, 6, dtype=torch.float64) + 0.1, torch.rand(4, 6, dtype=torch.float64) + 0.1
    ours = DiagonalGaussian(loc_q, scale_q).kl(DiagonalGaussian(loc_p, scale_p))
    ref = td.kl_divergence(td.Independent(td.Normal(loc_q, scale_q), 1), td.Independent(td.Normal(loc_p, scale_p), 1))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    q = DiagonalGaussian(loc_q, scale_q)
    torch.testing.assert_close(q.kl(q), torch.zeros(4, dtype=torch.float64))
    standard = DiagonalGaussian(torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(q.kl(standard), q.kl_standard_normal())  # broadcasts; the N(0, I) case
    tight = DiagonalGaussian(torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), 1e-9, dtype=torch.float64))
    assert float(tight.kl(tight)) == 0.0  # no cancellation between large terms
