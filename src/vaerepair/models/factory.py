"""Built-in model configurations, rebuildable from a plain-value spec (for checkpoints and the CLI)."""

from __future__ import annotations

import warnings
from dataclasses import InitVar, asdict, dataclass
from typing import Any, overload

from torch import nn

from vaerepair._checks import check_count
from vaerepair.models.ladder import LadderVAE
from vaerepair.models.ladder_spec import LadderSpec
from vaerepair.models.latent import LatentVariableModel
from vaerepair.models.latent_specs import AutoencoderSpec, VAESpec
from vaerepair.models.likelihood_spec import LIKELIHOOD_FIELDS, LikelihoodSpec
from vaerepair.models.path import PathModel

__all__ = [
    "ModelSpec", "build", "autoencoder", "variational_autoencoder", "flow_vae", "conditional_vae", "noise_model_vae",
    "MODEL_KINDS", "SPECS", "make_likelihood",
]

MODEL_KINDS = ("ae", "dae", "vae")  # ModelSpec's kinds; SPECS holds the kinds with a spec of their own


@dataclass(frozen=True)
class ModelSpec:
    """The single-latent kinds (``ae``, ``dae``, ``vae``) in one flat plain-value spec, as the factories and
    the command line give them.

    Each kind has a spec of its own, with only its fields and its checks
    (:class:`~vaerepair.models.AutoencoderSpec`, :class:`~vaerepair.models.VAESpec`,
    the likelihood nested as a :class:`~vaerepair.models.LikelihoodSpec`):
    :meth:`kind_spec` gives it, runs its checks, and builds the model; models
    and checkpoints record that spec (``model.spec``). Fields of another kind
    must keep their defaults (``n_flows`` for an autoencoder, ``spatial`` for a VAE).

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
            (V)AE whose encoder and decoder both see the condition; or, for the
            ``"unet"`` denoiser (kind ``dae``/``ae``), ``"noise_level"``: each
            image's noise level joins its input as a constant map
            (:class:`~vaerepair.models.conditions.NoiseLevel`, a non-blind denoiser).
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
        residual: ``ae``/``dae`` only: a residual (noise-predicting) network, as DnCNN: the
            repair is the input minus the network's output.
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
    residual: bool = False
    flows: InitVar[int | None] = None  # the old spelling of n_flows

    def __post_init__(self, flows: int | None = None) -> None:
        if flows is not None:
            warnings.warn("ModelSpec(flows=...) is deprecated: the number of planar layers is n_flows everywhere "
                          "(flow_vae, PlanarFlowPosterior); use ModelSpec(n_flows=...)", DeprecationWarning,
                          stacklevel=3)
            object.__setattr__(self, "n_flows", flows)
        kind_spec = self.kind_spec()  # every check is the kind's own spec's
        for name in ("image_shape", "latent_dim", "hidden", "features", "n_classes", "condition_features"):
            object.__setattr__(self, name, getattr(kind_spec, name))  # as that spec normalised them
        for name in ("n_flows", "repair_samples"):
            object.__setattr__(self, name, check_count(getattr(self, name), name, minimum=0))

    def kind_spec(self) -> AutoencoderSpec | VAESpec:
        """The spec of this model's kind (:class:`AutoencoderSpec` or :class:`VAESpec`), which builds it."""
        if self.kind not in MODEL_KINDS:
            own = ", ".join(c.__name__ for k, c in SPECS.items() if k not in MODEL_KINDS)
            raise ValueError(f"unknown model kind {self.kind!r}; known: {', '.join(MODEL_KINDS)} "
                             f"(and {', '.join(k for k in SPECS if k not in MODEL_KINDS)}, each with its own spec: "
                             f"{own})")
        if self.spatial and self.kind == "vae":
            if self.arch != "conv":
                raise ValueError("spatial=True needs arch='conv'")
            raise ValueError("spatial=True is available for the point-mass autoencoder (kind 'ae'/'dae') only")
        if self.residual and self.kind == "vae":
            raise ValueError("residual=True is a point-mass model's (kind 'ae'/'dae'): a VAE decodes its latent")
        if self.n_flows and self.kind != "vae":
            raise ValueError(f"n_flows={self.n_flows} needs kind='vae' (a stochastic posterior), got {self.kind!r}")
        if self.arch == "unet" and self.spatial:
            raise ValueError("spatial=True needs arch='conv'")
        likelihood = LikelihoodSpec(self.likelihood, self.sigma, self.gain, self.link, self.learn_sigma)
        shared = {name: getattr(self, name) for name in ("kind", "image_shape", "latent_dim", "arch", "hidden",
                                                          "features", "norm", "activation", "condition", "n_classes",
                                                          "condition_features")}
        if self.kind == "vae":
            return VAESpec(**shared, likelihood=likelihood, n_flows=self.n_flows, amortized=self.amortized,
                           repair_samples=self.repair_samples)
        if self.repair_samples:
            raise ValueError(f"repair_samples={self.repair_samples} needs kind='vae' (a point-mass posterior has "
                             "one repair)")
        return AutoencoderSpec(**shared, likelihood=likelihood, spatial=self.spatial, residual=self.residual)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, numbers, strings): safe in a ``weights_only`` checkpoint."""
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error. Reads the dicts of the kinds' own specs too
        (the likelihood nested: ``model.spec``), and a checkpoint's ``flows`` (the old name of ``n_flows``)."""
        if not isinstance(d, dict):
            raise TypeError(f"a model spec must be a dict, got {type(d).__name__}")
        d = {("n_flows" if k == "flows" else k): v for k, v in d.items()}
        if isinstance(d.get("likelihood"), dict):
            nested = LikelihoodSpec.from_dict(d.pop("likelihood"))
            d.update({old: getattr(nested, new) for old, new in LIKELIHOOD_FIELDS})
        known = set(cls.__dataclass_fields__) - {"flows"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model spec has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


SPECS: dict[str, type] = {"ae": AutoencoderSpec, "dae": AutoencoderSpec, "vae": VAESpec, "ladder": LadderSpec}
"""Model kind -> its spec class: what :func:`build` reads a checkpoint's spec dict with."""


def make_likelihood(name: str, sigma: float = 1.0, gain: float = 0.0, link: str = "identity",
                    learn_sigma: bool = False) -> nn.Module:
    """The likelihood module a spec names (``"bernoulli"``, ``"continuous-bernoulli"``, ``"gaussian"``,
    ``"poisson-gaussian"``): :meth:`LikelihoodSpec.build`."""
    return LikelihoodSpec(name, sigma, gain, link, learn_sigma).build()


@overload
def build(spec: ModelSpec | AutoencoderSpec | VAESpec) -> LatentVariableModel: ...


@overload
def build(spec: LadderSpec) -> LadderVAE: ...


@overload
def build(spec: dict[str, Any]) -> PathModel: ...


def build(spec: ModelSpec | AutoencoderSpec | VAESpec | LadderSpec | dict[str, Any]) -> PathModel:
    """Build the model a spec describes: a spec of a kind in :data:`SPECS` (:class:`AutoencoderSpec`,
    :class:`VAESpec`, :class:`LadderSpec`), a :class:`ModelSpec` (the single-latent kinds in one flat spec), or a
    dict (``model.spec``, a checkpoint's), read by the spec class its ``kind`` names."""
    if isinstance(spec, dict):
        kind = spec.get("kind", "dae")
        if not isinstance(kind, str) or kind not in SPECS:
            ModelSpec(kind=kind)  # the error that lists the kinds
        spec = SPECS[kind].from_dict(spec)  # type: ignore[attr-defined]
    if isinstance(spec, ModelSpec):
        spec = spec.kind_spec()
    if not isinstance(spec, (AutoencoderSpec, VAESpec, LadderSpec)):
        kinds = ", ".join(sorted({c.__name__ for c in SPECS.values()}))
        raise TypeError(f"spec must be a ModelSpec, a spec of a model kind ({kinds}) or a dict, got "
                        f"{type(spec).__name__}")
    return spec.build()


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
