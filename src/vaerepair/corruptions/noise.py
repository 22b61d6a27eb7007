"""Pixel-level corruptions: Gaussian noise, salt and pepper, pixel inversion."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from vaerepair._checks import check_count, check_probability
from vaerepair.corruptions._base import Corrupted, Corruption, full_mask, parameter_range, per_image, uniform

__all__ = ["GaussianNoise", "SaltAndPepper", "PixelInversion", "Quantize"]


class GaussianNoise(Corruption):
    r"""Additive Gaussian noise: :math:`\tilde x = x + \sigma \varepsilon`, :math:`\varepsilon \sim N(0, I)`.

    Args:
        sigma: the noise standard deviation, or a range ``(low, high)`` from
            which each image draws its own ``sigma`` uniformly (blind denoising).
        clip: clamp the result to ``[0, 1]``. Off by default, as in the reports:
            unclipped noise keeps the corruption exactly Gaussian.

    Example:
        >>> noisy = GaussianNoise(0.5)(torch.rand(8, 1, 28, 28))
        >>> noisy.shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, sigma: float | tuple[float, float], clip: bool = False) -> None:
        super().__init__()
        self.sigma: tuple[float, float] = parameter_range(sigma, "sigma")
        self.clip = bool(clip)
        if self.sigma[1] > 1.0:
            warnings.warn(f"GaussianNoise sigma {self.sigma[1]:g} is above 1, the whole range of images in [0, 1]; "
                          f"for a noise level given on the 0-255 scale, divide it by 255 (sigma="
                          f"{self.sigma[1]:g}/255 = {self.sigma[1] / 255:.4g})", UserWarning, stacklevel=2)

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        sigma = per_image(self.sigma, x, generator)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return {"sigma": sigma, "noise": noise}

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        y = torch.addcmul(x, params["sigma"], params["noise"])
        if self.clip:
            y = y.clamp_(0.0, 1.0)
        return Corrupted(y, full_mask(x))

    def extra_repr(self) -> str:
        low, high = self.sigma
        sigma = f"{low}" if low == high else f"({low}, {high})"
        return f"sigma={sigma}, clip={self.clip}"


class SaltAndPepper(Corruption):
    """Impulse noise: a fraction ``amount`` of pixel locations set to 1 (salt) or 0 (pepper).

    A location is corrupted in all channels at once. Each image draws its own
    locations.

    Args:
        amount: probability that a pixel location is corrupted, in ``[0, 1]``.
        salt_ratio: probability that a corrupted pixel is salt (1) rather than
            pepper (0), in ``[0, 1]``.
    """

    def __init__(self, amount: float, salt_ratio: float = 0.5) -> None:
        super().__init__()
        self.amount = check_probability(amount, "amount")
        self.salt_ratio = check_probability(salt_ratio, "salt_ratio")

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        b, _, h, w = x.shape
        hit = uniform((b, 1, h, w), x, generator) < self.amount
        salt = uniform((b, 1, h, w), x, generator) < self.salt_ratio
        return {"hit": hit, "salt": salt}

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        mask = params["hit"].expand_as(x)
        value = params["salt"].to(x.dtype).expand_as(x)
        return Corrupted(torch.where(mask, value, x), mask)

    def extra_repr(self) -> str:
        return f"amount={self.amount}, salt_ratio={self.salt_ratio}"


class PixelInversion(Corruption):
    r"""Invert pixels, :math:`\tilde x = 1 - x`, at a fraction ``amount`` of locations.

    ``amount=1`` inverts the whole image (a photographic negative); smaller
    values invert random pixel locations (all channels of a location together).

    Args:
        amount: probability that a pixel location is inverted, in ``[0, 1]``.
    """

    def __init__(self, amount: float = 1.0) -> None:
        super().__init__()
        self.amount = check_probability(amount, "amount")

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        b, _, h, w = x.shape
        if self.amount == 1.0:
            return {"hit": torch.ones((b, 1, h, w), dtype=torch.bool, device=x.device)}
        return {"hit": uniform((b, 1, h, w), x, generator) < self.amount}

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        mask = params["hit"].expand_as(x)
        return Corrupted(torch.where(mask, 1.0 - x, x), mask)

    def extra_repr(self) -> str:
        return f"amount={self.amount}"


class Quantize(Corruption):
    r"""What saving an image to an 8-bit file does: clip to ``[0, 1]``, then round to ``levels`` values,
    :math:`\tilde x = \mathrm{round}((L - 1)\,\mathrm{clip}(x, 0, 1)) / (L - 1)`.

    After noise (``Compose([GaussianNoise(0.5), Quantize()])``, spec ``"gaussian:0.5+quantize"``) it gives
    the noisy 8-bit PNG a user owns: its noise clipped at 0 and 1, no longer zero-mean in dark and
    bright regions, and rounded. Deterministic; the mask is every pixel.

    Args:
        levels: the number of values, ``>= 2`` (256: 8 bits).
    """

    def __init__(self, levels: int = 256) -> None:
        super().__init__()
        self.levels = check_count(levels, "levels", minimum=2)

    def make_params(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Any]:
        return {}

    def transform(self, x: Tensor, params: dict[str, Any]) -> Corrupted:
        top = float(self.levels - 1)
        return Corrupted(x.clamp(0.0, 1.0).mul(top).round_().div_(top), full_mask(x))

    def extra_repr(self) -> str:
        return f"levels={self.levels}"
