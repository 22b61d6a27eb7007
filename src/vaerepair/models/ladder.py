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

from vaerepair._checks import check_count, shape_str
from vaerepair.distributions import DiagonalGaussian
from vaerepair.distributions.gaussian import standard_normal
from vaerepair.flows.posterior import ChannelFlowDistribution, PlanarFlow
from vaerepair.models.conditions import ImageMaskMap
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
    """One level: its bottom-up stage, its prior and posterior heads, and its top-down stage (and, in a
    conditional ladder, the condition's bottom-up stage and the convolution that joins it to the top-down
    features)."""

    def __init__(self, c_in: int, width: int, c_out: int, latent: int, blocks: int, top: bool,
                 activation: type[nn.Module], stride: int = 2, conditional: bool = False, flows: int = 0) -> None:
        super().__init__()
        self.down = _down(c_in, width, blocks, activation, stride)
        self.top = top
        self.learned_prior = top and not conditional  # a conditional ladder's top prior is p(z_L | c)
        if self.learned_prior:
            self.q_head = nn.Conv2d(width, 2 * latent, 3, padding=1)
            self.prior = LearnedPrior(latent)
        else:
            self.p_head = nn.Conv2d(width, 2 * latent, 3, padding=1)
            self.q_head = nn.Conv2d(2 * width, 2 * latent, 3, padding=1)
            nn.init.zeros_(self.q_head.weight)  # q = p at the start: the KL starts at zero
            nn.init.zeros_(cast(Tensor, self.q_head.bias))
        if conditional:
            self.context_down = _down(c_in, width, blocks, activation, stride)
            self.context_in = nn.Conv2d(width, width, 3, padding=1)
        self.flow = PlanarFlow(latent, flows) if flows else None  # the posterior's layers on each pixel's channels
        self.z_in = nn.Conv2d(latent, width, 3, padding=1)
        self.up = nn.Sequential(*(GatedResidualBlock(width, activation) for _ in range(blocks)),
                                nn.ConvTranspose2d(width, c_out, 2, stride=2) if stride == 2 else
                                nn.Conv2d(width, c_out, 3, padding=1))


def _down(c_in: int, width: int, blocks: int, activation: type[nn.Module], stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, width, 3, stride=stride, padding=1),
                         *(GatedResidualBlock(width, activation) for _ in range(blocks)))


def _stem(c_in: int, width: int, blocks: int, activation: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1),
                         *(GatedResidualBlock(width, activation) for _ in range(blocks)))


