r"""A hierarchical (ladder) VAE over spatial latents, in the family of Hierarchical DivNoising.

Levels :math:`l = 1..L` hold spatial codes :math:`z_l` of ``latent_channels``
channels at :math:`1/2^l` of the image's resolution (:math:`1/2^{l-1}` with
``full_resolution=True``). A **bottom-up** pass of
stride-2 convolutions and gated residual blocks gives features :math:`d_l` at
every level (computed once per image, reused by every sample). The
**top-down** pass draws the levels from the coarsest down:

.. math::
    p(z_L) = N(m, \mathrm{diag}\, s^2)\ \text{(learned per channel)},\qquad
    q(z_L \mid x) = N(\mu_L(d_L), \sigma_L^2(d_L)),

    p(z_l \mid z_{>l}) = N(m_l(h_l), s_l^2(h_l)),\qquad
    q(z_l \mid z_{>l}, x) = N(m_l + \Delta\mu_l(h_l, d_l),\ \mathrm{softplus}(r_l + \Delta r_l)^2),

where :math:`h_l` are the top-down features after the levels above (each level's
sample joins :math:`h` by a residual convolution, then gated residual blocks and
a 2x transposed convolution carry it down). The posterior is parameterised
relative to the prior (as in NVAE), so its KL starts small. Nothing passes from
the input to the output except through the latents, whose KL limits what they
carry: trained on noisy images with the noise model as likelihood, the latents
cannot afford to encode the noise, and the decoded mean is the clean signal.
The last top-down features give the likelihood's parameters at full resolution.

Images of any size are reflect-padded (bottom and right) to a multiple of
:math:`2^L` and the likelihood is cropped back, so a 28x28 or 321x481 image works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaerepair._checks import check_count
from vaerepair.distributions import DiagonalGaussian
from vaerepair.distributions.gaussian import standard_normal
from vaerepair.models.path import LatentLevel, LatentPath, PathModel, check_latents
from vaerepair.nets.activations import activation_class
from vaerepair.nets.unet import pad_to_multiple

__all__ = ["LadderVAE", "GatedResidualBlock", "LearnedPrior"]


class GatedResidualBlock(nn.Module):
    r"""``x + a * sigmoid(g)`` with ``(a, g)`` from two 3x3 convolutions: ``(B, W, H, W') -> (B, W, H, W')``.

    The gate lets a block start close to the identity and open as it learns
    (Hierarchical DivNoising's gated blocks); no normalisation, so images of a
    batch never interact and tiled repair is exact.
    """

    def __init__(self, channels: int, activation: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        self.net = nn.Sequential(activation(), nn.Conv2d(channels, channels, 3, padding=1), activation(),
                                 nn.Conv2d(channels, 2 * channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        a, g = self.net(x).chunk(2, dim=1)
        return x + a * torch.sigmoid(g)


class LearnedPrior(nn.Module):
    r"""The top level's prior :math:`N(m, \mathrm{diag}\, s^2)`, one learned mean and scale per channel,
    the same at every position (so it fits codes of any size)."""

    def __init__(self, latent_channels: int, min_scale: float = 1e-3) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(latent_channels))
        self.raw_scale = nn.Parameter(torch.full((latent_channels,), 0.5413))  # softplus(0.5413) = 1
        self.min_scale = float(min_scale)

    def forward(self, shape: Sequence[int]) -> DiagonalGaussian:
        """The prior over codes of ``shape`` ``(..., L, H, W)``."""
        view = (-1, 1, 1)
        loc = self.loc.view(view).expand(*shape)
        scale = (F.softplus(self.raw_scale) + self.min_scale).view(view).expand(*shape)
        return DiagonalGaussian(loc, scale, event_dims=3)

    def log_prob(self, z: Tensor) -> Tensor:
        """``log p(z)`` summed over ``(L, H, W)``: ``(..., B)``."""
        return self(z.shape).log_prob(z)


class _Level(nn.Module):
    """One level: its bottom-up stage, its prior and posterior heads, and its top-down stage."""

    def __init__(self, c_in: int, width: int, c_out: int, latent: int, blocks: int, top: bool,
                 activation: type[nn.Module], stride: int = 2) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(c_in, width, 3, stride=stride, padding=1),
                                  *(GatedResidualBlock(width, activation) for _ in range(blocks)))
        self.top = top
        if top:
            self.q_head = nn.Conv2d(width, 2 * latent, 3, padding=1)
            self.prior = LearnedPrior(latent)
        else:
            self.p_head = nn.Conv2d(width, 2 * latent, 3, padding=1)
            self.q_head = nn.Conv2d(2 * width, 2 * latent, 3, padding=1)
            nn.init.zeros_(self.q_head.weight)  # q = p at the start: the KL starts at zero
            nn.init.zeros_(cast(Tensor, self.q_head.bias))
        self.z_in = nn.Conv2d(latent, width, 3, padding=1)
        self.up = nn.Sequential(*(GatedResidualBlock(width, activation) for _ in range(blocks)),
                                nn.ConvTranspose2d(width, c_out, 2, stride=2) if stride == 2 else
                                nn.Conv2d(width, c_out, 3, padding=1))


class _BottomUp(NamedTuple):
    features: list[Tensor]  # d_l, finest first, each (B, W_l, H_l, W'_l)
    size: tuple[int, int]  # the unpadded image's (H, W)


class LadderVAE(PathModel):
    r"""A ladder VAE: ``L`` levels of spatial latents at decreasing resolution, drawn top-down.

    Args:
        channels: the images' channels ``C``.
        widths: feature channels per level, finest first (``L = len(widths)``
            levels at :math:`1/2, 1/4, \dots` of the resolution).
        full_resolution: the finest level at the image's own resolution (levels at
            :math:`1, 1/2, \dots`) instead of half of it.
        latent_channels: channels of every level's code (an int) or one per level.
        likelihood: ``p(x | z)``, a likelihood module (e.g.
            :class:`~vaerepair.distributions.Gaussian` with the noise's sigma for
            noisy-only training).
        blocks: gated residual blocks per level and direction.
        activation: the nonlinearity: a name (``"silu"``, ``"relu"``, ``"gelu"``, ``"tanh"``) or an ``nn.Module``
            class.
        repair_samples: posterior samples behind ``repair`` (0: every level at
            its posterior mean).
        spec: the plain-value spec it was built from (set by :func:`vaerepair.models.build`).

    Example:
        >>> from vaerepair.distributions import Gaussian
        >>> model = LadderVAE(1, widths=(8, 8), latent_channels=2, likelihood=Gaussian(0.1))
        >>> path = model.path(torch.rand(3, 1, 28, 28), n_samples=4)
        >>> [tuple(level.z.shape) for level in path.levels], tuple(path.likelihood.mean.shape)
        ([(4, 3, 2, 7, 7), (4, 3, 2, 14, 14)], (4, 3, 1, 28, 28))
    """

    latent_event_dims = 3

    def __init__(self, channels: int = 1, widths: Sequence[int] = (32, 32, 32),
                 latent_channels: int | Sequence[int] = 16, likelihood: nn.Module | None = None,
                 blocks: int = 1, activation: str | type[nn.Module] = "silu", repair_samples: int = 0,
                 full_resolution: bool = False, spec: dict[str, Any] | None = None) -> None:
        super().__init__()
        activation = activation_class(activation)
        channels = check_count(channels, "channels")
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
            raise TypeError(f"widths must be a non-empty sequence of channel counts like (32, 32, 32), got {widths!r}")
        ws = tuple(check_count(w, f"every width (widths={tuple(widths)!r})") for w in widths)
        if isinstance(latent_channels, Sequence) and not isinstance(latent_channels, (str, bytes)):
            lcs = tuple(check_count(c, "every latent_channels entry") for c in latent_channels)
            if len(lcs) != len(ws):
                raise ValueError(f"latent_channels has {len(lcs)} entries but there are {len(ws)} levels "
                                 f"(widths={ws}); give one per level or a single int")
        else:
            lcs = (check_count(latent_channels, "latent_channels"),) * len(ws)
        if likelihood is None or not isinstance(likelihood, nn.Module):
            raise TypeError("likelihood must be a likelihood module such as vaerepair.distributions.Gaussian(sigma), "
                            f"got {type(likelihood).__name__}")
        blocks = check_count(blocks, "blocks", minimum=0)
        self.image_shape = (channels, None, None)
        self.widths, self.latent_channels, self.blocks = ws, lcs, blocks
        self.full_resolution = bool(full_resolution)
        self._first = 0 if self.full_resolution else 1  # level i is at 1 / 2 ** (i + first) of the resolution
        self.likelihood = likelihood
        self.condition = None
        self.repair_samples = check_count(repair_samples, "repair_samples", minimum=0)
        self.spec = dict(spec) if spec is not None else None
        top = len(ws) - 1
        self.stem = nn.Sequential(nn.Conv2d(channels, ws[0], 3, padding=1),
                                  *(GatedResidualBlock(ws[0], activation) for _ in range(blocks)))
        self.levels = nn.ModuleList(
            _Level(ws[max(i - 1, 0)], w, ws[max(i - 1, 0)], lc, blocks, i == top, activation,
                   stride=1 if i == 0 and self.full_resolution else 2)
            for i, (w, lc) in enumerate(zip(ws, lcs, strict=True)))
        self.head = nn.Sequential(*(GatedResidualBlock(ws[0], activation) for _ in range(blocks)), activation(),
                                  nn.Conv2d(ws[0], channels * int(getattr(likelihood, "params_per_pixel", 1)), 3,
                                            padding=1))

    @property
    def prior(self) -> LearnedPrior:
        """The top level's learned prior (the lower levels' priors are conditional, made in the top-down pass)."""
        return cast(LearnedPrior, cast(_Level, self.levels[-1]).prior)

    @property
    def n_levels(self) -> int:
        return len(self.widths)

    @property
    def multiple(self) -> int:
        """Sides are padded to multiples of the coarsest level's factor (``2 ** L``, or ``2 ** (L - 1)`` with
        ``full_resolution``); tiles start on that grid."""
        return int(2 ** (len(self.widths) - 1 + self._first))

    @property
    def receptive_radius(self) -> int:
        """An upper bound on how far an output pixel sees into the input: every 3x3 convolution at scale ``s``
        adds ``s`` (a stride-2 one the scale of its input, a 2x2 transposed one its input's scale)."""
        b = self.blocks
        radius = 1 + 2 * b + 2 * b + 1  # stem, head (at scale 1)
        for i in range(len(self.widths)):
            s = 2 ** (i + self._first)
            radius += max(s // 2, 1) + 2 * b * s  # bottom-up: the (stride-2) conv, blocks
            radius += 3 * s + 2 * b * s + s  # heads, z_in, top-down blocks, the transposed (or 3x3) conv
        return radius

    def bottom_up(self, x: Tensor, condition: Tensor | None = None) -> _BottomUp:
        """Features of every level, finest first, from images ``(B, C, H, W)``."""
        if condition is not None:
            raise ValueError("this ladder VAE is not conditional, so condition must be None")
        self.check_input(x, any_float=True)
        padded, size = pad_to_multiple(x, self.multiple)
        h = self.stem(padded)
        features = []
        for level in self.levels:
            h = cast(_Level, level).down(h)
            features.append(h)
        return _BottomUp(features, size)

    def top_down(self, features: _BottomUp | None, n_samples: int | None = None, *,
                 latents: Sequence[Tensor | None] | None = None, mean: bool = False,
                 generator: torch.Generator | None = None, batch: int | None = None,
                 size: tuple[int, int] | None = None) -> LatentPath:
        """Draw the levels top-down and decode.

        With ``features=None`` every level is drawn from its prior (give ``batch``
        and the images' ``size``); a level whose ``latents[l]`` (top first) is given
        takes it, shaped like the draws: ``(B, L_l, H_l, W_l)`` or ``(S, B, ...)``.
        """
        check_latents(latents, self.n_levels)
        if features is not None:
            batch, size = len(features.features[0]), features.size
        if batch is None or size is None:
            raise ValueError("drawing from the prior needs batch= (images) and size=(H, W)")
        s = 1 if n_samples is None else check_count(n_samples, "n_samples")
        lead = (batch,) if n_samples is None else (s, batch)
        m = self.multiple
        sides = (-(-size[0] // m) * m, -(-size[1] // m) * m)
        levels: list[LatentLevel] = []
        h: Tensor | None = None
        for index, i in enumerate(reversed(range(self.n_levels))):
            level: Any = self.levels[i]
            d = None if features is None else features.features[i].repeat(s, 1, 1, 1)  # sample-major (S*B, ...)
            scale = i + self._first
            shape = (s * batch, self.latent_channels[i], sides[0] >> scale, sides[1] >> scale)
            if level.top:
                p = level.prior(shape)
                q = None if d is None else _gaussian(level.q_head(d))
            else:
                assert h is not None
                p_loc, p_raw = level.p_head(h).chunk(2, dim=1)
                p = DiagonalGaussian(p_loc, F.softplus(p_raw) + 1e-3, event_dims=3)
                q = None
                if d is not None:
                    dq_loc, dq_raw = level.q_head(torch.cat([h, d], dim=1)).chunk(2, dim=1)
                    q = DiagonalGaussian(p_loc + dq_loc, F.softplus(p_raw + dq_raw) + 1e-3, event_dims=3)
            given = None if latents is None else latents[index]
            source = p if q is None else q
            if given is not None:
                expected = (*lead, *shape[1:])
                if tuple(given.shape) != expected:
                    raise ValueError(f"latents[{index}] (level {index}, top first) must have shape {expected}, "
                                     f"got {tuple(given.shape)}")
                z = given.reshape(shape)
            elif mean:
                z = source.loc
            else:
                z = source.loc + source.scale * self.standard_noise(shape, generator, features, index)
            z_in = level.z_in(z)
            h = level.up(z_in if h is None else h + z_in)
            levels.append(LatentLevel(z.view(*lead, *shape[1:]), _view(q, lead), _view(p, lead), event_dims=3))
        assert h is not None
        params = self.head(h)[..., : size[0], : size[1]]
        return LatentPath(tuple(levels), self.likelihood(params.view(*lead, *params.shape[1:])))

    def standard_noise(self, shape: tuple[int, ...], generator: torch.Generator | None, features: _BottomUp | None,
                       level: int) -> Tensor:
        """The N(0, I) draws of level ``level`` (top first), ``shape`` ``(S * B, L, H, W)`` sample-major: a hook
        (:class:`vaerepair.testing.ExchangeableLadder` ties them to the images)."""
        ref = cast(Tensor, self.stem[0].weight)
        return standard_normal(shape, generator, ref.device, ref.dtype)

    @torch.no_grad()
    def sample(self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None,
               size: tuple[int, int] | None = None) -> Tensor:
        """``n`` images ``(n, C, H, W)`` of ``size`` ``(H, W)`` drawn from the prior, top-down (likelihood means)."""
        n = check_count(n, "n")
        if condition is not None:
            raise ValueError("this ladder VAE is not conditional, so condition must be None")
        if size is None:
            raise ValueError("a ladder VAE takes any image size: pass size=(H, W) (model.sample(n, size=(28, 28)))")
        if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
            raise TypeError(f"size must be a pair (H, W) of positive integers, got {size!r}")
        size = (check_count(size[0], "size's H"), check_count(size[1], "size's W"))
        was_training = self.training
        self.eval()
        try:
            return self.top_down(None, batch=n, size=size, generator=generator).likelihood.mean  # type: ignore[no-any-return]
        finally:
            self.train(was_training)


def _gaussian(params: Tensor) -> DiagonalGaussian:
    loc, raw = params.chunk(2, dim=1)
    return DiagonalGaussian(loc, F.softplus(raw) + 1e-3, event_dims=3)


def _view(d: DiagonalGaussian | None, lead: tuple[int, ...]) -> DiagonalGaussian | None:
    """A distribution over ``(S*B, ...)`` codes seen as ``(*lead, ...)``."""
    if d is None:
        return None
    return DiagonalGaussian(d.loc.reshape(*lead, *d.loc.shape[1:]), d.scale.reshape(*lead, *d.scale.shape[1:]),
                            event_dims=3)
