"""Conditions for conditional models: what both q(z | x, c) and p(x | z, c) see besides x and z.

A condition module does two things:

* :meth:`~Condition.prepare` builds the raw condition ``c`` of a batch from
  what the Trainer has: the corrupted images, the corruption's mask and the
  labels;
* ``forward(c)`` embeds it as features ``(B, E)``, which the model
  concatenates to the encoder's features (before the posterior head) and to
  the latent (before the decoder): the condition enters both the encoder and
  the decoder, as in a conditional VAE. A condition that ``joins_input``
  (the noise level of :class:`NoiseLevel`) enters the encoder's input instead,
  as ``E`` constant maps beside the image's channels (FFDNet's noise-level map).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaerepair._checks import check_count, check_images, shape_str
from vaerepair.distributions._validation import validation_enabled

__all__ = ["Condition", "LabelCondition", "ImageCondition", "ImageMaskMap", "NoiseLevel", "CONDITION_KINDS"]

CONDITION_KINDS = ("label", "image", "noise_level")


class Condition(nn.Module):
    """Base class: ``out_features`` (``E``), :meth:`prepare` and ``forward``.

    Attributes:
        out_features: the embedding size ``E``.
        needs_labels: :meth:`prepare` reads the labels (the Trainer then keeps them).
        needs_clean: :meth:`prepare` takes the clean images too (``clean=``), where the Trainer has them.
        per_image: the raw condition's rows do not depend on pixel positions (a label, a noise level): a
            tiled repair gives every tile its image's row, and the self-ensemble's flips leave it as it is.
        joins_input: the embedding enters the encoder's input as ``E`` constant maps beside the image's
            channels, rather than the features and the latent.
    """

    out_features: int
    needs_labels: bool = False
    needs_clean: bool = False
    per_image: bool = False
    joins_input: bool = False

    def prepare(self, corrupted: Tensor, mask: Tensor, labels: Tensor | None = None) -> Tensor:
        """The raw condition of a batch.

        Args:
            corrupted: the corrupted images ``(B, C, H, W)``.
            mask: boolean ``(B, C, H, W)``, ``True`` where the corruption touched a pixel.
            labels: class indices ``(B,)`` or ``None``.
        """
        raise NotImplementedError


class LabelCondition(Condition):
    """Condition on the class label, as a one-hot vector ``(B, K)`` (report 002's label CVAE).

    ``forward`` takes one-hot rows ``(B, K)`` (what :meth:`prepare` builds) or
    class indices ``(B,)`` and returns the one-hot rows as floats: ``E = K``.

    Example:
        >>> LabelCondition(10)(torch.tensor([3, 0])).argmax(dim=1).tolist()
        [3, 0]
    """

    needs_labels = True
    per_image = True
    _ref: Tensor

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        n_classes = check_count(n_classes, "n_classes", minimum=2)
        self.n_classes = n_classes
        self.out_features = n_classes
        self.register_buffer("_ref", torch.zeros(()), persistent=False)  # follows the model's device and dtype

    def prepare(self, corrupted: Tensor, mask: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError(
                "a label-conditional model needs the labels: train on an ImageDataset with labels "
                "(vaerepair.load gives them) or pass condition=one_hot(labels)"
            )
        return self._one_hot(labels).to(corrupted.dtype)

    def _one_hot(self, labels: Tensor) -> Tensor:
        if labels.is_floating_point() or labels.dim() != 1:
            raise ValueError(f"labels must be integer class indices of shape (B,), got {labels.dtype} "
                             f"{shape_str(labels.shape)}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(
                f"labels must lie in [0, {self.n_classes - 1}], got [{int(labels.min())}, {int(labels.max())}]; "
                "build the condition with the dataset's number of classes"
            )
        return F.one_hot(labels.long(), self.n_classes)

    def forward(self, condition: Tensor) -> Tensor:
        """One-hot rows ``(B, K)`` from one-hot rows or indices ``(B,)``."""
        if condition.dim() == 1:
            return self._one_hot(condition).to(self._ref.dtype)
        if condition.dim() != 2 or condition.shape[1] != self.n_classes:
            raise ValueError(
                f"a label condition must be class indices (B,) or one-hot rows (B, {self.n_classes}), "
                f"got {shape_str(condition.shape)}"
            )
        return condition.to(self._ref.dtype)

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}"


class ImageCondition(Condition):
    r"""Condition on the incomplete image: the corrupted pixels and the mask (report 002's image CVAE).

    The raw condition is ``(B, 2C, H, W)``: the corrupted image :math:`\tilde x`
    and the mask :math:`m` (1 where the corruption touched a pixel, e.g. the
    missing region of an erasure). ``forward`` embeds it with a one-layer MLP:
    ``E = features``.

    Args:
        image_shape: ``(C, H, W)`` of the images.
        features: the embedding size ``E``.
        activation: the embedding's nonlinearity.

    Example:
        >>> cond = ImageCondition((1, 28, 28), features=64)
        >>> x = torch.rand(2, 1, 28, 28)
        >>> c = cond.prepare(x, x > 0.5)
        >>> c.shape, cond(c).shape
        (torch.Size([2, 2, 28, 28]), torch.Size([2, 64]))
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        features: int = 256,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape!r}")
        features = check_count(features, "features")
        c, h, w = (int(s) for s in image_shape)
        self.image_shape = (c, h, w)
        self.out_features = features
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(2 * c * h * w, features), activation())

    def prepare(self, corrupted: Tensor, mask: Tensor, labels: Tensor | None = None) -> Tensor:
        c, h, w = self.image_shape
        check_images(corrupted, "corrupted", channels=c, size=(h, w))
        if mask.shape != corrupted.shape:
            raise ValueError(
                f"mask must have the images' shape {shape_str(corrupted.shape)}, got {shape_str(mask.shape)}"
            )
        return torch.cat([corrupted, mask.to(corrupted.dtype)], dim=1)

    def forward(self, condition: Tensor) -> Tensor:
        """Features ``(B, E)`` of a raw condition ``(B, 2C, H, W)``."""
        c, h, w = self.image_shape
        if condition.dim() != 4 or tuple(condition.shape[1:]) != (2 * c, h, w):
            raise ValueError(
                f"an image condition must have shape (B, {2 * c}, {h}, {w}) (corrupted image and mask, "
                f"from prepare()), got {shape_str(condition.shape)}"
            )
        return self.embed(condition)

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, features={self.out_features}, inputs={2 * math.prod(self.image_shape)}"


