r"""The latent path: the primitive every model gives, whether it has one latent or a ladder of them.

A model gives a deterministic **bottom-up** pass over the input (reused across
samples) and a **top-down** pass that draws the latents level by level, top
(coarsest) first, and ends in the likelihood :math:`p(x \mid z_{1..L})`:

.. math::
    z_L \sim q(z_L \mid x),\quad z_l \sim q(z_l \mid z_{>l}, x),\qquad
    p(z) = p(z_L) \textstyle\prod_{l<L} p(z_l \mid z_{>l}).

:class:`LatentPath` holds, per level, the draws and the two distributions they
came from (:class:`LatentLevel`: ``log_q``, ``log_p`` and the closed-form
``kl`` where one is registered, :func:`~vaerepair.distributions.kl.kl_divergence`)
and the likelihood. A single-latent model (:class:`~vaerepair.models.LatentVariableModel`)
is a path of length one; a ladder VAE (:class:`~vaerepair.models.LadderVAE`) is
a longer one. Objectives (``ELBO``, ``IWAE``, ``Reconstruction``...) work on
paths, and :class:`PathModel` writes repair (posterior mean, per-pixel
standard deviation, samples, tiling) once for every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, cast, overload

import torch
from torch import Tensor, nn

from vaerepair._checks import check_count, check_image_scale, check_images, shape_str
from vaerepair.distributions import validation_enabled
from vaerepair.distributions.kl import kl_divergence
from vaerepair.memory import keep_freed_memory
from vaerepair.models.conditions import Condition

__all__ = ["LatentLevel", "LatentPath", "PathModel", "latent_path", "posterior_images", "check_latents",
           "TILE_PIXELS_IN_FLIGHT"]

TILE_PIXELS_IN_FLIGHT = 2**19  # tiled repair: at most this many pixels of tiles go through the model at once


class LatentLevel:
    r"""One level of a latent path: draws ``z`` of ``q`` (or given), scored under ``q`` and the prior ``p``.

    Shapes: ``z`` is ``(B, *event)`` or ``(S, B, *event)`` (``event`` the level's
    ``event_dims`` trailing dimensions: ``(D,)`` for a vector, ``(L, H, W)`` for
    a spatial code); ``log_q``, ``log_p`` and ``kl`` are ``(B,)`` or ``(S, B)``.
    In a ladder, ``q`` and ``p`` are conditional on the levels above, so their
    parameters carry the sample dimension too.

    Args:
        z: the latents of this level.
        q: the posterior (``None`` when the level was drawn from the prior).
        p: the prior given the levels above (``None`` for an autoencoder).
        event_dims: the latent's event dimensions.
    """

    def __init__(self, z: Tensor, q: Any, p: Any, event_dims: int = 1) -> None:
        self.z, self.q, self.p, self.event_dims = z, q, p, int(event_dims)

    @property
    def batch_shape(self) -> torch.Size:
        """``(B,)`` or ``(S, B)``."""
        return self.z.shape[: self.z.dim() - self.event_dims]

    @property
    def log_q(self) -> Tensor:
        r""":math:`\log q(z_l \mid z_{>l}, x)` at the draws, ``(B,)`` or ``(S, B)``."""
        if self.q is None:
            raise ValueError("this level was drawn from the prior: it has no posterior to score")
        result: Tensor = self.q.log_prob(self.z)
        return result

    @property
    def log_p(self) -> Tensor:
        r""":math:`\log p(z_l \mid z_{>l})` at the draws, ``(B,)`` or ``(S, B)``."""
        if self.p is None:
            raise ValueError("this model has no prior (a plain autoencoder): build a VAE")
        result: Tensor = self.p.log_prob(self.z)
        return result

    @property
    def kl(self) -> Tensor | None:
        r"""The closed-form :math:`KL(q \,\|\, p)`, ``(B,)`` or ``(S, B)`` like the draws, or ``None`` without one."""
        if self.q is None or self.p is None:
            return None
        closed = kl_divergence(self.q, self.p)
        if closed is None or closed.shape == self.batch_shape:
            return closed
        return closed.expand(self.batch_shape)

    def kl_estimate(self, closed_form: bool | None = None) -> Tensor:
        r"""The KL per draw: closed form (``True``), Monte Carlo :math:`\log q - \log p` (``False``), or the
        closed form where one exists (``None``). ``(B,)`` or ``(S, B)``."""
        if closed_form is False:
            return self.log_q - self.log_p
        kl = self.kl
        if kl is None:
            if closed_form:
                raise ValueError(f"kl='analytic' needs a closed-form KL, and there is none between "
                                 f"{type(self.q).__name__} and {type(self.p).__name__} (a Gaussian posterior and "
                                 "a Gaussian prior have one); use the Monte-Carlo estimate, kl='mc'")
            return self.log_q - self.log_p
        return kl

    def __repr__(self) -> str:
        return (f"LatentLevel(z={shape_str(self.z.shape)}, q={type(self.q).__name__}, "
                f"p={type(self.p).__name__})")


class LatentPath(NamedTuple):
    """The result of a top-down pass: the levels, top (coarsest) first, and the likelihood p(x | z).

    Attributes:
        levels: one :class:`LatentLevel` per latent level.
        likelihood: the image distribution; its ``mean`` is ``(B, C, H, W)``, or
            ``(S, B, C, H, W)`` when the path was drawn with ``n_samples=S``.
    """

    levels: tuple[LatentLevel, ...]
    likelihood: Any

    @property
    def latents(self) -> list[Tensor]:
        """The draws of every level, top first (pass them back as ``latents=`` to score the same z)."""
        return [level.z for level in self.levels]

    def log_prior_ratio(self) -> Tensor:
        r""":math:`\sum_l [\log p(z_l \mid z_{>l}) - \log q(z_l \mid z_{>l}, x)]`, ``(B,)`` or ``(S, B)``."""
        return cast(Tensor, sum(level.log_p - level.log_q for level in self.levels))


def latent_path(model: Any, x: Tensor, condition: Tensor | None = None, n_samples: int | None = None, *,
                latents: Sequence[Tensor | None] | None = None, mean: bool = False,
                generator: torch.Generator | None = None) -> LatentPath:
    """The latent path of any model: ``model.path(...)`` when it has one, else a path of length one built from
    its ``encode``/``decode`` (and ``prior``, when it has one), so users' own single-latent models keep
    working with every objective."""
    path = getattr(model, "path", None)
    if callable(path):
        result: LatentPath = path(x, condition, n_samples, latents=latents, mean=mean, generator=generator)
        return result
    q = model.encode(x, condition)
    z = _single_draw(q, n_samples, latents, mean, generator)
    level = LatentLevel(z, q, getattr(model, "prior", None), int(getattr(model, "latent_event_dims", 1)))
    return LatentPath((level,), model.decode(z, condition))


def posterior_images(model: Any, x_input: Tensor, x_target: Tensor) -> Tensor:
    r"""The images a training objective gives the model's posterior: ``x_input`` (the corrupted image), or
    ``x_target`` for a model whose ``posterior_sees_target`` is set.

    A conditional model of that kind (the conditional :class:`~vaerepair.models.LadderVAE`)
    bounds :math:`\log p(x \mid c)` with :math:`q(z \mid x, c)` and a prior
    :math:`p(z \mid c)` that sees only the condition ``c`` (the corrupted image and
    its mask): the posterior must see the clean target, or :math:`z` cannot carry
    what the condition lacks, its KL goes to zero and every completion is the same
    (posterior collapse). Such a model repairs from its prior.
    """
    return x_target if getattr(model, "posterior_sees_target", False) else x_input


def check_latents(latents: Any, n_levels: int) -> None:
    """Raise a clear error unless ``latents`` is ``None`` or a sequence of ``n_levels`` tensors or ``None``
    (top first), every given tensor finite."""
    if latents is None:
        return
    if isinstance(latents, Tensor) or not isinstance(latents, Sequence):
        raise TypeError(f"latents must be a list of {n_levels} tensors or None (top first), got "
                        f"{type(latents).__name__}")
    if len(latents) != n_levels:
        raise ValueError(f"this model has {n_levels} latent level{'s' if n_levels > 1 else ''}; got latents for "
                         f"{len(latents)} (top first, None for a level to draw)")
    for i, z in enumerate(latents):
        if z is not None and not isinstance(z, Tensor):
            raise TypeError(f"latents[{i}] must be a tensor or None, got {type(z).__name__}")
        if z is not None and not bool(torch.isfinite(z).all()):
            raise ValueError(f"latents[{i}] holds NaN or Inf values")


def _single_draw(q: Any, n_samples: int | None, latents: Sequence[Tensor | None] | None, mean: bool,
                 generator: torch.Generator | None) -> Tensor:
    """The latent of a one-level path: given, the posterior mean (repeated ``n_samples`` times), or drawn."""
    if latents is not None:
        check_latents(latents, 1)
        if latents[0] is not None:
            return latents[0]
    if mean:
        return q.mean if n_samples is None else q.mean.expand(n_samples, *q.mean.shape)
    z: Tensor = q.rsample(n_samples, generator=generator)
    return z


class PathModel(nn.Module):
    """What every vaerepair model shares once it gives a latent path: checks, repair, samples, tiling.

    A subclass implements :meth:`bottom_up` and :meth:`top_down`, sets
    ``image_shape`` ``(C, H, W)`` (``H``, ``W`` ``None`` for any size), and for
    a fully convolutional model the properties :attr:`receptive_radius` and
    :attr:`multiple`.
    """

    image_shape: tuple[int, int | None, int | None]
    condition: Condition | None  # each subclass sets it in __init__ (None: unconditional); no class default, which
    # would hide a registered Condition module from nn.Module's attribute lookup
    repair_samples: int = 0  # posterior samples per repair when ``repair(n_samples=None)``: 0 decodes the mean
    posterior_sees_target: bool = False  # q(z | x_target, c) in training; repairs draw z from p(z | c)

    def bottom_up(self, x: Tensor, condition: Tensor | None = None) -> Any:
        """The deterministic pass over images ``(B, C, H, W)`` that every sample of the top-down pass reuses."""
        raise NotImplementedError

    def top_down(self, features: Any, n_samples: int | None = None, *,
                 latents: Sequence[Tensor | None] | None = None, mean: bool = False,
                 generator: torch.Generator | None = None) -> LatentPath:
        """Draw the latents level by level from the posterior given ``features`` (``latents[l]`` given: use
        it; ``mean``: each level's posterior mean) and return the path with its likelihood."""
        raise NotImplementedError

    def path(self, x: Tensor, condition: Tensor | None = None, n_samples: int | None = None, *,
             latents: Sequence[Tensor | None] | None = None, mean: bool = False,
             generator: torch.Generator | None = None) -> LatentPath:
        """:meth:`top_down` of :meth:`bottom_up`: the latent path of images ``(B, C, H, W)``.

        ``n_samples=S`` draws ``S`` paths per image (shapes ``(S, B, ...)``);
        ``latents`` (top first, ``None`` for a level to draw) scores given latents
        or holds the top levels while the finer ones are drawn again.
        """
        return self.top_down(self.bottom_up(x, condition), n_samples, latents=latents, mean=mean,
                             generator=generator)

    def repair_features(self, x: Tensor, condition: Tensor | None = None) -> Any:
        """What a repair's top-down passes start from: :meth:`bottom_up` of the images to repair ``(B, C, H, W)``
        (the posterior given them), or, for a model whose ``posterior_sees_target`` is set, the condition's
        features alone (its repairs draw from the prior given the condition)."""
        return self.bottom_up(x, condition)

    def repair_path(self, x: Tensor, condition: Tensor | None = None, n_samples: int | None = None, *,
                    mean: bool = False, generator: torch.Generator | None = None) -> LatentPath:
        """The latent path a repair of ``x`` decodes: :meth:`top_down` of :meth:`repair_features`."""
        return self.top_down(self.repair_features(x, condition), n_samples, mean=mean, generator=generator)

    @property
    def n_levels(self) -> int:
        """How many latent levels the path has."""
        return 1

    @property
    def receptive_radius(self) -> int | None:
        """For a fully convolutional model: how far (in pixels) an output pixel can see into the input."""
        return None

    @property
    def multiple(self) -> int:
        """The model's downsampling factor: tiles start on multiples of it so they see the image's grid."""
        return 1

    @property
    def fully_convolutional(self) -> bool:
        """Whether the model takes images of any ``H x W`` (its ``image_shape`` is ``(C, None, None)``)."""
        return self.image_shape[1] is None

    def check_input(self, x: Tensor, name: str = "x", any_float: bool = False) -> Tensor:
        """Raise a clear error unless ``x`` is ``(B, C, H, W)`` matching the model (and its dtype, unless
        ``any_float``)."""
        c, h, w = self.image_shape
        check_images(x, name, channels=c, size=None if h is None or w is None else (h, w))
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), x.dtype)
        if x.dtype != dtype and not any_float:
            raise TypeError(f"{name} is {x.dtype} but the model's weights are {dtype}: cast the images with "
                            f"{name}.to({dtype}) (model.repair does it for you) or the model with model.to({x.dtype})")
        return x

    def reconstruct(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """Repair images: every level at its posterior mean (at its prior mean given the condition, for a model
        whose ``posterior_sees_target`` is set), the likelihood mean ``(B, C, H, W)``."""
        self.check_input(x)
        if validation_enabled():  # off in the Trainer's validation, whose data were checked once
            check_image_scale(x, "x")
        return cast(Tensor, self.repair_path(x, condition, mean=True).likelihood.mean)

    @torch.no_grad()
    @keep_freed_memory()
    def sample_repairs(self, x: Tensor, n: int, condition: Tensor | None = None,
                       generator: torch.Generator | None = None, predictive: bool = False) -> Tensor:
        r"""``n`` plausible repairs of each image, ``(n, B, C, H, W)``: the decoded means of ``n`` draws of
        the posterior path (diverse for a VAE; all equal for a point-mass posterior), in eval mode; for a model
        whose ``posterior_sees_target`` is set, of the prior path given the condition.

        ``predictive=True`` draws each image from the likelihood itself,
        :math:`x_s \sim p(x \mid z_s)` (a Gaussian likelihood: the decoded mean plus
        its noise), instead of taking its mean: draws of the target's distribution,
        whose spread includes what the model leaves to the likelihood. Use it for a
        model trained on clean targets (the conditional ladder), whose calibrated
        intervals need that spread; for a noise-model VAE the draws would be noisy
        observations, not clean images.
        """
        n = check_count(n, "n")
        self.check_input(x)
        if not isinstance(predictive, bool):
            raise TypeError(f"predictive must be True or False, got {predictive!r}")
        was_training = self.training
        self.eval()
        try:
            features = self.repair_features(x, condition)  # once; the draws go through top-down in chunks
            chunk = _samples_in_flight(x, n)
            draws = []
            for start in range(0, n, chunk):
                image = self.top_down(features, min(chunk, n - start), generator=generator).likelihood
                if predictive and not callable(getattr(image, "sample", None)):
                    raise ValueError(f"predictive=True draws from the likelihood, and {type(image).__name__} has "
                                     "no sample(); a Gaussian likelihood has one")
                draws.append(image.sample(generator) if predictive else image.mean)
            return torch.cat(draws)
        finally:
            self.train(was_training)

    @overload
    def repair(self, x: Tensor, condition: Tensor | None = None, batch_size: int = 512,
               tile: int | tuple[int, int] | None = None, overlap: int | None = None, *,
               n_samples: int | None = None, return_std: Literal[False] = False,
               generator: torch.Generator | None = None, ensemble: int = 1) -> Tensor: ...

    @overload
    def repair(self, x: Tensor, condition: Tensor | None = None, batch_size: int = 512,
               tile: int | tuple[int, int] | None = None, overlap: int | None = None, *,
               n_samples: int | None = None, return_std: Literal[True],
               generator: torch.Generator | None = None, ensemble: int = 1) -> tuple[Tensor, Tensor]: ...

    @overload
    def repair(self, x: list[Tensor], condition: Tensor | None = None, batch_size: int = 512,
               tile: int | tuple[int, int] | None = None, overlap: int | None = None, *,
               n_samples: int | None = None, return_std: bool = False,
               generator: torch.Generator | None = None, ensemble: int = 1) -> list[Any]: ...

    @torch.no_grad()
    @keep_freed_memory()  # large activations freed and allocated again reuse their pages
    def repair(self, x: Tensor | list[Tensor], condition: Tensor | None = None, batch_size: int = 512,
               tile: int | tuple[int, int] | None = None, overlap: int | None = None, *,
               n_samples: int | None = None, return_std: bool = False,
               generator: torch.Generator | None = None, ensemble: int = 1) -> Any:
        r"""Repaired images ``(B, C, H, W)``: :meth:`reconstruct` in eval mode, in batches, without gradients.

        ``x`` may live on any device and have any float dtype: batches go to the
        model's device and dtype (float16/bfloat16 images to a float32 model),
        and the result comes back on ``x``'s device and dtype. The model's
        train/eval mode is restored.
        A conditional model needs ``condition`` (one row per image).

        With ``n_samples=S`` the repair is the Monte-Carlo posterior mean of the
        signal, :math:`\hat s = \tfrac1S \sum_s E[x \mid z_s]`, :math:`z_s \sim q(z \mid x)`
        (for a ladder, :math:`z_s` is a whole top-down path; the bottom-up pass is
        computed once): the minimum-mean-square-error estimate of a VAE whose
        likelihood is the noise model; with ``return_std=True`` it also returns
        the per-pixel standard deviation of the decoded samples ``(B, C, H, W)``
        (``S - 1`` in the denominator), an uncertainty map. ``n_samples=None``
        takes the model's ``repair_samples`` (0 for most models: decode the
        posterior mean). ``generator`` makes the draws reproducible. A model whose
        ``posterior_sees_target`` is set (the conditional ladder) draws
        :math:`z_s \sim p(z \mid c)` from its prior given the condition instead:
        ``x`` then gives only the batch and the size.

        With ``tile`` (for a model of fixed size: its ``(H, W)``; for a fully
        convolutional one any side, e.g. 512, which bounds the memory) an image is
        repaired tile by tile, the ``overlap`` pixels shared by neighbouring tiles
        blended (:func:`vaerepair.tiling.repair_tiled`). A fully convolutional
        model's default overlap is ``2 r + 16`` for its receptive radius ``r``,
        with the ``r`` pixels next to each inner tile edge given weight 0 and
        tiles aligned to its downsampling grid, so the tiled repair equals the
        untiled one up to float rounding (tiles smaller than ``4 r + 32`` get half
        their side as overlap: blended, no longer exact); a fixed-size model's
        default is 8. With samples, the tiles draw their own noise, so tiled and
        untiled repairs agree in distribution, not draw for draw.
        A list of images ``(C, H_i, W_i)`` of different sizes gives the list of
        their repairs (each repaired alone, tiled when ``tile`` is given).

        ``ensemble=8`` (self-ensemble) repairs the 8 flips and rotations by 90
        degrees of each image and averages the 8 repairs mapped back: 8 times the
        time, for a repair that no longer depends on the image's orientation
        (square images for a model of fixed size; no condition but one per image).

        A condition with one row per image that does not depend on pixel positions
        (``model.condition.per_image``: a label, a :class:`~vaerepair.models.NoiseLevel`)
        also goes with tiles (each tile gets its image's row), the self-ensemble
        and lists of images.
        """
        check_count(batch_size, "batch_size")
        if ensemble not in (1, 8) or isinstance(ensemble, bool):
            raise ValueError(f"ensemble must be 1 (off) or 8 (the 8 flips and rotations by 90 degrees), got "
                             f"{ensemble!r}")
        per_image = self._condition_per_image()
        if ensemble == 8 and (return_std or (condition is not None and not per_image)):
            raise ValueError("ensemble=8 averages plain repairs: it takes no return_std, and no condition but one per "
                             "image (a label, a noise level: an image condition would need the same flips); repair "
                             "with ensemble=1 for those")
        samples = self._repair_samples(n_samples, return_std)
        options: dict[str, Any] = {"n_samples": samples, "return_std": return_std, "generator": generator}
        if isinstance(x, list):
            if condition is not None and not per_image:
                raise ValueError("a list of images takes no condition but one per image (a label, a noise level); "
                                 "repair models conditioned on images batch by batch")
            if condition is not None:
                self._check_condition_rows(condition, len(x))
            for i, im in enumerate(x):
                if not isinstance(im, Tensor) or im.dim() != 3:
                    what = f"shape {shape_str(im.shape)}" if isinstance(im, Tensor) else type(im).__name__
                    raise TypeError(f"a list of images must hold tensors (C, H, W), got {what} at index {i}; "
                                    "give a batch as one tensor (B, C, H, W)")
            out = [self.repair(im.unsqueeze(0), condition[i : i + 1] if condition is not None else None,
                               batch_size=batch_size, tile=tile, overlap=overlap, ensemble=ensemble, **options)
                   for i, im in enumerate(x)]
            return [(m[0], s[0]) for m, s in out] if return_std else [m[0] for m in out]
        if isinstance(x, Tensor):  # before tiling, so the message names the image, not a tile
            check_image_scale(x, "x", fix="a NaN or Inf pixel would spread through the network: fix or drop that image")
        if condition is not None and isinstance(x, Tensor):
            self._check_condition_rows(condition, len(x))
        if ensemble == 8:
            return self._self_ensemble(x, condition, batch_size, tile, overlap, samples, generator)
        if tile is not None:
            return self._repair_tiles(x, condition, batch_size, tile, overlap, options)
        self.check_input(x, any_float=True)
        if len(x) == 0:
            return (x.clone(), x.clone()) if return_std else x.clone()
        device = next((p.device for p in self.parameters()), x.device)
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), x.dtype)  # half images: cast
        was_training = self.training
        self.eval()
        try:
            parts = [
                self._repair_batch(
                    x[i : i + batch_size].to(device, dtype),
                    condition[i : i + batch_size].to(device) if condition is not None else None,
                    samples, generator,
                )
                for i in range(0, len(x), batch_size)
            ]
        finally:
            self.train(was_training)
        mean = torch.cat([m for m, _ in parts]).to(x.device, x.dtype)
        if not return_std:
            return mean
        return mean, torch.cat([cast(Tensor, s) for _, s in parts]).to(x.device, x.dtype)

    def _condition_per_image(self) -> bool:
        """Whether the model's condition has one row per image that tiles and flips leave as it is."""
        return bool(getattr(getattr(self, "condition", None), "per_image", False))

    @staticmethod
    def _check_condition_rows(condition: Any, n: int) -> None:
        if not isinstance(condition, Tensor) or len(condition) != n:
            got = shape_str(condition.shape) if isinstance(condition, Tensor) else type(condition).__name__
            raise ValueError(f"condition must be a tensor with one row per image ({n}), got {got}")

    def _repair_tiles(self, x: Tensor, condition: Tensor | None, batch_size: int, tile: int | tuple[int, int],
                      overlap: int | None, options: dict[str, Any]) -> Any:
        if condition is not None:
            if not self._condition_per_image():
                raise ValueError("tiled repair takes no condition but one per image (a label, a noise level): an "
                                 "image condition belongs to a whole image")
            # every tile of an image gets the image's row: the images are tiled one by one
            parts = [self._repair_tiles(x[i : i + 1], None, batch_size, tile, overlap,
                                        {**options, "condition_row": condition[i : i + 1]}) for i in range(len(x))]
            if options["return_std"]:
                return torch.cat([m for m, _ in parts]), torch.cat([sd for _, sd in parts])
            return torch.cat(parts)
        from vaerepair.tiling import repair_tiled

        return_std = options["return_std"]
        radius, margin = self.receptive_radius, None
        if overlap is None and radius is not None:  # exact for tiles over 2 r + 16 + align; blended below
            smallest = min((tile, tile) if isinstance(tile, int) else tile)
            overlap = min(2 * radius + 16, smallest // 2)
            margin = min(radius, overlap // 2)
        elif overlap is None:
            overlap = 8
        th, tw = (tile, tile) if isinstance(tile, int) else tile
        in_flight = max(1, min(batch_size, TILE_PIXELS_IN_FLIGHT // (th * tw)))  # memory bound by the tiles

        options = dict(options)
        row = options.pop("condition_row", None)

        def fn(t: Tensor) -> Tensor:  # mean and std tiled together, as 2 C channels
            rows = row.expand(len(t), *row.shape[1:]) if row is not None else None
            out = self.repair(t, rows, batch_size=in_flight, **options)
            return torch.cat(out, dim=1) if return_std else out

        c = x.shape[1]
        both = repair_tiled(fn, x, tile, overlap, margin=margin, batch_size=in_flight, align=self.multiple,
                            out_channels=2 * c if return_std else c)
        return (both[:, :c], both[:, c:]) if return_std else both

    def _self_ensemble(self, x: Tensor, condition: Tensor | None, batch_size: int, tile: Any, overlap: int | None,
                       samples: int, generator: torch.Generator | None) -> Tensor:
        """The mean of the repairs of the 8 flips and rotations of ``x`` ``(B, C, H, W)``, each mapped back."""
        self.check_input(x, any_float=True)
        if not self.fully_convolutional and x.shape[-2] != x.shape[-1]:
            raise ValueError(f"ensemble=8 rotates the images by 90 degrees, which a model of fixed size "
                             f"{self.image_shape[1]}x{self.image_shape[2]} takes only for square images, got "
                             f"{shape_str(x.shape)}")
        total: Tensor | None = None
        for turns in range(4):
            for flip in (False, True):
                seen = torch.rot90(x, turns, dims=(-2, -1))
                seen = seen.flip(-1) if flip else seen
                out = cast(Tensor, self.repair(seen, condition, batch_size, tile, overlap, n_samples=samples,
                                               generator=generator))
                out = torch.rot90(out.flip(-1) if flip else out, -turns, dims=(-2, -1))
                total = out if total is None else total + out
        assert total is not None
        return total / 8

    def _repair_samples(self, n_samples: int | None, return_std: bool) -> int:
        samples = self.repair_samples if n_samples is None else n_samples
        check_count(samples, "n_samples", minimum=0, unit=" (0: decode the posterior mean)")
        if return_std and samples < 2:
            raise ValueError(f"return_std=True needs n_samples >= 2 posterior samples, got {samples!r}; "
                             "pass n_samples=100, for example")
        return int(samples)

    def _repair_batch(self, x: Tensor, condition: Tensor | None, n_samples: int,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """The repair of one batch, and (with samples) the standard deviation of the decoded samples."""
        if n_samples == 0:
            return self.reconstruct(x, condition), None
        self.check_input(x)
        features = self.repair_features(x, condition)
        chunk = _samples_in_flight(x, n_samples)
        count, mean, m2 = 0, torch.zeros_like(x), torch.zeros_like(x)
        for start in range(0, n_samples, chunk):  # Chan et al.'s merge of per-chunk means and squared deviations
            s = min(chunk, n_samples - start)
            decoded = self.top_down(features, s, generator=generator).likelihood.mean  # (s, B, C, H, W)
            chunk_mean = decoded.mean(dim=0)
            delta = chunk_mean - mean
            total = count + s
            mean = mean + delta * (s / total)
            m2 = m2 + (decoded - chunk_mean).square().sum(dim=0) + delta.square() * (count * s / total)
            count = total
        return mean, (m2 / max(count - 1, 1)).sqrt()


def _samples_in_flight(x: Tensor, n_samples: int) -> int:
    """How many top-down draws of the batch ``x`` go through the model at once: at most
    :data:`TILE_PIXELS_IN_FLIGHT` pixels (so memory does not grow with the number of samples)."""
    return max(1, min(n_samples, TILE_PIXELS_IN_FLIGHT // max(1, x[0].numel() * len(x))))
