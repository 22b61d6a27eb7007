r"""Blind estimation of the level of additive white Gaussian noise in an image.

:func:`estimate_noise_sigma` is Donoho and Johnstone's robust estimator (1994):
the noise's standard deviation from the median absolute value of the finest
diagonal wavelet coefficients (Haar, orthonormal),

.. math::
    d_{ij} = \tfrac12\,(x_{2i,2j} - x_{2i,2j+1} - x_{2i+1,2j} + x_{2i+1,2j+1}), \qquad
    \hat\sigma = \frac{\operatorname{median}_{ij} |d_{ij}|}{\Phi^{-1}(3/4)} ,

with :math:`\Phi^{-1}(3/4) = 0.6745` the median of :math:`|N(0, 1)|`. The Haar
diagonal band of white noise of standard deviation :math:`\sigma` is white
noise of standard deviation :math:`\sigma` (the filter is orthonormal), while
the band of a smooth image is near 0, and the median ignores the few large
coefficients of edges. Texture also lands in that band, so on textured
photographs the estimate is biased upwards (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

from torch import Tensor

from vaerepair._checks import check_images, finite_range

__all__ = ["estimate_noise_sigma", "MAD_TO_SIGMA"]

MAD_TO_SIGMA = 0.6744897501960817  # the median of |N(0, 1)|: Phi^{-1}(3/4)


def estimate_noise_sigma(x: Tensor) -> Tensor:
    """The standard deviation of additive white Gaussian noise in each image of ``x`` ``(B, C, H, W)``, ``(B,)``,
    in the images' own units (``[0, 1]`` images: multiply by 255 for the 0..255 scale).

    The median of the channels' estimates; images need ``H, W >= 2`` (an odd last row or column is left out).
    """
    check_images(x, "x")
    if x.shape[-2] < 2 or x.shape[-1] < 2:
        raise ValueError(f"estimating the noise needs images of at least 2x2 pixels, got {tuple(x.shape[-2:])}")
    if x.numel():
        finite_range(x, "x", "the noise level of a NaN or Inf pixel is undefined: fix or drop that image")
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    y = x[..., :h, :w].double()
    diagonal = (y[..., 0::2, 0::2] - y[..., 0::2, 1::2] - y[..., 1::2, 0::2] + y[..., 1::2, 1::2]) / 2
    per_channel = diagonal.abs().flatten(2).median(dim=2).values / MAD_TO_SIGMA  # (B, C)
    return per_channel.median(dim=1).values.to(x.dtype)