class _BottomUp(NamedTuple):
    features: list[Tensor] | None  # d_l, finest first, each (B, W_l, H_l, W'_l); None: draw from the prior
    size: tuple[int, int]  # the unpadded image's (H, W)
    context: list[Tensor] | None = None  # a conditional ladder's condition features: full resolution, then c_l

    @property
    def batch(self) -> int:
        return len((self.features if self.features is not None else cast(list[Tensor], self.context))[0])


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
        condition: ``None``, or ``"image"``: a **conditional ladder**, trained on
            (corrupted, clean) pairs. Its condition ``c`` is the corrupted image and
            its mask (:class:`~vaerepair.models.conditions.ImageMaskMap`, ``(B, 2C, H, W)``),
            which a second bottom-up pass embeds level by level and every level's
            top-down features receive. The prior :math:`p(z_l \mid z_{>l}, c)` sees
            only the condition; the posterior :math:`q(z_l \mid z_{>l}, x, c)` sees the
            clean target too (``posterior_sees_target``: :class:`~vaerepair.ELBO` and
            :class:`~vaerepair.IWAE` give it ``x_target``), so the latents carry what
            the condition lacks (the content of a hole) and the repairs, drawn from
            the prior given the condition, differ where the condition leaves room:
            diverse completions, and a per-pixel standard deviation that is large in
            the hole and small where the pixels were seen.
        flows: planar-flow layers on every level's posterior (``0``: none), the
            same layers at every pixel of the level, acting on its ``L_l`` channels
            (:class:`~vaerepair.flows.ChannelFlowDistribution`): a posterior that is
            no longer a diagonal Gaussian, whose KL objectives estimate by Monte Carlo.
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
                 full_resolution: bool = False, condition: str | None = None, flows: int = 0,
                 spec: dict[str, Any] | None = None) -> None:
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
        self.flows = check_count(flows, "flows", minimum=0)
        self.image_shape = (channels, None, None)
        self.widths, self.latent_channels, self.blocks = ws, lcs, blocks
        self.full_resolution = bool(full_resolution)
        self._first = 0 if self.full_resolution else 1  # level i is at 1 / 2 ** (i + first) of the resolution
        if condition not in (None, "image"):
            raise ValueError(f"a ladder VAE's condition is None or 'image' (the corrupted image and its mask), "
                             f"got {condition!r}")
        conditional = condition is not None
        self.likelihood = likelihood
        self.condition = ImageMaskMap(channels) if conditional else None
        self.posterior_sees_target = conditional
        self.repair_samples = check_count(repair_samples, "repair_samples", minimum=0)
        self.spec = dict(spec) if spec is not None else None
        top = len(ws) - 1
        self.stem = _stem(3 * channels if conditional else channels, ws[0], blocks, activation)  # x, or x and c
        self.levels = nn.ModuleList(
            _Level(ws[max(i - 1, 0)], w, ws[max(i - 1, 0)], lc, blocks, i == top, activation,
                   stride=1 if i == 0 and self.full_resolution else 2, conditional=conditional,
                   flows=self.flows)
            for i, (w, lc) in enumerate(zip(ws, lcs, strict=True)))
        if conditional:  # the condition at full resolution, joined to the last top-down features
            self.context_stem = _stem(2 * channels, ws[0], blocks, activation)
            self.context_out = nn.Conv2d(ws[0], ws[0], 3, padding=1)
        self.head = nn.Sequential(*(GatedResidualBlock(ws[0], activation) for _ in range(blocks)), activation(),
                                  nn.Conv2d(ws[0], channels * int(getattr(likelihood, "params_per_pixel", 1)), 3,
                                            padding=1))

    @property
    def prior(self) -> LearnedPrior | nn.Module:
        """The top level's learned prior (the lower levels' priors, and every level's in a conditional ladder,
        are made in the top-down pass: then this is the top level, whose ``p_head`` gives it)."""
        top = cast(_Level, self.levels[-1])
        return cast(LearnedPrior, top.prior) if top.learned_prior else top

    @property
    def conditional(self) -> bool:
        """Whether the ladder is conditioned on the corrupted image and its mask (``condition="image"``)."""
        return self.condition is not None

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
            if self.conditional:
                radius += s  # context_in
        return radius + (1 if self.conditional else 0)  # context_out

    def bottom_up(self, x: Tensor, condition: Tensor | None = None) -> _BottomUp:
        """Features of every level, finest first, from images ``(B, C, H, W)`` (in a conditional ladder, the
        clean images, seen with their condition ``(B, 2C, H, W)``, whose own features join them)."""
        self.check_input(x, any_float=True)
        context = self._context(x, condition)
        padded, size = pad_to_multiple(x, self.multiple)
        if condition is not None:
            padded = torch.cat([padded, pad_to_multiple(condition.to(x.dtype), self.multiple)[0]], dim=1)
        h = self.stem(padded)
        features = []
        for level in self.levels:
            h = cast(_Level, level).down(h)
            features.append(h)
        return _BottomUp(features, size, context)

    def repair_features(self, x: Tensor, condition: Tensor | None = None) -> _BottomUp:
        """:meth:`bottom_up` of the images to repair, or in a conditional ladder the condition's features alone:
        its repairs are drawn from the prior given the condition (``x`` gives only the batch and size)."""
        if not self.conditional:
            return self.bottom_up(x, condition)
        self.check_input(x, any_float=True)
        return _BottomUp(None, (x.shape[-2], x.shape[-1]), self._context(x, condition))

    def _context(self, x: Tensor, condition: Tensor | None) -> list[Tensor] | None:
        """A conditional ladder's condition features, full resolution first, then every level's; else ``None``."""
        if self.condition is None:
            if condition is not None:
                raise ValueError("this ladder VAE is not conditional, so condition must be None")
            return None
        if condition is None:
            raise ValueError("this conditional ladder VAE needs condition=model.condition.prepare(corrupted, mask) "
                             "(the corrupted images and their masks, (B, 2C, H, W)); the Trainer builds it")
        condition = self.condition(condition)
        if len(condition) != len(x) or condition.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"condition must have one map per image, of the images' size: images "
                             f"{shape_str(x.shape)}, condition {shape_str(condition.shape)}")
        h = self.context_stem(pad_to_multiple(condition.to(x.dtype), self.multiple)[0])
        context = [h]
        for level in self.levels:
            h = cast(_Level, level).context_down(h)
            context.append(h)
        return context

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
            batch, size = features.batch, features.size
        elif self.conditional:
            raise ValueError("a conditional ladder VAE draws from its prior given the condition: pass "
                             "features=model.repair_features(x, condition)")
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
            d = None if features is None or features.features is None else \
                features.features[i].repeat(s, 1, 1, 1)  # sample-major (S*B, ...)
            scale = i + self._first
            shape = (s * batch, self.latent_channels[i], sides[0] >> scale, sides[1] >> scale)
            if features is not None and features.context is not None:
                c = level.context_in(features.context[i + 1].repeat(s, 1, 1, 1))
                h = c if h is None else h + c
            q: DiagonalGaussian | ChannelFlowDistribution | None
            if level.learned_prior:
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
            if q is not None and level.flow is not None:
                q = ChannelFlowDistribution(q, level.flow.layers())
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
                eps = self.standard_noise(shape, generator, features, index)
                z = source.draw(eps) if isinstance(source, ChannelFlowDistribution) else \
                    source.loc + source.scale * eps
            z_in = level.z_in(z)
            h = level.up(z_in if h is None else h + z_in)
            seen = z.view(*lead, *shape[1:])
            levels.append(LatentLevel(seen, _view(q, lead, seen), _view(p, lead), event_dims=3))
        assert h is not None
        if features is not None and features.context is not None:
            h = h + self.context_out(features.context[0].repeat(s, 1, 1, 1))
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
        """``n`` images ``(n, C, H, W)`` of ``size`` ``(H, W)`` drawn from the prior, top-down (likelihood means).

        A conditional ladder draws from the prior given ``condition`` ``(n, 2C, H, W)`` (one incomplete image
        repeated ``n`` times gives ``n`` completions), whose size is the images'."""
        n = check_count(n, "n")
        features: _BottomUp | None = None
        if self.conditional:
            if condition is None or not isinstance(condition, Tensor) or condition.dim() != 4:
                raise ValueError("a conditional ladder VAE samples given condition=model.condition.prepare("
                                 "corrupted, mask), one (2C, H, W) map per image")
            if len(condition) != n:
                raise ValueError(f"condition must have n={n} rows, got {shape_str(condition.shape)}")
            ref = cast(Tensor, self.stem[0].weight)
            x = torch.zeros(n, self.image_shape[0], *condition.shape[-2:], device=ref.device, dtype=ref.dtype)
        else:
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
            if self.conditional:
                features = self.repair_features(x, cast(Tensor, condition).to(x.device))
            return self.top_down(features, batch=n, size=size, generator=generator).likelihood.mean  # type: ignore[no-any-return]
        finally:
            self.train(was_training)


def _gaussian(params: Tensor) -> DiagonalGaussian:
    loc, raw = params.chunk(2, dim=1)
    return DiagonalGaussian(loc, F.softplus(raw) + 1e-3, event_dims=3)


def _view(d: DiagonalGaussian | ChannelFlowDistribution | None, lead: tuple[int, ...],
          z: Tensor | None = None) -> Any:
    """A distribution over ``(S*B, ...)`` codes seen as ``(*lead, ...)`` (a flow keeps ``log q`` of its draws,
    ``z`` seen that way)."""
    if d is None:
        return None
    if isinstance(d, ChannelFlowDistribution):
        return d.reshape(lead, z)
    return DiagonalGaussian(d.loc.reshape(*lead, *d.loc.shape[1:]), d.scale.reshape(*lead, *d.scale.shape[1:]),
                            event_dims=3)
