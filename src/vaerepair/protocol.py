r"""The evaluation protocol of the image-denoising literature (DnCNN, FFDNet, DRUNet papers).

For each test image: read it as 8-bit, scale to [0, 1]; seed NumPy's legacy
generator with 0 (``np.random.seed(0)``) and add *unclipped* Gaussian noise
``np.random.normal(0, sigma / 255, img.shape)``; denoise the float image; clip
the result to [0, 1] and round to 8 bits; PSNR against the 8-bit original with
peak 255, no border crop:

.. math:: \mathrm{PSNR} = 10 \log_{10} \frac{255^2}{\frac{1}{N}\sum_p (\hat u_p - u_p)^2};

report the mean over the set. Published figures (BM3D, DnCNN) follow it, so
numbers measured here compare with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from vaerepair.metrics import ssim

__all__ = ["protocol_noise", "to_8bit", "psnr_8bit", "evaluate_protocol"]


def protocol_noise(clean: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """The noisy float image ``(C, H, W)`` of an 8-bit ``clean`` ``(C, H, W)`` at ``sigma`` (0..255 units).

    Exactly the protocol's draw: ``np.random.seed(seed)``, then
    ``np.random.normal(0, sigma / 255, shape)`` added to ``clean / 255`` in
    float64, unclipped (returned as float32; for one channel the numbers are
    those of the ``(H, W)`` array the published scripts use).
    """
    if clean.dtype != torch.uint8 or clean.dim() != 3:
        raise ValueError(f"expected an 8-bit image (C, H, W) (uint8), got {clean.dtype} of shape {tuple(clean.shape)}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma (0..255 units) must be finite and >= 0, got {sigma!r}")
    shape = tuple(clean.shape[1:]) if clean.shape[0] == 1 else tuple(clean.shape)
    # RandomState(seed) is the legacy global generator after np.random.seed(seed): the same numbers
    noise = np.random.RandomState(seed).normal(0.0, sigma / 255.0, shape)
    noisy = clean.numpy().astype(np.float64) / 255.0 + noise.reshape(clean.shape)
    return torch.from_numpy(noisy).float()


def to_8bit(x: Tensor) -> Tensor:
    """Float images in [0, 1] (any shape) clipped and rounded to uint8."""
    return (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8)


def psnr_8bit(estimate: Tensor, reference: Tensor) -> float:
    """PSNR (dB) between two uint8 images, peak 255, no border crop (``inf`` when they are equal)."""
    mse = float(((estimate.double() - reference.double()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def evaluate_protocol(repair: Callable[[Tensor], Tensor], images: Sequence[Tensor], sigma: float,
                      names: Sequence[str] | None = None) -> dict[str, object]:
    """Mean (and per-image) PSNR/SSIM of ``repair`` on 8-bit ``images`` ``(C, H, W)`` under the protocol.

    ``repair`` maps one noisy float image ``(1, C, H, W)`` to its repair (e.g.
    ``model.repair``). Also reports the noisy input's PSNR. SSIM is computed on
    the 8-bit results scaled to [0, 1] (Gaussian window 11, sigma 1.5).
    """
    rows = []
    for i, clean in enumerate(images):
        noisy = protocol_noise(clean, sigma)
        restored = to_8bit(repair(noisy.unsqueeze(0))[0])
        ref = clean.float().unsqueeze(0) / 255
        rows.append({"name": names[i] if names is not None else str(i),
                     "psnr_input": psnr_8bit(to_8bit(noisy), clean), "psnr": psnr_8bit(restored, clean),
                     "ssim": float(ssim(restored.float().unsqueeze(0) / 255, ref))})
    mean = {k: sum(float(r[k]) for r in rows) / len(rows) for k in ("psnr_input", "psnr", "ssim")}  # type: ignore[misc, arg-type]
    return {"sigma": sigma, "n": len(rows), **mean, "images": rows}
