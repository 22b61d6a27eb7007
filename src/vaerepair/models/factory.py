"""Built-in model configurations, rebuildable from a plain-value spec (for checkpoints and the CLI)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import InitVar, asdict, dataclass
from typing import Any, overload

from torch import nn

from vaerepair._checks import check_count
from vaerepair.distributions import (
    Bernoulli,
    ContinuousBernoulli,
    Gaussian,
    GaussianPosterior,
    PointMassPosterior,
    PoissonGaussianLikelihood,
    SpatialGaussianPosterior,
    SpatialPointMassPosterior,
    SpatialStandardNormal,
    StandardNormal,
    spatial_head,
)
from vaerepair.flows import PlanarFlowPosterior
from vaerepair.models.conditions import CONDITION_KINDS, Condition, ImageCondition, LabelCondition
from vaerepair.models.ladder import LadderVAE
from vaerepair.models.ladder_spec import LadderSpec
from vaerepair.models.latent import LatentVariableModel
from vaerepair.models.path import PathModel
from vaerepair.nets import ConvDecoder, ConvEncoder, ConvHead, MLPDecoder, MLPEncoder, UNetEncoder
from vaerepair.nets.activations import ACTIVATIONS

__all__ = [
    "ModelSpec", "build", "autoencoder", "variational_autoencoder", "flow_vae", "conditional_vae", "noise_model_vae",
    "MODEL_KINDS", "SPECS", "make_likelihood",
]

MODEL_KINDS = ("ae", "dae", "vae")  # ModelSpec's kinds; SPECS holds the kinds with a spec of their own
_ARCHS = ("mlp", "conv", "unet")
_LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian", "poisson-gaussian")


@dataclass(frozen=True)
class ModelSpec:
    """Plain-value description of a built-in model.

    Attributes:
        kind: ``"ae"`` or ``"dae"`` (point-mass posterior, no prior; the same
            network, ``"dae"`` records that it is trained on corrupted inputs),
            or ``"vae"`` (diagonal Gaussian posterior, standard normal prior).
        image_shape: ``(C, H, W)``; ``(C, None, None)`` for ``"unet"``, which
            takes any size (given sides are dropped: the spec records channels).
        latent_dim: ``D``; for ``"unet"`` the code's channels ``L`` per pixel.
        arch: ``"mlp"``, ``"conv"`` or ``"unet"`` (fully convolutional, any
            image size: :class:`~vaerepair.nets.UNetEncoder`, a spatial code,
            :class:`~vaerepair.nets.ConvHead`; kind ``"vae"`` gives the code a
            diagonal Gaussian posterior and a standard normal prior per pixel).
        hidden: MLP hidden widths, the conv stages' widths, or the U-Net's
            widths per level (finest first).
        features: conv encoder feature size (ignored by the MLP).
        likelihood: ``"bernoulli"``, ``"continuous-bernoulli"``, ``"gaussian"`` or
            ``"poisson-gaussian"`` (the noise model of noisy observations:
            :class:`~vaerepair.distributions.PoissonGaussianLikelihood`).
        sigma: the Gaussian likelihood's scale (the Poisson-Gaussian one's read noise).
        gain: the Poisson-Gaussian likelihood's photon gain.
        link: the Gaussian likelihood's link (``"identity"`` or ``"sigmoid"``).
        learn_sigma: learn the Gaussian likelihood's scale.
        norm: ``"group"`` or ``None`` (conv only).
        activation: ``"relu"``, ``"silu"``, ``"gelu"`` or ``"tanh"``.
        spatial: conv only: a fully convolutional autoencoder whose latent is a
            ``H/4 x W/4`` map with ``latent_dim / (H/4 * W/4)`` channels.
        condition: ``None`` (unconditional), ``"label"`` (one-hot class label,
            :class:`~vaerepair.models.conditions.LabelCondition`) or ``"image"``
            (the corrupted image and its mask,
            :class:`~vaerepair.models.conditions.ImageCondition`): a conditional
            (V)AE whose encoder and decoder both see the condition.
        n_classes: the label condition's number of classes.
        condition_features: the image condition's embedding size.
        n_flows: ``vae`` only: ``K`` planar-flow layers after the Gaussian
            posterior (:class:`~vaerepair.flows.PlanarFlowPosterior`); 0: the
            Gaussian posterior itself. (``flows=`` is its old spelling: still
            accepted, with a ``DeprecationWarning``; checkpoints that hold it load as they are.)
        amortized: the flow layers are produced per image from the encoder
            features (``True``) or global (``False``).
        repair_samples: posterior samples behind ``model.repair`` (0: decode the
            posterior mean; a noise-model VAE repairs with the mean of decoded samples).
    """

    kind: str = "dae"
    image_shape: tuple[int, int, int] = (1, 28, 28)  # (C, None, None) for "unet"
    latent_dim: int = 20
    arch: str = "mlp"
    hidden: tuple[int, ...] = (400,)
    features: int = 256
    likelihood: str = "bernoulli"
    sigma: float = 1.0
    gain: float = 0.0
    link: str = "identity"
    learn_sigma: bool = False
    norm: str | None = None
    activation: str = "relu"
    spatial: bool = False
    condition: str | None = None
    n_classes: int = 10
    condition_features: int = 256
    n_flows: int = 0
    amortized: bool = True
    repair_samples: int = 0
    flows: InitVar[int | None] = None  # the old spelling of n_flows

    def __post_init__(self, flows: int | None = None) -> None:
        if flows is not None:
            warnings.warn("ModelSpec(flows=...) is deprecated: the number of planar layers is n_flows everywhere "
                          "(flow_vae, PlanarFlowPosterior); use ModelSpec(n_flows=...)", DeprecationWarning,
                          stacklevel=3)
            object.__setattr__(self, "n_flows", flows)
        for name, low in (("latent_dim", 1), ("features", 1), ("n_classes", 1), ("condition_features", 1),
                          ("n_flows", 0), ("repair_samples", 0)):  # numpy integers become ints (plain checkpoints)
            object.__setattr__(self, name, check_count(getattr(self, name), name, minimum=low))
        if isinstance(self.hidden, (str, bytes)) or not isinstance(self.hidden, Sequence) or not self.hidden:
            raise TypeError(f"hidden must be a non-empty sequence of layer widths like (400,) or (32, 64), "
                            f"got {self.hidden!r}")
        for width in self.hidden:
            check_count(width, f"every hidden width (hidden={tuple(self.hidden)!r})")
        check_count(self.image_shape[0], f"the channels of image_shape={tuple(self.image_shape)!r}")
        if self.kind not in MODEL_KINDS:
            own = ", ".join(c.__name__ for c in SPECS.values())
            raise ValueError(f"unknown model kind {self.kind!r}; known: {', '.join(MODEL_KINDS)} "
                             f"(and {', '.join(SPECS)}, each with its own spec: {own})")
        if self.arch not in _ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; known: {', '.join(_ARCHS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}")
        if self.spatial and self.arch != "conv":
            raise ValueError("spatial=True needs arch='conv'")
        if self.spatial and self.kind == "vae":
            raise ValueError("spatial=True is available for the point-mass autoencoder (kind 'ae'/'dae') only")
        if self.condition is not None and self.condition not in CONDITION_KINDS:
            raise ValueError(f"unknown condition {self.condition!r}; known: None, {', '.join(CONDITION_KINDS)}")
        if self.condition is not None and self.spatial:
            raise ValueError("a conditional model cannot be spatial (the condition joins a latent vector)")
        if self.n_flows and self.kind != "vae":
            raise ValueError(f"n_flows={self.n_flows} needs kind='vae' (a stochastic posterior), got {self.kind!r}")
        if self.likelihood not in _LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r}; known: {', '.join(_LIKELIHOODS)}")
        if self.repair_samples < 0:
            raise ValueError(f"repair_samples must be >= 0, got {self.repair_samples}")
        if self.arch == "unet":
            if self.n_flows or self.condition is not None or self.spatial:
                raise ValueError("arch='unet' is unconditional, without flows, and always spatial "
                                 "(leave spatial=False)")
            object.__setattr__(self, "image_shape", (int(self.image_shape[0]), None, None))
        else:
            if None in tuple(self.image_shape):
                raise ValueError(f"arch={self.arch!r} takes one image size: give image_shape=(C, H, W), got "
                                 f"{tuple(self.image_shape)}; arch='unet' takes any size")
            for side in self.image_shape[1:]:
                check_count(side, f"every side of image_shape={tuple(self.image_shape)!r}")
            object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        object.__setattr__(self, "hidden", tuple(int(s) for s in self.hidden))

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, numbers, strings): safe in a ``weights_only`` checkpoint."""
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error. A checkpoint's ``flows`` (the old name of
        ``n_flows``) is read as ``n_flows``."""
        if "flows" in d:
            d = {("n_flows" if k == "flows" else k): v for k, v in d.items()}
        known = set(cls.__dataclass_fields__) - {"flows"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model spec has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


SPECS: dict[str, type] = {"ladder": LadderSpec}  # model kind -> its spec class (the rest: ModelSpec)


def make_likelihood(name: str, sigma: float = 1.0, gain: float = 0.0, link: str = "identity",
                    learn_sigma: bool = False) -> nn.Module:
    """The likelihood module a spec names (``"bernoulli"``, ``"continuous-bernoulli"``, ``"gaussian"``,
    ``"poisson-gaussian"``)."""
    if name == "bernoulli":
        return Bernoulli()
    if name == "continuous-bernoulli":
        return ContinuousBernoulli()
    if name == "poisson-gaussian":
        return PoissonGaussianLikelihood(gain, sigma, link=link)
    if name == "gaussian":
        return Gaussian(sigma=sigma, link=link, learn_sigma=learn_sigma)
    raise ValueError(f"unknown likelihood {name!r}; known: {', '.join(_LIKELIHOODS)}")


@overload
def build(spec: ModelSpec) -> LatentVariableModel: ...


@overload
def build(spec: LadderSpec) -> LadderVAE: ...


@overload
def build(spec: dict[str, Any]) -> PathModel: ...


def build(spec: ModelSpec | LadderSpec | dict[str, Any]) -> PathModel:
    """Build the model a spec describes: a :class:`ModelSpec` (kinds ``ae``, ``dae``, ``vae``) or a spec of a
    kind in :data:`SPECS` (``ladder``); a dict is read by the spec class its ``kind`` names."""
    if isinstance(spec, dict):
        kind = spec.get("kind", "dae")
        spec = SPECS.get(kind, ModelSpec).from_dict(spec)  # type: ignore[attr-defined]
    if isinstance(spec, LadderSpec):
        return spec.build()
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, a LadderSpec or a dict, got {type(spec).__name__}")
    return _build_latent(spec)


def _build_latent(spec: ModelSpec) -> LatentVariableModel:
    likelihood = make_likelihood(spec.likelihood, spec.sigma, spec.gain, spec.link, spec.learn_sigma)
    encoder: nn.Module
    decoder: nn.Module
    act = ACTIVATIONS[spec.activation]
    head: nn.Module | None = None
    condition: Condition | None = None
    if spec.condition == "label":
        condition = LabelCondition(spec.n_classes)
    elif spec.condition == "image":
        condition = ImageCondition(spec.image_shape, features=spec.condition_features, activation=act)
    extra = condition.out_features if condition is not None else 0  # joins the features and the latent
    if spec.arch == "unet":
        unet = UNetEncoder(spec.image_shape[0], widths=spec.hidden, norm=spec.norm, activation=act)
        head = ConvHead(spec.latent_dim, spec.image_shape[0], hidden=spec.hidden[0], activation=act,
                        params_per_pixel=getattr(likelihood, "params_per_pixel", 1))
        if spec.kind == "vae":
            model = LatentVariableModel(unet, SpatialGaussianPosterior(unet.out_channels, spec.latent_dim), head,
                                        likelihood, prior=SpatialStandardNormal(spec.latent_dim), spec=spec.to_dict())
        else:
            model = LatentVariableModel(unet, SpatialPointMassPosterior(unet.out_channels, spec.latent_dim), head,
                                        likelihood, spec=spec.to_dict())
        model.repair_samples = spec.repair_samples
        return model
    if spec.arch == "mlp":
        encoder = MLPEncoder(spec.image_shape, hidden=spec.hidden, activation=act)
        decoder = MLPDecoder(spec.latent_dim + extra, spec.image_shape, hidden=tuple(reversed(spec.hidden)),
                             activation=act)
        features = encoder.out_features
    else:
        if len(spec.hidden) != 2:
            raise ValueError(f"the conv arch needs hidden=(C1, C2), got {spec.hidden!r}")
        conv_encoder = ConvEncoder(spec.image_shape, hidden=spec.hidden, norm=spec.norm, activation=act,
                                   out_features=None if spec.spatial else spec.features)
        decoder = ConvDecoder(spec.latent_dim + extra, spec.image_shape, hidden=tuple(reversed(spec.hidden)),
                              norm=spec.norm, activation=act, spatial=spec.spatial)
        encoder, features = conv_encoder, conv_encoder.out_features
        if spec.spatial:
            _, h, w = conv_encoder.feature_shape
            head = spatial_head(conv_encoder.feature_shape, spec.latent_dim // (h * w))
    if spec.kind == "vae":
        q: nn.Module = GaussianPosterior(features + extra, spec.latent_dim)
        if spec.n_flows:
            q = PlanarFlowPosterior(features + extra, spec.latent_dim, n_flows=spec.n_flows, amortized=spec.amortized)
        model = LatentVariableModel(encoder, q, decoder, likelihood, prior=StandardNormal(spec.latent_dim),
                                    condition=condition, spec=spec.to_dict())
    else:
        posterior = PointMassPosterior(features + extra, spec.latent_dim, head=head)
        model = LatentVariableModel(encoder, posterior, decoder, likelihood, condition=condition,
                                    spec=spec.to_dict())
    model.repair_samples = spec.repair_samples
    return model


def autoencoder(
    image_shape: tuple[int, int, int] = (1, 28, 28),
    latent_dim: int = 20,
    arch: str = "mlp",
    likelihood: str = "bernoulli",
    **options: Any,
) -> LatentVariableModel:
    """A (denoising) autoencoder: point-mass posterior, no prior.

    ``arch="mlp"`` defaults to the reports' 784-400-20 network; ``options`` are
    further :class:`ModelSpec` fields (``hidden``, ``features``, ``sigma``,
    ``link``, ``norm``, ``activation``).

    Example:
        >>> autoencoder(arch="conv", latent_dim=32, hidden=(32, 64)).latent_dim
        32
    """
    return _configuration("dae", image_shape, latent_dim, arch, likelihood, options)


def variational_autoencoder(
    image_shape: tuple[int, int, int] = (1, 28, 28),
    latent_dim: int = 20,
    arch: str = "mlp",
    likelihood: str = "bernoulli",
    **options: Any,
) -> LatentVariableModel:
    """A VAE: diagonal Gaussian posterior, standard normal prior (train it with :class:`ELBO`).

    ``arch="mlp"`` defaults to the reports' 784-400-20 network; ``options`` are
    further :class:`ModelSpec` fields.

    Example:
        >>> variational_autoencoder().prior
        StandardNormal(latent_dim=20)
    """
    return _configuration("vae", image_shape, latent_dim, arch, likelihood, options)


def flow_vae(
    n_flows: int = 5,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    latent_dim: int = 20,
    arch: str = "mlp",
    likelihood: str = "bernoulli",
    amortized: bool = True,
    **options: Any,
) -> LatentVariableModel:
    """A VAE whose posterior is a Gaussian refined by ``n_flows`` planar layers (report 003).

    Train it with :class:`ELBO` (its default ``kl="auto"`` uses the Monte-Carlo
    KL for flows). ``n_flows=0`` is :func:`variational_autoencoder`.

    Example:
        >>> flow_vae(5).posterior
        PlanarFlowPosterior(
          n_flows=5, amortized=True
          ...
    """
    return _configuration("vae", image_shape, latent_dim, arch, likelihood,
                          {"n_flows": n_flows, "amortized": amortized, **options})


def conditional_vae(
    condition: str = "image",
    image_shape: tuple[int, int, int] = (1, 28, 28),
    latent_dim: int = 20,
    arch: str = "mlp",
    likelihood: str = "bernoulli",
    **options: Any,
) -> LatentVariableModel:
    """A conditional VAE (report 002): ``condition="label"`` (one-hot class) or ``"image"`` (incomplete image + mask).

    Encoder and decoder both see the condition; train it with :class:`ELBO`
    (the :class:`~vaerepair.Trainer` builds each batch's condition with
    ``model.condition.prepare``). ``options`` are further :class:`ModelSpec`
    fields (``n_classes``, ``condition_features``, ``hidden``...).

    Example:
        >>> model = conditional_vae("label")
        >>> x, c = torch.rand(2, 1, 28, 28), model.condition(torch.tensor([3, 7]))
        >>> model.reconstruct(x, c).shape
        torch.Size([2, 1, 28, 28])
    """
    return _configuration("vae", image_shape, latent_dim, arch, likelihood, {"condition": condition, **options})


def noise_model_vae(
    sigma: float, channels: int = 1, gain: float = 0.0, latent_channels: int = 8,
    widths: tuple[int, ...] = (32, 64, 128), repair_samples: int = 100, **options: Any,
) -> LatentVariableModel:
    r"""A denoiser trained on noisy images only, in the DivNoising family: a fully convolutional VAE whose
    likelihood is the known noise model.

    The U-Net encoder gives :math:`q(z \mid y)`, a diagonal Gaussian over a
    ``latent_channels``-channel code per pixel, with a standard normal prior;
    the decoder gives the clean signal :math:`s(z)`; the likelihood is the noise
    model :math:`p(y \mid s)`: Gaussian with the noise's ``sigma``, or
    Poisson-Gaussian with ``gain`` > 0. Train it with :class:`~vaerepair.objectives.ELBO`
    on noisy observations ``y`` alone (input and target both ``y``). Its
    :meth:`~vaerepair.models.LatentVariableModel.repair` is the MMSE estimate,
    the mean of ``repair_samples`` decoded posterior samples, and
    ``repair(y, return_std=True)`` adds the per-pixel standard deviation.

    Args:
        sigma: the Gaussian noise's standard deviation (Poisson-Gaussian: the read noise).
        channels: the images' channels.
        gain: the photon gain (0: Gaussian noise).
        latent_channels: the code's channels per pixel.
        widths: the U-Net's widths per level (finest first).
        repair_samples: posterior samples per repair.
        options: further :class:`ModelSpec` fields (``activation``, ``norm``...).

    Example:
        >>> model = noise_model_vae(sigma=0.5)
        >>> mmse, std = model.repair(torch.rand(2, 1, 12, 12), n_samples=8, return_std=True)
        >>> mmse.shape, std.shape
        (torch.Size([2, 1, 12, 12]), torch.Size([2, 1, 12, 12]))
    """
    likelihood = "poisson-gaussian" if gain > 0 else "gaussian"
    shape: Any = (channels, None, None)
    return build(ModelSpec(kind="vae", image_shape=shape, latent_dim=latent_channels, arch="unet",
                           hidden=widths, likelihood=likelihood, sigma=sigma, gain=gain,
                           repair_samples=repair_samples, **options))


def _configuration(
    kind: str, image_shape: tuple[int, int, int], latent_dim: int, arch: str, likelihood: str,
    options: dict[str, Any],
) -> LatentVariableModel:
    if arch == "conv" and "hidden" not in options:
        options["hidden"] = (32, 64)  # the conv stages' widths (the MLP default is the reports' 400)
    return build(ModelSpec(kind=kind, image_shape=image_shape, latent_dim=latent_dim, arch=arch,
                           likelihood=likelihood, **options))