class ImageMaskMap(Condition):
    r"""Condition on the incomplete image and its mask as a map ``(B, 2C, H, W)`` of any size (the conditional
    :class:`~vaerepair.models.LadderVAE`'s condition, which its convolutions embed level by level).

    The raw condition is the corrupted image :math:`\tilde x` and the mask :math:`m`
    (1 where the corruption touched a pixel: the missing region of an erasure, every
    pixel for noise); ``forward`` checks it and returns it: ``E = 2C`` channels.

    Example:
        >>> cond = ImageMaskMap(channels=1)
        >>> x = torch.rand(2, 1, 20, 24)
        >>> cond(cond.prepare(x, x > 0.5)).shape
        torch.Size([2, 2, 20, 24])
    """

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.channels = check_count(channels, "channels")
        self.out_features = 2 * self.channels

    def prepare(self, corrupted: Tensor, mask: Tensor, labels: Tensor | None = None) -> Tensor:
        check_images(corrupted, "corrupted", channels=self.channels)
        if not isinstance(mask, Tensor) or mask.shape != corrupted.shape:
            got = shape_str(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must have the images' shape {shape_str(corrupted.shape)}, got {got}")
        return torch.cat([corrupted, mask.to(corrupted.dtype)], dim=1)

    def forward(self, condition: Tensor) -> Tensor:
        """The condition ``(B, 2C, H, W)``, checked."""
        if not isinstance(condition, Tensor) or condition.dim() != 4 or condition.shape[1] != 2 * self.channels:
            got = shape_str(condition.shape) if isinstance(condition, Tensor) else type(condition).__name__
            raise ValueError(f"an image-and-mask condition must have shape (B, {2 * self.channels}, H, W) (the "
                             f"corrupted image and its mask: model.condition.prepare(corrupted, mask)), got {got}")
        if not condition.is_floating_point() or not bool(torch.isfinite(condition).all()):
            raise ValueError("the condition must hold finite float values (the corrupted image and a 0/1 mask)")
        return condition

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class NoiseLevel(Condition):
    r"""Condition on the noise level :math:`\sigma` of each image: a non-blind denoiser (FFDNet's noise-level map).

    The raw condition is one :math:`\sigma \ge 0` per image ``(B,)``, in the
    images' units (``25 / 255`` for sigma 25 on the 0..255 scale); ``forward``
    returns it as ``(B, 1)``, and the model joins it to the encoder's input as a
    constant map: ``E = 1``. :meth:`prepare` measures it: with the clean images
    (what the Trainer has), the root mean square of the noise,
    :math:`\hat\sigma_b = \sqrt{\operatorname{mean}_i (\tilde x_{bi} - x_{bi})^2}`
    (the maximum-likelihood estimate of a white Gaussian noise's level); without
    them, the blind estimate of :func:`vaerepair.estimate_noise_sigma`.

    Example:
        >>> cond = NoiseLevel()
        >>> clean = torch.rand(2, 1, 64, 64)
        >>> noisy = clean + 0.1 * torch.randn(2, 1, 64, 64)
        >>> cond(cond.prepare(noisy, torch.ones_like(noisy, dtype=torch.bool), clean=clean)).shape
        torch.Size([2, 1])
    """

    needs_clean = True
    per_image = True
    joins_input = True
    out_features = 1

    def prepare(self, corrupted: Tensor, mask: Tensor | None = None, labels: Tensor | None = None,
                clean: Tensor | None = None) -> Tensor:
        """The noise level of each image ``(B,)``: measured against ``clean``, else estimated blind."""
        check_images(corrupted, "corrupted")
        if clean is None:
            from vaerepair.noise_level import estimate_noise_sigma

            return estimate_noise_sigma(corrupted)
        if not isinstance(clean, Tensor) or clean.shape != corrupted.shape:
            got = shape_str(clean.shape) if isinstance(clean, Tensor) else type(clean).__name__
            raise ValueError(f"clean must have the corrupted images' shape {shape_str(corrupted.shape)}, got {got}")
        return (corrupted - clean).square().flatten(1).mean(dim=1).sqrt()

    def levels(self, x: Tensor, sigma: float | None = None) -> Tensor:
        """The condition of noisy images ``x`` ``(B, C, H, W)``: ``sigma`` (the images' units) for every image,
        or (``None``) each image's blind estimate, ``(B,)``."""
        if sigma is None:
            return self.prepare(x)
        return torch.full((len(x),), float(sigma), dtype=x.dtype, device=x.device)

    def forward(self, condition: Tensor) -> Tensor:
        """The noise levels ``(B, 1)`` from ``(B,)`` or ``(B, 1)``, checked (their values outside the Trainer's
        steps, which would otherwise read the device every step)."""
        if not isinstance(condition, Tensor) or condition.dim() not in (1, 2) or (
                condition.dim() == 2 and condition.shape[1] != 1):
            got = shape_str(condition.shape) if isinstance(condition, Tensor) else type(condition).__name__
            raise ValueError(f"a noise-level condition is one sigma per image, (B,) or (B, 1), in the images' units "
                             f"(25 / 255 for sigma 25 on the 0..255 scale), got {got}; "
                             "model.condition.levels(noisy) estimates it")
        if not condition.is_floating_point():
            raise TypeError(f"noise levels must be floats (25 / 255, not 25), got {condition.dtype}")
        if not validation_enabled():
            return condition.reshape(-1, 1)
        if condition.numel() and not bool((torch.isfinite(condition) & (condition >= 0)).all()):
            raise ValueError(f"noise levels must be finite and >= 0, got values in [{float(condition.min()):.4g}, "
                             f"{float(condition.max()):.4g}]")
        if condition.numel() and float(condition.max()) > 1.0:
            raise ValueError(f"noise levels are in the images' units ([0, 1] images: sigma 25 is 25 / 255 = 0.098), "
                             f"got {float(condition.max()):.4g}; divide 0..255 levels by 255")
        return condition.reshape(-1, 1)

    def extra_repr(self) -> str:
        return "joins the input as a constant map"
