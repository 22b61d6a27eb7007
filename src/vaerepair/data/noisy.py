"""Noisy observations without clean counterparts: what self-supervised objectives train on."""

from __future__ import annotations

import operator
from typing import Any, overload

import torch
from torch import Tensor

from vaerepair._checks import check_finite_images, shape_str

__all__ = ["NoisyImages"]


class NoisyImages:
    """Noisy images ``y`` ``(N, C, H, W)``, float, any finite values (noise is not clipped to ``[0, 1]``).

    The training data of objectives that never see a clean image
    (:class:`~vaerepair.objectives.Noise2Noise`, :class:`~vaerepair.objectives.BlindSpot`,
    :class:`~vaerepair.objectives.SURE`, the ELBO of a noise-model VAE). The
    :class:`~vaerepair.Trainer` trains on them as they are (build it with
    ``corruption=None``): each batch's input is the observation, its target the
    observation too, or, for pairs, the other observation of the same scene.

    Args:
        observations: the noisy images ``y``.
        second: a second observation of each scene with independent noise,
            ``(N, C, H, W)`` (pairs, for Noise2Noise), or ``None``.
        clean: the clean images, where they are known (benchmarks): never used
            for training; validation then also reports PSNR/SSIM against them.

    Example:
        >>> from vaerepair.corruptions import GaussianNoise
        >>> noisy = NoisyImages.simulate(torch.rand(8, 1, 16, 16), GaussianNoise(0.5), pairs=True)
        >>> len(noisy), noisy.image_shape, noisy.second is not None
        (8, (1, 16, 16), True)
    """

    def __init__(self, observations: Tensor, second: Tensor | None = None, clean: Tensor | None = None) -> None:
        self.observations = _check("observations", observations)
        self.second = _check("second", second, like=self.observations) if second is not None else None
        self.clean = _check("clean", clean, like=self.observations) if clean is not None else None

    @classmethod
    def simulate(cls, clean: Any, noise: Any, seed: int = 0, pairs: bool = False,
                 keep_clean: bool = True) -> NoisyImages:
        """Corrupt clean images once, with a fixed seed (benchmarks of training on noisy data only).

        ``clean``: an :class:`~vaerepair.data.ImageDataset` or images ``(N, C, H, W)``
        (uint8 or float in [0, 1]); ``noise``: a corruption; ``pairs``: draw a second,
        independent observation of each image; ``keep_clean``: keep the clean
        images for measuring (never for training).
        """
        images = getattr(clean, "images", clean)
        if not isinstance(images, Tensor) or images.dim() != 4:
            raise ValueError(f"clean must be images (N, C, H, W) or an ImageDataset, got "
                             f"{shape_str(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
        x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
        generator = torch.Generator(device=x.device).manual_seed(seed)
        first = noise(x, generator=generator)
        second = noise(x, generator=generator) if pairs else None
        return cls(first, second, x if keep_clean else None)

    def __len__(self) -> int:
        return len(self.observations)

    @overload
    def __getitem__(self, index: int) -> Tensor: ...

    @overload
    def __getitem__(self, index: slice | Tensor | list[int]) -> NoisyImages: ...

    def __getitem__(self, index: int | slice | Tensor | list[int]) -> Tensor | NoisyImages:
        if isinstance(index, list):
            index = torch.as_tensor(index, dtype=torch.long)
        if isinstance(index, slice) or (isinstance(index, Tensor) and index.dim() == 1):
            return self.subset(index)
        return self.observations[operator.index(index)]

    def subset(self, index: slice | Tensor) -> NoisyImages:
        """The same kind of data for the images at ``index`` (for :func:`~vaerepair.data.train_val_split`)."""
        return NoisyImages(self.observations[index], self.second[index] if self.second is not None else None,
                           self.clean[index] if self.clean is not None else None)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.observations.shape[1:]
        return int(c), int(h), int(w)

    @property
    def pairs(self) -> bool:
        """Whether every scene has a second, independent observation."""
        return self.second is not None

    def to(self, device: torch.device | str) -> NoisyImages:
        """The same data on ``device``."""
        return NoisyImages(self.observations.to(device), self.second.to(device) if self.second is not None else None,
                           self.clean.to(device) if self.clean is not None else None)

    def __repr__(self) -> str:
        extra = (", pairs" if self.pairs else "") + (", with clean" if self.clean is not None else "")
        return f"NoisyImages(n={len(self)}, image_shape={self.image_shape}{extra})"


def _check(name: str, x: Any, like: Tensor | None = None) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"{name} must be a tensor (N, C, H, W), got "
                         f"{shape_str(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be float (noisy values are not clipped), got {x.dtype}; "
                        "for uint8 photographs use x.float() / 255")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"{name} has shape {shape_str(x.shape)} but the observations have {shape_str(like.shape)}")
    return check_finite_images(x, name)
