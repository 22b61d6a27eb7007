"""``check_unbiased_risk``: does a self-supervised loss estimate the supervised MSE in expectation?"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import Tensor, nn

from vaerepair._checks import check_count
from vaerepair.objectives.self_supervised import denoise
from vaerepair.testing.report import CheckReport

__all__ = ["check_unbiased_risk"]


def _default_model(dtype: torch.dtype, device: torch.device) -> nn.Module:
    """A small nonlinear denoiser with a large divergence: an MLP autoencoder on 6x6 images, fitted for 300
    Adam steps towards the identity on noisy images (a random network is nearly constant, and a constant
    repair would hide every error in the divergence term)."""
    from vaerepair.models import autoencoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = autoencoder(image_shape=(1, 6, 6), latent_dim=36, hidden=(64,), likelihood="gaussian",
                            activation="tanh").to(dtype)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(300):
            y = torch.rand(32, 1, 6, 6, dtype=dtype) + 0.3 * torch.randn(32, 1, 6, 6, dtype=dtype)
            loss = (denoise(model, y) - y).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.to(device=device)


def check_unbiased_risk(
    risk: Any,
    noise: Any,
    model: nn.Module | None = None,
    clean: Tensor | None = None,
    *,
    constant: float = 0.0,
    pairs: bool = False,
    n_draws: int = 300,
    z_max: float = 4.0,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> CheckReport:
    r"""Check that a risk estimator computed from noisy images equals the supervised MSE in expectation.

    For ``n_draws`` independent noise draws :math:`y = ` ``noise(clean)`` it
    compares the estimator's loss ``risk(model, y, y)`` (with ``pairs=True``:
    ``risk(model, y_1, y_2)``, two independent draws) with the supervised MSE of
    the same repair, :math:`\tfrac1n \|f(y) - x\|^2` (:func:`~vaerepair.objectives.denoise`,
    batch mean), plus ``constant`` (0 for SURE, the noise variance
    :math:`\sigma^2` for Noise2Noise). The paired differences
    :math:`d_k = \text{risk}_k - \text{MSE}_k - \text{constant}` share each draw's
    noise, so their mean has a small standard error; the check fails when
    :math:`|\bar d| > z_{max}\, \mathrm{se}(\bar d) + 10^{-9} \cdot` scale.

    The model's weights stay fixed (it is a check of the estimator, not of
    training); the estimator's own randomness (probes) runs on torch's
    generator, seeded once with ``seed``.

    Args:
        risk: the objective under test, ``risk(model, x_input, x_target) -> ObjectiveResult``.
        noise: a corruption producing the observations (e.g. ``GaussianNoise(0.3)``).
        model: a model with ``encode``/``decode`` (default: a small MLP autoencoder in float64 on 6x6 images).
        clean: the clean images ``(B, C, H, W)`` (default: 8 random images in the model's dtype).
        constant: the known offset of the estimator's expectation from the MSE.
        pairs: give the estimator two independent observations (Noise2Noise).
        n_draws: noise draws.
        z_max: standard errors allowed.
        seed: seeds the noise and the estimator's draws.
        raise_on_failure: raise :class:`~vaerepair.testing.ContractError` on failure (default).

    Returns:
        The :class:`~vaerepair.testing.CheckReport` (its check's detail carries the numbers).
    """
    n_draws = check_count(n_draws, "n_draws", minimum=10)
    if model is None:
        model = _default_model(torch.float64, torch.device("cpu"))
    ref = next(model.parameters())
    if clean is None:
        c, h, w = model.image_shape  # type: ignore[misc]
        g = torch.Generator().manual_seed(seed + 1)
        clean = torch.rand(8, c, h or 12, w or 12, generator=g, dtype=torch.float64).to(ref.device, ref.dtype)
    report = CheckReport(f"check_unbiased_risk({risk!r})")
    diffs: list[float] = []
    estimates: list[float] = []
    generator = torch.Generator(device=clean.device).manual_seed(seed)
    needs_grad = bool(getattr(risk, "needs_grad", False))
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[] if clean.device.type == "cpu" else [clean.device]):
            torch.manual_seed(seed + 2)
            for _ in range(n_draws):
                y = noise(clean, generator=generator)
                target = noise(clean, generator=generator) if pairs else y
                with torch.set_grad_enabled(needs_grad):
                    estimate = float(risk(model, y, target)[0].detach())
                with torch.no_grad():
                    supervised = float((denoise(cast(Any, model), y) - clean).square().flatten(1).mean(dim=1).mean())
                estimates.append(estimate)
                diffs.append(estimate - supervised - constant)
    finally:
        model.train(was_training)
    d = torch.tensor(diffs, dtype=torch.float64)
    mean, se = float(d.mean()), float(d.std() / math.sqrt(len(d)))
    scale = max(abs(sum(estimates) / len(estimates)), 1e-12)
    ok = math.isfinite(mean) and abs(mean) <= z_max * se + 1e-9 * scale
    z = mean / se if se > 0 else (0.0 if mean == 0 else math.inf)
    report.add(
        "unbiased for the supervised MSE", ok,
        f"the estimator is biased: over {n_draws} noise draws, risk - supervised MSE - constant = {mean:.4g} "
        f"+- {se:.2g} (z = {z:.1f}, allowed |z| <= {z_max}); the estimate averages {scale:.4g}. An unbiased risk "
        "estimator's expectation is the MSE of the repair against the clean images plus its known constant "
        "(SURE: 0; Noise2Noise: the noise variance)")
    report.numbers.update({"mean_difference": mean, "standard_error": se, "z": z})
    return report.raise_if_failed() if raise_on_failure else report
