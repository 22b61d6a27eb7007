r"""Validation and evaluation on one fixed corruption of a split.

The corruption is drawn once from a seeded generator (:func:`fix_corruption`),
so every epoch sees the same noise. :class:`Validator` records the
objective's loss and terms, PSNR/SSIM of ``model.reconstruct(x_corrupted)``
against the clean images, the PSNR over the missing region when the
corruption left some pixels untouched (erasures, masks), the same numbers
for the corrupted input itself, and, on request, the IWAE estimate of
:math:`-\log p(x)`. All are means per image (each image's PSNR capped at
100 dB: a corruption that left an image as it was gives it an infinite PSNR),
except the missing-region PSNRs: the PSNR of the squared error pooled over every
missing pixel of the split, since one small hole that is exactly right (a block
erased on a black background) would make a mean per image infinite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from vaerepair.corruptions import Corruption
from vaerepair.data import ImageDataset, NoisyImages
from vaerepair.distributions import validation
from vaerepair.metrics import PSNR_CAP_DB, ssim
from vaerepair.models.latent import LatentModel
from vaerepair.objectives import Objective, likelihood_metrics
from vaerepair.training.distributed import ObjectiveStep
from vaerepair.training.guard import Guard
from vaerepair.training.sources import as_images, check_image_shape, condition_of, labels_of, to_unit_float

__all__ = ["FixedCorruption", "fix_corruption", "Validator"]


class FixedCorruption(NamedTuple):
    """One fixed corruption of a split: clean and corrupted images ``(N, C, H, W)``, the mask, the labels.

    For noisy observations (:class:`~vaerepair.data.NoisyImages`) ``corrupted``
    holds the observations, ``target`` what the objective scores (the
    observations, or the second of each pair) and ``clean`` the clean images
    where they are known, else ``None`` (then no PSNR/SSIM).
    """

    clean: Tensor | None
    corrupted: Tensor
    mask: Tensor
    labels: Tensor | None = None
    target: Tensor | None = None

    @property
    def objective_target(self) -> Tensor:
        """What the objective scores: ``target``, else the clean images."""
        target = self.target if self.target is not None else self.clean
        assert target is not None
        return target

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.corrupted)

    def partial_mask(self) -> bool:
        """Whether the corruption left some pixels untouched (erasures, masks): then the
        missing-region PSNR means something."""
        return bool(self.mask.any()) and not bool(self.mask.all())

    def n_with_missing(self) -> int:
        return int(self.mask.flatten(1).any(dim=1).sum())


def fix_corruption(images: Tensor, corruption: Corruption | None, seed: int, dtype: torch.dtype,
                   batch_size: int, labels: Tensor | None = None) -> FixedCorruption:
    """Clean float images (on their device) and one corruption of them, the same for the same seed."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    clean = to_unit_float(images, dtype)
    if corruption is None:
        return FixedCorruption(clean, clean, torch.zeros_like(clean, dtype=torch.bool), labels)
    parts = [corruption(clean[i : i + batch_size], generator=generator, return_mask=True)
             for i in range(0, len(clean), batch_size)]
    return FixedCorruption(clean, torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), labels)


