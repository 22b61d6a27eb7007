"""The single-latent model kinds' plain-value specs: :class:`AutoencoderSpec` (``"ae"``, ``"dae"``) and
:class:`VAESpec` (``"vae"``), each with its own fields and checks, and the networks they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from torch import nn

from vaerepair._checks import check_count
from vaerepair.distributions import (
    GaussianPosterior,
    PointMassPosterior,
    SpatialGaussianPosterior,
    SpatialPointMassPosterior,
    SpatialStandardNormal,
    StandardNormal,
    spatial_head,
)
from vaerepair.flows import PlanarFlowPosterior
from vaerepair.models.conditions import CONDITION_KINDS, Condition, ImageCondition, LabelCondition, NoiseLevel
from vaerepair.models.latent import LatentVariableModel
from vaerepair.models.likelihood_spec import LikelihoodSpec, nest_likelihood, spec_from_fields
from vaerepair.nets import ConvDecoder, ConvEncoder, ConvHead, MLPDecoder, MLPEncoder, UNetEncoder
from vaerepair.nets.activations import ACTIVATIONS

__all__ = ["AutoencoderSpec", "VAESpec", "ARCHS"]

ARCHS = ("mlp", "conv", "unet")


@dataclass(frozen=True, kw_only=True)
class _SingleLatentSpec:
    """The fields every single-latent kind has: the images, the networks, the likelihood, the condition."""

    kind: str
    image_shape: tuple[Any, ...] = (1, 28, 28)  # (C, None, None) for "unet"
    latent_dim: int = 20
    arch: str = "mlp"
    hidden: tuple[int, ...] = (400,)
    features: int = 256
    likelihood: LikelihoodSpec = field(default_factory=LikelihoodSpec)
    norm: str | None = None
    activation: str = "relu"
    condition: str | None = None
    n_classes: int = 10
    condition_features: int = 256

    KINDS: ClassVar[tuple[str, ...]] = ()
    # fields other kinds have, which an old flat checkpoint of this kind holds at these values: read and dropped
    FOREIGN_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            kinds = " or ".join(map(repr, self.KINDS))
            raise ValueError(f"a {type(self).__name__} has kind {kinds}, got {self.kind!r}")
        for name in ("latent_dim", "features", "n_classes", "condition_features"):  # numpy integers become ints
            object.__setattr__(self, name, check_count(getattr(self, name), name))
        if isinstance(self.hidden, (str, bytes)) or not isinstance(self.hidden, Sequence) or not self.hidden:
            raise TypeError(f"hidden must be a non-empty sequence of layer widths like (400,) or (32, 64), "
                            f"got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(check_count(w, f"every hidden width (hidden={tuple(self.hidden)!r})")
                                                 for w in self.hidden))
        if not isinstance(self.likelihood, LikelihoodSpec):
            raise TypeError(f"likelihood must be a LikelihoodSpec (or, through from_dict, its dict), got "
                            f"{self.likelihood!r}")
        check_count(self.image_shape[0], f"the channels of image_shape={tuple(self.image_shape)!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; known: {', '.join(ARCHS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}")
        if self.condition is not None and self.condition not in CONDITION_KINDS:
            raise ValueError(f"unknown condition {self.condition!r}; known: None, {', '.join(CONDITION_KINDS)}")
        if self.condition == "noise_level" and (self.arch != "unet" or self.kind == "vae"):
            raise ValueError(f"condition='noise_level' (a noise-level map beside the input) is the U-Net denoiser's: "
                             f"kind 'dae' (or 'ae') with arch='unet', got kind {self.kind!r}, arch {self.arch!r}")
        if self.arch == "unet":
            if self.condition not in (None, "noise_level"):
                raise ValueError("arch='unet' is unconditional (or takes condition='noise_level'), without flows, "
                                 "and always spatial (leave spatial=False)")
            object.__setattr__(self, "image_shape", (int(self.image_shape[0]), None, None))
        else:
            if None in tuple(self.image_shape):
                raise ValueError(f"arch={self.arch!r} takes one image size: give image_shape=(C, H, W), got "
                                 f"{tuple(self.image_shape)}; arch='unet' takes any size")
            for side in self.image_shape[1:]:
                check_count(side, f"every side of image_shape={tuple(self.image_shape)!r}")
            object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        if self.arch == "conv" and len(self.hidden) != 2:
            raise ValueError(f"the conv arch needs hidden=(C1, C2), got {self.hidden!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, numbers, strings, the likelihood as a dict): safe in a ``weights_only``
        checkpoint."""
        d = asdict(self)
        d["image_shape"], d["hidden"] = list(self.image_shape), list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`. A checkpoint written before the kinds had specs of their own (one flat
        spec: the likelihood's fields beside the others, fields of other kinds at their defaults) reads too;
        an unknown field, or another kind's field set, is an error naming it."""
        if not isinstance(d, dict):
            raise TypeError(f"a model spec must be a dict, got {type(d).__name__}")
        d = nest_likelihood({("n_flows" if k == "flows" else k): v for k, v in d.items()})
        for name, default in cls.FOREIGN_DEFAULTS.items():
            if name in d:
                value = d.pop(name)
                if value != default:
                    raise ValueError(f"{name}={value!r} does not apply to kind {d.get('kind')!r}: "
                                     f"{cls.__name__} has no {name}")
        return spec_from_fields(cls, d, "model spec")

    def _condition(self) -> Condition | None:
        act = ACTIVATIONS[self.activation]
        if self.condition == "label":
            return LabelCondition(self.n_classes)
        if self.condition == "image":
            return ImageCondition(self.image_shape, features=self.condition_features, activation=act)
        if self.condition == "noise_level":
            return NoiseLevel()
        return None

    def _networks(self, extra: int, spatial: bool = False) -> tuple[nn.Module, nn.Module, int, nn.Module | None]:
        """``(encoder, decoder, encoder features, posterior head or None)`` of an MLP or conv model whose latent
        is joined by ``extra`` condition features."""
        act = ACTIVATIONS[self.activation]
        decoder: nn.Module
        if self.arch == "mlp":
            encoder = MLPEncoder(self.image_shape, hidden=self.hidden, activation=act)
            decoder = MLPDecoder(self.latent_dim + extra, self.image_shape, hidden=tuple(reversed(self.hidden)),
                                 activation=act)
            return encoder, decoder, encoder.out_features, None
        conv = ConvEncoder(self.image_shape, hidden=self.hidden, norm=self.norm, activation=act,
                           out_features=None if spatial else self.features)
        decoder = ConvDecoder(self.latent_dim + extra, self.image_shape, hidden=tuple(reversed(self.hidden)),
                              norm=self.norm, activation=act, spatial=spatial)
        head = None
        if spatial:
            _, h, w = conv.feature_shape
            head = spatial_head(conv.feature_shape, self.latent_dim // (h * w))
        return conv, decoder, conv.out_features, head

    def _unet(self, likelihood: nn.Module) -> tuple[UNetEncoder, ConvHead]:
        act = ACTIVATIONS[self.activation]
        extra = NoiseLevel.out_features if self.condition == "noise_level" else 0  # the noise-level map's channel
        unet = UNetEncoder(self.image_shape[0] + extra, widths=self.hidden, norm=self.norm, activation=act)
        head = ConvHead(self.latent_dim, self.image_shape[0], hidden=self.hidden[0], activation=act,
                        params_per_pixel=getattr(likelihood, "params_per_pixel", 1))
        return unet, head


@dataclass(frozen=True, kw_only=True)
class AutoencoderSpec(_SingleLatentSpec):
    """Plain-value description of a (denoising) autoencoder: point-mass posterior, no prior.

    Attributes:
        kind: ``"ae"`` or ``"dae"`` (the same network; ``"dae"`` records that it
            is trained on corrupted inputs).
        image_shape: ``(C, H, W)``; ``(C, None, None)`` for ``"unet"``, which takes any size.
        latent_dim: ``D``; for ``"unet"`` the code's channels per pixel.
        arch: ``"mlp"``, ``"conv"`` or ``"unet"`` (fully convolutional, any size).
        hidden: MLP hidden widths, the conv stages' widths, or the U-Net's widths per level.
        features: conv encoder feature size (ignored by the MLP).
        likelihood: the likelihood's :class:`~vaerepair.models.LikelihoodSpec`.
        norm: ``"group"`` or ``None`` (conv and U-Net).
        activation: ``"relu"``, ``"silu"``, ``"gelu"`` or ``"tanh"``.
        condition: ``None``, ``"label"`` or ``"image"``: a conditional model; ``"noise_level"``
            (``arch="unet"`` only): a non-blind denoiser told each image's noise level (:class:`NoiseLevel`).
        n_classes: the label condition's number of classes.
        condition_features: the image condition's embedding size.
        spatial: conv only: a latent that is a ``H/4 x W/4`` map with
            ``latent_dim / (H/4 * W/4)`` channels.
        residual: a residual (noise-predicting) network, as DnCNN: the repair is
            the input minus the network's output (a Gaussian or Poisson-Gaussian
            likelihood through the identity link).
    """

    kind: str = "dae"
    spatial: bool = False
    residual: bool = False

    KINDS: ClassVar[tuple[str, ...]] = ("ae", "dae")
    FOREIGN_DEFAULTS: ClassVar[dict[str, Any]] = {"n_flows": 0, "amortized": True, "repair_samples": 0}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.spatial, bool):
            raise TypeError(f"spatial must be True or False, got {self.spatial!r}")
        if self.spatial and self.arch != "conv":
            raise ValueError("spatial=True needs arch='conv'")
        if self.condition is not None and self.spatial:
            raise ValueError("a conditional model cannot be spatial (the condition joins a latent vector)")
        if not isinstance(self.residual, bool):
            raise TypeError(f"residual must be True or False, got {self.residual!r}")
        if self.residual and (self.likelihood.name not in ("gaussian", "poisson-gaussian")
                              or self.likelihood.link != "identity"):
            raise ValueError(f"residual=True subtracts the network's output from its input: it needs a Gaussian or "
                             f"Poisson-Gaussian likelihood through the identity link, got {self.likelihood}")

    def build(self) -> LatentVariableModel:
        """The model this spec describes."""
        likelihood = self.likelihood.build()
        if self.arch == "unet":
            unet, head = self._unet(likelihood)
            return LatentVariableModel(unet, SpatialPointMassPosterior(unet.out_channels, self.latent_dim), head,
                                       likelihood, condition=self._condition(), spec=self.to_dict(),
                                       residual=self.residual)
        condition = self._condition()
        extra = condition.out_features if condition is not None else 0  # joins the features and the latent
        encoder, decoder, features, code_head = self._networks(extra, self.spatial)
        posterior = PointMassPosterior(features + extra, self.latent_dim, head=code_head)
        return LatentVariableModel(encoder, posterior, decoder, likelihood, condition=condition, spec=self.to_dict(),
                                   residual=self.residual)


@dataclass(frozen=True, kw_only=True)
class VAESpec(_SingleLatentSpec):
    """Plain-value description of a single-latent VAE: a diagonal Gaussian posterior (refined by planar flows
    with ``n_flows``) and a standard normal prior (per pixel for ``"unet"``: the noise-model VAE).

    Attributes:
        kind: ``"vae"``.
        n_flows: ``K`` planar-flow layers after the Gaussian posterior
            (:class:`~vaerepair.flows.PlanarFlowPosterior`; MLP and conv only); 0: none.
        amortized: the flow layers are produced per image from the encoder
            features (``True``) or global (``False``).
        repair_samples: posterior samples behind ``model.repair`` (0: decode the
            posterior mean; a noise-model VAE repairs with the mean of decoded samples).

    The other fields are :class:`AutoencoderSpec`'s, without ``spatial`` and ``residual``.
    """

    kind: str = "vae"
    n_flows: int = 0
    amortized: bool = True
    repair_samples: int = 0

    KINDS: ClassVar[tuple[str, ...]] = ("vae",)
    FOREIGN_DEFAULTS: ClassVar[dict[str, Any]] = {"spatial": False, "residual": False}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "n_flows", check_count(self.n_flows, "n_flows", minimum=0))
        object.__setattr__(self, "repair_samples", check_count(self.repair_samples, "repair_samples", minimum=0))
        if not isinstance(self.amortized, bool):
            raise TypeError(f"amortized must be True or False, got {self.amortized!r}")
        if self.arch == "unet" and self.n_flows:
            raise ValueError("arch='unet' is unconditional, without flows, and always spatial "
                             "(leave spatial=False)")

    def build(self) -> LatentVariableModel:
        """The model this spec describes."""
        likelihood = self.likelihood.build()
        if self.arch == "unet":
            unet, conv_head = self._unet(likelihood)
            model = LatentVariableModel(unet, SpatialGaussianPosterior(unet.out_channels, self.latent_dim), conv_head,
                                        likelihood, prior=SpatialStandardNormal(self.latent_dim), spec=self.to_dict())
        else:
            condition = self._condition()
            extra = condition.out_features if condition is not None else 0
            encoder, decoder, features, _ = self._networks(extra)
            q: nn.Module = GaussianPosterior(features + extra, self.latent_dim)
            if self.n_flows:
                q = PlanarFlowPosterior(features + extra, self.latent_dim, n_flows=self.n_flows,
                                        amortized=self.amortized)
            model = LatentVariableModel(encoder, q, decoder, likelihood, prior=StandardNormal(self.latent_dim),
                                        condition=condition, spec=self.to_dict())
        model.repair_samples = self.repair_samples
        return model
