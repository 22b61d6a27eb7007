"""PSNR against its closed form; SSIM against scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from vaerepair.metrics import psnr, ssim


def test_psnr_closed_form_per_image():
    x = torch.zeros(2, 1, 8, 8)
    y = x.clone()
    y[0] += 0.1
    y[1] += 0.5
    values = psnr(x, y, reduction="none")
    torch.testing.assert_close(values, torch.tensor([20.0, 10 * math.log10(4)]))
    torch.testing.assert_close(psnr(x, y), values.mean())
    assert psnr(x, x, reduction="none").isinf().all()


def test_psnr_of_unclipped_gaussian_noise_matches_sigma():
    x = torch.rand(16, 1, 28, 28, dtype=torch.float64)
    noisy = x + 0.5 * torch.randn_like(x)
    assert abs(psnr(noisy, x).item() - 10 * math.log10(1 / 0.25)) < 0.1


def _skimage(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    out = []
    for a, b in zip(x.double().numpy(), y.double().numpy(), strict=True):
        out.append(structural_similarity(a, b, data_range=1.0, channel_axis=0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False))
    return np.array(out)


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (3, 3, 32, 32), (2, 1, 11, 17)])
def test_ssim_matches_scikit_image(shape):
    x = torch.rand(shape, dtype=torch.float64)
    y = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    y[0] = x[0] * 0.5 + 0.2  # a structured, not just noisy, difference
    ours = ssim(x, y, reduction="none").numpy()
    np.testing.assert_allclose(ours, _skimage(x, y), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (3, 3, 32, 32), (2, 1, 11, 17)])
def test_ssim_both_filter_paths_match_scikit_image(shape, monkeypatch):
    # the banded matrix product (images up to 2048 px) and the convolution (larger ones) are the same filter
    import vaerepair.metrics as metrics

    x = torch.rand(shape, dtype=torch.float64)
    y = (x * 0.7 + 0.2 * torch.rand_like(x)).clamp(0, 1)
    banded = ssim(x, y, reduction="none")
    monkeypatch.setattr(metrics, "_BAND_MAX_SIDE", 0)
    convolved = ssim(x, y, reduction="none")
    np.testing.assert_allclose(convolved.numpy(), _skimage(x, y), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(banded, convolved, rtol=1e-12, atol=1e-12)


def test_ssim_identity_and_errors():
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(ssim(x, x), torch.tensor(1.0))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="reduction"):
        psnr(x, x, reduction="sum")
