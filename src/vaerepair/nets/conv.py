"""Convolutional encoder and decoder for 1- or 3-channel images with sides divisible by 4."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import Tensor, nn

from vaerepair._checks import check_images
from vaerepair.nets.activations import activation_class
from vaerepair.nets.mlp import _check_shape, _check_widths

__all__ = ["ConvEncoder", "ConvDecoder"]


def _check_conv_args(image_shape: Sequence[int], channels: Sequence[int]) -> tuple[tuple[int, int, int], int, int]:
    """The checked ``(C, H, W)`` (sides divisible by 4) and the two stages' widths."""
    shape = _check_shape(image_shape)
    _, h, w = shape
    if h % 4 or w % 4:
        raise ValueError(
            f"convolutional nets need image sides divisible by 4, got {h}x{w}; "
            "pad or resize the images (28x28 and 32x32 work), or use the MLP nets"
        )
    if len(channels) != 2:
        raise ValueError(f"channels must give the two stages' widths, got {tuple(channels)!r}")
    c1, c2 = _check_widths(channels, "channels")
    return shape, c1, c2


def _norm(kind: str | None, channels: int) -> nn.Module:
    # Per-sample normalisation only: BatchNorm would couple the images of a
    # batch and break per-sample score computations (see DESIGN.md).
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be 'group' or None, got {kind!r}")


def _stage(layer: nn.Module, norm: str | None, channels: int, activation: type[nn.Module]) -> list[nn.Module]:
    return [layer, _norm(norm, channels), activation()]


def _renamed_widths(hidden: Sequence[int], channels: Sequence[int] | None, who: str) -> Sequence[int]:
    """``hidden``, or the old keyword ``channels`` (same order) with a ``DeprecationWarning``."""
    if channels is None:
        return hidden
    warnings.warn(f"{who}(channels=...) is deprecated: the widths are hidden=... everywhere (the MLPs, the "
                  "factories, ModelSpec), in the same order", DeprecationWarning, stacklevel=3)
    return channels


class ConvEncoder(nn.Module):
    """Two stride-2 convolution stages (``H -> H/4``) then a linear layer to features.

    Maps images ``(B, C, H, W)`` to features ``(B, F)``. With ``out_features=None``
    there is no linear layer: the features are the flattened ``(C2, H/4, W/4)``
    map (``feature_shape``), for spatial latents.

    Args:
        image_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by 4.
        hidden: the two stages' widths, in the order the data go through them (image first), as the MLP's
            ``hidden`` and the factories' (``channels=`` is its old name: deprecated).
        out_features: ``F``, or ``None`` for the flattened feature map.
        norm: ``"group"`` (GroupNorm, per sample) or ``None``.
        activation: the nonlinearity: a name (``"relu"``, ``"silu"``, ``"gelu"``, ``"tanh"``) or an ``nn.Module`` class.

    Example:
        >>> ConvEncoder((3, 32, 32))(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 256])
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (32, 64),
        out_features: int | None = 256,
        norm: str | None = None,
        activation: str | type[nn.Module] = "relu",
        *,
        channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        activation = activation_class(activation)
        self.image_shape, c1, c2 = _check_conv_args(image_shape, _renamed_widths(hidden, channels, "ConvEncoder"))
        c, h, w = self.image_shape
        self.feature_shape = (c2, h // 4, w // 4)
        flat = c2 * (h // 4) * (w // 4)
        self.out_features = flat if out_features is None else int(out_features)
        projection: list[nn.Module] = [] if out_features is None else [nn.Linear(flat, self.out_features), activation()]
        self.net = nn.Sequential(
            *_stage(nn.Conv2d(c, c1, 3, padding=1), norm, c1, activation),
            *_stage(nn.Conv2d(c1, c1, 4, stride=2, padding=1), norm, c1, activation),
            *_stage(nn.Conv2d(c1, c2, 4, stride=2, padding=1), norm, c2, activation),
            nn.Flatten(),
            *projection,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(B, F)`` of images ``(B, C, H, W)``."""
        check_images(x, "x", channels=self.image_shape[0], size=self.image_shape[1:])  # type: ignore[arg-type]
        return self.net(x)


class ConvDecoder(nn.Module):
    """A linear layer to a ``H/4 x W/4`` map, then two stride-2 transposed convolutions.

    Maps latents ``(B, D)`` to likelihood parameters ``(B, C * P, H, W)``. With
    ``spatial=True`` the latent already is a map: it is read as
    ``(D / (H/4 * W/4), H/4, W/4)`` and a 3x3 convolution replaces the linear
    layer (a fully convolutional autoencoder, which keeps spatial detail).

    Args:
        latent_dim: ``D`` (divisible by ``H/4 * W/4`` when ``spatial``).
        image_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by 4.
        hidden: the two stages' widths, in the order the data go through them (latent first: coarse to fine),
            as the MLP decoder's ``hidden`` (``channels=`` is its old name: deprecated).
        norm: ``"group"`` or ``None``.
        activation: the nonlinearity: a name (``"relu"``, ``"silu"``, ``"gelu"``, ``"tanh"``) or an ``nn.Module`` class.
        params_per_pixel: likelihood parameters per pixel ``P``.
        spatial: read the latent as a ``H/4 x W/4`` map.
    """

    def __init__(
        self,
        latent_dim: int = 32,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (64, 32),
        norm: str | None = None,
        activation: str | type[nn.Module] = "relu",
        params_per_pixel: int = 1,
        spatial: bool = False,
        *,
        channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        activation = activation_class(activation)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim!r}")
        self.latent_dim = int(latent_dim)
        self.image_shape, c1, c2 = _check_conv_args(image_shape, _renamed_widths(hidden, channels, "ConvDecoder"))
        c, h, w = self.image_shape
        cells = (h // 4) * (w // 4)
        stem: list[nn.Module]
        if spatial:
            if self.latent_dim % cells:
                raise ValueError(
                    f"a spatial latent for {h}x{w} images is a {h // 4}x{w // 4} map, so latent_dim must be a "
                    f"multiple of {cells}; got {self.latent_dim}"
                )
            stem = [nn.Unflatten(1, (self.latent_dim // cells, h // 4, w // 4)),
                    nn.Conv2d(self.latent_dim // cells, c1, 3, padding=1)]
        else:
            stem = [nn.Linear(self.latent_dim, c1 * cells), nn.Unflatten(1, (c1, h // 4, w // 4))]
        self.net = nn.Sequential(
            *stem,
            activation(),
            *_stage(nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), norm, c2, activation),
            *_stage(nn.ConvTranspose2d(c2, c2, 4, stride=2, padding=1), norm, c2, activation),
            nn.Conv2d(c2, c * params_per_pixel, 3, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        """Likelihood parameters ``(B, C * P, H, W)`` of latents ``(B, D)``."""
        return self.net(z)
