"""The ladder VAE's plain-value spec (for checkpoints and the CLI) and its factory, :func:`ladder_vae`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vaerepair._checks import check_count, check_positive
from vaerepair.models.ladder import LadderVAE
from vaerepair.models.likelihood_spec import LikelihoodSpec, nest_likelihood, spec_from_fields
from vaerepair.nets.activations import ACTIVATIONS

__all__ = ["LadderSpec", "ladder_vae"]


def _widths(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise TypeError(f"{name} must be a non-empty sequence of channel counts like (32, 32, 32), got {value!r}")
    return tuple(check_count(v, f"every entry of {name}={tuple(value)!r}") for v in value)


@dataclass(frozen=True)
class LadderSpec:
    """Plain-value description of a :class:`~vaerepair.models.LadderVAE` (``kind="ladder"``).

    Attributes:
        channels: the images' channels.
        widths: feature channels per level, finest first.
        latent_channels: channels of each level's code, one per level.
        blocks: gated residual blocks per level and direction.
        likelihood: the likelihood's :class:`~vaerepair.models.LikelihoodSpec`:
            ``"gaussian"`` (the noise model of Gaussian noise, ``sigma``),
            ``"poisson-gaussian"`` (``gain``, ``sigma``), ``"bernoulli"`` or
            ``"continuous-bernoulli"``.
        activation: ``"relu"``, ``"silu"``, ``"gelu"`` or ``"tanh"``.
        repair_samples: posterior samples behind ``model.repair`` (0: posterior means).
        full_resolution: the finest level at the image's resolution (else half of it).
        condition: ``None``, or ``"image"`` for a conditional ladder (the corrupted
            image and its mask condition the prior; trained on pairs, it repairs from
            the prior given the condition: diverse completions of a hole).
        flows: planar-flow layers on every level's posterior, acting on each pixel's channels (0: none).
    """

    kind: str = "ladder"
    channels: int = 1
    widths: tuple[int, ...] = (32, 32, 32)
    latent_channels: tuple[int, ...] = (16, 16, 16)
    blocks: int = 1
    likelihood: LikelihoodSpec = field(default_factory=lambda: LikelihoodSpec("gaussian", sigma=0.1))
    activation: str = "silu"
    repair_samples: int = 100
    full_resolution: bool = False
    condition: str | None = None
    flows: int = 0

    def __post_init__(self) -> None:
        if self.kind != "ladder":
            raise ValueError(f"a LadderSpec has kind='ladder', got {self.kind!r}")
        object.__setattr__(self, "channels", check_count(self.channels, "channels"))
        object.__setattr__(self, "blocks", check_count(self.blocks, "blocks", minimum=0))
        object.__setattr__(self, "repair_samples", check_count(self.repair_samples, "repair_samples", minimum=0))
        object.__setattr__(self, "flows", check_count(self.flows, "flows", minimum=0))
        widths = _widths(self.widths, "widths")
        latent = self.latent_channels
        if isinstance(latent, Sequence) and not isinstance(latent, (str, bytes)):
            latent = _widths(latent, "latent_channels")
        else:
            latent = (check_count(latent, "latent_channels"),) * len(widths)
        if len(latent) != len(widths):
            raise ValueError(f"latent_channels has {len(latent)} entries but widths {len(widths)} levels; "
                             "give one per level")
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "latent_channels", latent)
        if not isinstance(self.likelihood, LikelihoodSpec):
            raise TypeError(f"likelihood must be a LikelihoodSpec such as LikelihoodSpec('gaussian', sigma=0.1), got "
                            f"{self.likelihood!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}")
        if not isinstance(self.full_resolution, bool):
            raise TypeError(f"full_resolution must be True or False, got {self.full_resolution!r}")
        if self.condition not in (None, "image"):
            raise ValueError(f"a ladder VAE's condition is None or 'image' (the corrupted image and its mask), "
                             f"got {self.condition!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values only: safe in a ``weights_only`` checkpoint."""
        d = asdict(self)
        d["widths"], d["latent_channels"] = list(self.widths), list(self.latent_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LadderSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error. A spec written before the likelihood was
        nested (its name, ``sigma``, ``gain`` and ``link`` beside the other fields) reads too."""
        if not isinstance(d, dict):
            raise TypeError(f"a ladder spec must be a dict, got {type(d).__name__}")
        return spec_from_fields(cls, nest_likelihood(d), "ladder spec")

    def build(self) -> LadderVAE:
        """The model this spec describes."""
        return LadderVAE(self.channels, self.widths, self.latent_channels, self.likelihood.build(), blocks=self.blocks,
                         activation=ACTIVATIONS[self.activation], repair_samples=self.repair_samples,
                         full_resolution=self.full_resolution, condition=self.condition, flows=self.flows,
                         spec=self.to_dict())


def ladder_vae(channels: int = 1, widths: Sequence[int] = (32, 32, 32), latent_channels: int | Sequence[int] = 16,
               likelihood: str = "gaussian", sigma: float = 0.1, gain: float = 0.0, **options: Any) -> LadderVAE:
    r"""A hierarchical (ladder) VAE: ``len(widths)`` levels of spatial latents at :math:`1/2, 1/4, \dots` of
    the resolution, drawn top-down (:class:`~vaerepair.models.LadderVAE`).

    For **noisy-only denoising** give the noise model as the likelihood
    (``likelihood="gaussian"`` with the noise's ``sigma``, or ``gain > 0`` for
    Poisson-Gaussian noise) and train with :class:`~vaerepair.ELBO` on noisy
    images alone (input and target both the noisy image);
    ``model.repair(y, return_std=True)`` gives the posterior mean of the clean
    signal over ``repair_samples`` top-down draws and its per-pixel standard
    deviation. ``options``: further :class:`LadderSpec` fields (``blocks``,
    ``activation``, ``link``, ``repair_samples``, ``full_resolution``, ``condition``, ``flows``).

    For **inpainting and supervised repair with uncertainty** pass
    ``condition="image"`` and train with :class:`~vaerepair.ELBO` on (corrupted,
    clean) pairs: the corrupted image and its mask condition the prior, the
    posterior sees the clean target, and ``model.repair(x, condition,
    return_std=True)`` (``condition = model.condition.prepare(x, mask)``) averages
    completions drawn from the prior given the condition.

    Example:
        >>> model = ladder_vae(widths=(8, 8), latent_channels=2, sigma=0.5)
        >>> mean, std = model.repair(torch.rand(2, 1, 28, 28), n_samples=4, return_std=True)
        >>> mean.shape, std.shape
        (torch.Size([2, 1, 28, 28]), torch.Size([2, 1, 28, 28]))
    """
    if check_positive(gain, "gain", allow_zero=True) > 0 and likelihood == "gaussian":
        likelihood = "poisson-gaussian"
    lcs: Any = latent_channels
    if not isinstance(lcs, Sequence):
        lcs = (check_count(lcs, "latent_channels"),) * len(_widths(widths, "widths"))
    link = options.pop("link", "identity")
    return LadderSpec(channels=channels, widths=tuple(widths), latent_channels=tuple(lcs),
                      likelihood=LikelihoodSpec(likelihood, sigma, gain, link), **options).build()
