r"""Sensor noise: photon (shot) noise, and photon noise with read noise (the Poisson-Gaussian model).

The model of Foi et al. (2008) for raw sensor data: with gain :math:`a` and
read-noise level :math:`\sigma`,

.. math:: \tilde x = a\,k + \sigma\varepsilon,\qquad k \sim \mathrm{Poisson}(x / a),\quad
          \varepsilon \sim N(0, I),

so that :math:`E[\tilde x \mid x] = x` and :math:`\mathrm{Var}[\tilde x \mid x] = a x + \sigma^2`:
the noise grows with the signal. A larger gain means fewer photons per unit of
intensity (a darker scene, a higher ISO) and more noise; :math:`x / a` is the
mean photon count of a pixel. Each image may draw its own gain and level from
a range (blind denoising). The result is not clipped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vaerepair.corruptions._base import Corrupted, Corruption, full_mask, parameter_range, per_image

__all__ = ["Poisson", "PoissonGaussian"]


class PoissonGaussian(Corruption):
    r"""Photon noise with gain ``gain`` plus Gaussian read noise ``sigma``:
    :math:`\tilde x = a\,\mathrm{Poisson}(x / a) + \sigma\varepsilon`, variance :math:`a x + \sigma^2`.

    Args:
        gain: the gain :math:`a > 0` (intensity per photon), or a range ``(low, high)``
            from which each image draws its own.
        sigma: the read-noise standard deviation :math:`\sigma \ge 0`, or a range.

    Example:
        >>> noisy = PoissonGaussian(gain=0.01, sigma=0.02)(torch.rand(4, 1, 16, 16))
        >>> noisy.shape
        torch.Size([4, 1, 16, 16])
    """

    def __init__(self, gain: float | tuple[float, float], sigma: float | tuple[float, float] = 0.0) -> None:
        super().__init__()
        self.gain = parameter_range(gain, "gain", allow_zero=False)
        self.sigma = parameter_range(sigma, "sigma")

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        gain = per_image(self.gain, x, generator)
        counts = torch.poisson(x.clamp(min=0.0) / gain, generator=generator)
        params = {"gain": gain, "counts": counts}
        if self.sigma[1] > 0:
            params["sigma"] = per_image(self.sigma, x, generator)
            params["noise"] = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return params

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        y = params["gain"] * params["counts"]
        if "noise" in params:
            y = torch.addcmul(y, params["sigma"], params["noise"])
        return Corrupted(y, full_mask(x))

    def variance(self, x: Tensor, gain: float, sigma: float) -> Tensor:
        """The noise variance :math:`a x + \\sigma^2` of clean images ``x`` at one gain and level."""
        return gain * x + sigma**2

    def extra_repr(self) -> str:
        return f"gain={_text(self.gain)}, sigma={_text(self.sigma)}"


class Poisson(PoissonGaussian):
    r"""Photon (shot) noise alone: :math:`\tilde x = a\,\mathrm{Poisson}(x / a)`, variance :math:`a x`.

    Args:
        gain: the gain :math:`a > 0` (intensity per photon), or a range ``(low, high)``.
    """

    def __init__(self, gain: float | tuple[float, float]) -> None:
        super().__init__(gain, 0.0)

    def extra_repr(self) -> str:
        return f"gain={_text(self.gain)}"


def _text(r: tuple[float, float]) -> str:
    return f"{r[0]}" if r[0] == r[1] else f"({r[0]}, {r[1]})"