class Validator:
    """Loss, terms and repair quality of ``model`` under ``objective`` on fixed corruptions.

    Args:
        model: the model (its ``reconstruct`` gives the repairs; images are cast to its dtype).
        objective: the training objective; autograd stays on for its loss when
            it declares ``needs_grad`` (it differentiates inside).
        condition: a conditional model's Condition, else ``None``.
        batch_size: images per evaluation batch.
        device: where the images go.
    """

    def __init__(self, model: nn.Module, objective: Objective, condition: Any, batch_size: int,
                 device: torch.device) -> None:
        self.model, self.objective, self.condition, self.batch_size = model, objective, condition, batch_size
        self.device = device
        floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
        self.dtype = floats[0] if floats else torch.get_default_dtype()  # images are cast to the model's dtype
        self._step = ObjectiveStep(model, objective)

    def fix(self, data: ImageDataset | NoisyImages | Tensor | Sequence[Tensor], seed: int,
            corruption: Corruption | None, name: str) -> FixedCorruption | list[FixedCorruption]:
        """``data`` (a dataset or images ``(N, C, H, W)``) on the device, with one corruption drawn from ``seed``.

        A sequence of images ``(C, H_i, W_i)`` of different sizes (a list, an
        :class:`~vaerepair.data.ImageFolder`) is validated at full size: one
        fixed corruption per size (seeds ``seed``, ``seed + 1``, ...), in order
        of first appearance; the measures are means over all the images.
        Noisy observations are not corrupted again (``corruption`` is ignored);
        a list of :class:`~vaerepair.data.NoisyImages` (one per image size) gives
        one fixed set per element.
        """
        if isinstance(data, (list, tuple)) and data and all(isinstance(d, NoisyImages) for d in data):
            return [cast(FixedCorruption, self.fix(d, seed + k, None, f"{name}[{k}]")) for k, d in enumerate(data)]
        if isinstance(data, NoisyImages):
            check_image_shape(data.image_shape, getattr(self.model, "image_shape", None), name)
            if len(data) == 0:
                raise ValueError(f"{name} is empty")
            d = data.to(self.device)
            y = d.observations.to(self.dtype)
            return FixedCorruption(d.clean.to(self.dtype) if d.clean is not None else None, y,
                                   torch.zeros_like(y, dtype=torch.bool), None,
                                   d.second.to(self.dtype) if d.second is not None else y)
        if not isinstance(data, (ImageDataset, Tensor)):
            return self._fix_sizes(data, seed, corruption, name)
        images = as_images(data, name)
        check_image_shape(tuple(images.shape[1:]), getattr(self.model, "image_shape", None), name)
        if len(images) == 0:
            raise ValueError(f"{name} is empty")
        labels = labels_of(data, self.condition, name)
        return fix_corruption(images.to(self.device), corruption, seed, self.dtype, self.batch_size,
                              labels.to(self.device) if labels is not None else None)

    def _fix_sizes(self, data: Sequence[Tensor], seed: int, corruption: Corruption | None,
                   name: str) -> list[FixedCorruption]:
        groups: dict[tuple[int, ...], list[Tensor]] = {}
        for i, image in enumerate(data):
            if not isinstance(image, Tensor) or image.dim() != 3:
                raise ValueError(f"{name}[{i}] must be an image (C, H, W), got "
                                 f"{tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__}")
            groups.setdefault(tuple(image.shape), []).append(image)
        if not groups:
            raise ValueError(f"{name} is empty")
        return [cast(FixedCorruption, self.fix(torch.stack(group), seed + k, corruption,
                                               f"{name} ({'x'.join(map(str, shape[1:]))} images)"))
                for k, (shape, group) in enumerate(groups.items())]

    def first_batch_check(self, x: Tensor, labels: Tensor | None, corruption: Corruption | None, seed: int,
                          target: Tensor | None = None) -> None:
        """Run the objective once on clean images ``x`` (corrupted from ``seed``) and explain what goes wrong.

        With ``target`` (pairs of noisy observations) ``x`` is the input, as it is, and ``target`` the target."""
        if target is not None:
            fixed = FixedCorruption(None, x, torch.zeros_like(x, dtype=torch.bool), labels, target)
        else:
            fixed = fix_corruption(x, corruption, seed, self.dtype, len(x), labels)
        try:
            result = self._step(fixed.corrupted, fixed.objective_target, self.condition_for(fixed))
        except Exception as err:
            raise RuntimeError(f"the objective failed on a first batch of shape {tuple(x.shape)} "
                               f"({type(err).__name__}: {err})") from err
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError(f"the objective must return an ObjectiveResult(loss, terms), got {type(result).__name__}")
        Guard.first_batch(result[0], result[1], len(x))

    def condition_for(self, fixed: FixedCorruption) -> Tensor | None:
        """The condition of every image of ``fixed`` (``None`` for an unconditional model)."""
        return condition_of(self.condition, fixed.corrupted, fixed.mask, fixed.labels, fixed.clean)

    def _batches(self, fixed: FixedCorruption) -> Any:
        """``(target, input, mask, condition, clean or None)`` per evaluation batch."""
        for i in range(0, len(fixed), self.batch_size):
            part = slice(i, i + self.batch_size)
            labels = fixed.labels[part] if fixed.labels is not None else None
            x_in, mask = fixed.corrupted[part], fixed.mask[part]
            clean = fixed.clean[part] if fixed.clean is not None else None
            yield (fixed.objective_target[part], x_in, mask, condition_of(self.condition, x_in, mask, labels, clean),
                   clean)

    def repair_quality(self, fixed: FixedCorruption | list[FixedCorruption]) -> dict[str, float]:
        """Loss, terms, ``psnr``, ``ssim`` (and ``psnr_missing``) of the repairs, and ``n`` (noisy observations
        without clean images: the loss and terms only)."""
        if isinstance(fixed, list):
            return _combine([(self.repair_quality(f), f) for f in fixed])
        was_training = self.model.training
        self.model.eval()
        partial = fixed.partial_mask()
        sums: dict[str, Tensor | float] = {}
        try:
            with validation(False):
                for target, x_in, mask, condition, x in self._batches(fixed):
                    with torch.set_grad_enabled(self.objective.needs_grad):
                        loss, terms = self._step(x_in, target, condition)
                    batch = {"loss": loss.detach() * len(x_in), **{k: v.detach().sum() for k, v in terms.items()}}
                    if x is not None:
                        with torch.no_grad():
                            batch.update(_quality_sums(self._repair(x_in, condition), x, mask, partial))
                    for k, v in batch.items():
                        sums[k] = sums.get(k, 0.0) + v
        finally:
            self.model.train(was_training)
        out = _quality_means(sums, len(fixed), partial)
        out["n"] = float(len(fixed))
        return out

    def _repair(self, x_in: Tensor, condition: Tensor | None) -> Tensor:
        """The model's repair as users get it: ``repair`` (which decides between the decoded posterior mean and
        the mean of decoded samples, drawn here from a fixed seed), or ``reconstruct`` for a model without one."""
        model = cast(Any, self.model)
        if not callable(getattr(model, "repair", None)):
            return cast(LatentModel, model).reconstruct(x_in, condition)
        return cast(Tensor, model.repair(x_in, condition, generator=torch.Generator(device=x_in.device).manual_seed(0)))

    def input_quality(self, fixed: FixedCorruption | list[FixedCorruption]) -> dict[str, float]:
        """PSNR/SSIM of the corrupted inputs themselves (the "before repair" numbers); none without a corruption
        (the input is the clean image: its PSNR would be infinite) or without clean images."""
        if isinstance(fixed, list):
            return _combine([(self.input_quality(f), f) for f in fixed])
        if fixed.clean is None or fixed.corrupted is fixed.clean:  # nothing clean, or nothing corrupted
            return {}
        partial = fixed.partial_mask()
        sums: dict[str, Tensor | float] = {}
        for i in range(0, len(fixed.clean), self.batch_size):
            x, x_in, mask = (t[i : i + self.batch_size] for t in (fixed.clean, fixed.corrupted, fixed.mask))
            for k, v in _quality_sums(x_in, x, mask, partial).items():
                sums[k] = sums.get(k, 0.0) + v
        return {f"{k}_input" if k != "psnr_missing" else "psnr_missing_input": v
                for k, v in _quality_means(sums, len(fixed.clean), partial).items()}

    def likelihood(self, fixed: FixedCorruption | list[FixedCorruption], k: int) -> dict[str, float]:
        """``neg_elbo`` and ``nll_iwae`` (``k`` samples) on the clean images, for a model with a prior."""
        if isinstance(fixed, list):
            return _combine([(self.likelihood(f, k), f) for f in fixed])
        if getattr(self.model, "prior", None) is None or fixed.clean is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            with validation(False):
                return likelihood_metrics(cast(LatentModel, self.model), fixed.clean, k=k,
                                          condition=self.condition_for(fixed))
        finally:
            self.model.train(was_training)


