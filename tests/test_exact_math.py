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