def _quality_sums(images: Tensor, clean: Tensor, mask: Tensor, partial: bool) -> dict[str, Tensor]:
    """Sums over a batch: per-image PSNR (capped at :data:`~vaerepair.metrics.PSNR_CAP_DB`: an image equal to its
    reference would make the mean infinite), SSIM and MSE; with a partial mask, the squared error and the number
    of pixels inside it."""
    sq = (images.double() - clean.double()).square()  # one pass, as psnr() computes it
    mse = sq.flatten(1).mean(dim=1)
    sums = {"psnr": (10.0 * torch.log10(1.0 / mse)).clamp(max=PSNR_CAP_DB).sum(),  # psnr(max_db=PSNR_CAP_DB)
            "ssim": ssim(images, clean, reduction="none").sum(),
            "mse": mse.sum()}
    if partial:
        sums["sq_missing"] = (sq * mask).sum()
        sums["n_missing"] = mask.sum()
    return sums


def _quality_means(sums: dict[str, Tensor | float], n: int, partial: bool) -> dict[str, float]:
    """Means per image of the sums (``_quality_sums``, and any others); ``psnr_missing`` is the PSNR of the squared
    error pooled over every missing pixel (capped like the others)."""
    out = {k: float(v) / n for k, v in sums.items() if k not in ("sq_missing", "n_missing")}
    if partial:
        mse = float(sums["sq_missing"]) / max(float(sums["n_missing"]), 1.0)
        out["psnr_missing"] = min(10.0 * math.log10(1.0 / mse), PSNR_CAP_DB) if mse > 0 else PSNR_CAP_DB
    return out


def _combine(parts: list[tuple[dict[str, float], FixedCorruption]]) -> dict[str, float]:
    """Means per image over groups of images: each group's means weighted by its number of images (the
    missing-region PSNRs by its number of images with a missing region); ``n`` summed."""
    out: dict[str, float] = {}
    for key in parts[0][0]:
        if key == "n":
            out[key] = sum(r[key] for r, _ in parts)
            continue
        weights = [float(f.n_with_missing() if "missing" in key else len(f)) for _, f in parts]
        values = [r.get(key, 0.0) for r, _ in parts]
        out[key] = sum(w * v for w, v in zip(weights, values, strict=True)) / max(sum(weights), 1.0)
    return out
