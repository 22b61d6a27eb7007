r"""Objectives that train a denoiser without clean images: Noise2Noise, blind-spot (Noise2Self) and SURE.

Each trains the repair :math:`f(y)` = :func:`denoise` ``(model, y)`` (the
likelihood mean at the posterior mean: the autoencoder's output) from noisy
observations only. Squared errors are means over an image's pixels (an MSE per
image), so the three are on the scale of the supervised MSE
:math:`\tfrac1n \|f(y) - x\|^2` they stand in for (``n = C H W``):

* :class:`Noise2Noise`: :math:`\tfrac1n\|f(y_1) - y_2\|^2` for two independent
  observations of a scene; its expectation is the supervised MSE plus
  :math:`\tfrac1n E\|y_2 - x\|^2` (:math:`\sigma^2` for Gaussian noise) when the
  noise of :math:`y_2` has mean 0 and is independent of :math:`y_1`.
* :class:`BlindSpot`: hides a random set :math:`J` of pixels of ``y`` and scores
  the repair on those pixels only; for noise independent across pixels its
  expectation is the masked network's supervised MSE on :math:`J` plus the
  noise variance.
* :class:`SURE`: Stein's unbiased risk estimate for Gaussian noise of known
  :math:`\sigma`, :math:`\tfrac1n\|f(y) - y\|^2 - \sigma^2 + \tfrac{2\sigma^2}n \nabla\!\cdot f(y)`,
  whose expectation *is* the supervised MSE (no constant).

Randomness (masks, probes) is drawn from torch's generator on the images'
device, so ``torch.manual_seed`` reproduces it and the Trainer's checkpoints
(which store that state) resume it exactly.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from vaerepair._checks import check_count, check_positive
from vaerepair.models.latent import LatentModel
from vaerepair.models.path import latent_path
from vaerepair.objectives.base import ObjectiveBase, ObjectiveResult, check_batch, refuse_prior_repairs

__all__ = ["denoise", "Noise2Noise", "BlindSpot", "SURE", "BLIND_SPOT_REPLACEMENTS"]

BLIND_SPOT_REPLACEMENTS = ("neighbour", "local-mean", "median")


def denoise(model: LatentModel, y: Tensor, condition: Tensor | None = None) -> Tensor:
    """The repair :math:`f(y)` the self-supervised objectives train: the likelihood mean of the latent path with
    every level at its posterior mean (one level: ``decode(encode(y).mean).mean``), ``(B, C, H, W)``.

    Deterministic (a VAE's posterior mean, not a draw), so that a divergence
    and a blind spot are properties of one function.
    """
    refuse_prior_repairs(model, "a self-supervised objective")
    return cast(Tensor, latent_path(model, y, condition, mean=True).likelihood.mean)


def _per_image_mse(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).square().flatten(1).mean(dim=1)


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride())


class Noise2Noise(ObjectiveBase):
    r"""Noise2Noise (Lehtinen et al., 2018): the repair of one observation scored against another.

    Per image :math:`\ell_b = \tfrac1n \|f(y_{1,b}) - y_{2,b}\|^2` with ``x_input`` :math:`= y_1`
    and ``x_target`` :math:`= y_2`, two observations of the same scene with
    independent, zero-mean noise. Then :math:`E[\ell_b] = \tfrac1n E\|f(y_1) - x\|^2 +
    \tfrac1n E\|y_2 - x\|^2`: the supervised MSE plus a constant, so the minimiser
    is the supervised one. Train it on :class:`~vaerepair.data.NoisyImages` with
    ``second=`` (the Trainer swaps the two observations of a pair at random).

    Terms: ``mse_target`` ``(B,)``.

    Example:
        >>> from vaerepair.models import autoencoder
        >>> y1, y2 = torch.rand(2, 3, 1, 28, 28)
        >>> Noise2Noise()(autoencoder(likelihood="gaussian"), y1, y2).terms["mse_target"].shape
        torch.Size([3])
    """

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult:
        check_batch(model, x_input, x_target, condition)
        if _same_tensor(x_input, x_target):
            raise ValueError(
                "Noise2Noise scores the repair of one observation against a second, independent observation of "
                "the same scene, but its target is the input itself (which trains the identity): train on "
                "NoisyImages(y1, second=y2), or use BlindSpot or SURE for single noisy images")
        mse = _per_image_mse(denoise(model, x_input, condition), x_target)
        return ObjectiveResult(mse.mean(), {"mse_target": mse})

    def __repr__(self) -> str:
        return "Noise2Noise()"


class BlindSpot(ObjectiveBase):
    r"""A blind-spot objective in the Noise2Self / Noise2Void family (Batson & Royer, 2019; Krull et al., 2019).

    Each batch hides a random set :math:`J` of pixel locations (all channels of a
    location together): one location drawn uniformly in every ``spacing x spacing``
    cell of the image (stratified, as Noise2Void: a fraction :math:`1/\text{spacing}^2`
    of the pixels). Their values in the input are replaced (``replacement``):

    * ``"neighbour"``: the value of a random other pixel of the ``(2r+1) x (2r+1)``
      window around it (Noise2Void's uniform pixel manipulation);
    * ``"local-mean"``: the mean of the window without its centre (Noise2Self's
      donut);
    * ``"median"``: the median of the window without its centre (robust to
      impulse noise; the lower of the two middle values).

    Only visible pixels of the window count: other hidden pixels and positions
    outside the image are left out (padding by copies would put a border
    pixel's own value into its window).

    The loss is taken on the hidden pixels only:
    :math:`\ell_b = \tfrac{1}{|J_b| C} \sum_{j \in J_b} \|f(\tilde y_b)_j - y_{b,j}\|^2`,
    with the target ``x_target`` (the observation itself, or a second one).
    The replacement never reads a hidden pixel's own value, so :math:`f(\tilde y)_j`
    is independent of :math:`y_j`'s noise: the network cannot learn the identity.

    **Assumption (J-invariance).** The noise is independent across pixels and
    has mean 0 given the clean image. Then :math:`E[\ell_b]` is the supervised MSE
    of the masked prediction plus the noise variance, and the minimiser is the
    best predictor of a pixel from its surroundings. **When it fails**: with
    noise correlated across neighbouring pixels (demosaicked or JPEG-compressed
    photographs, scanner streaks, structured readout noise) the neighbours carry
    the hidden pixel's noise and the network learns to reproduce it. Widening
    the window does not remove correlations reaching further than ``radius``.

    Masks are drawn per batch from torch's generator on the images' device
    (reproducible with ``torch.manual_seed``; a resumed training run continues
    the stream). At repair time nothing is hidden: the model sees every pixel.

    Args:
        spacing: one hidden location per ``spacing x spacing`` cell (``>= 2``).
        replacement: ``"neighbour"``, ``"local-mean"`` or ``"median"``.
        radius: the window's half side ``r`` (``>= 1``).

    Terms: ``mse_hidden`` ``(B,)``.
    """

    def __init__(self, spacing: int = 4, replacement: str = "neighbour", radius: int = 2) -> None:
        for name, value, low in (("spacing", spacing, 2), ("radius", radius, 1)):
            check_count(value, name, minimum=low)
        if replacement not in BLIND_SPOT_REPLACEMENTS:
            raise ValueError(f"replacement must be one of {', '.join(BLIND_SPOT_REPLACEMENTS)}, got {replacement!r}")
        self.spacing, self.replacement, self.radius = spacing, replacement, radius

    def hide(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """The input with hidden pixels replaced ``(B, C, H, W)`` and the hidden locations ``(B, 1, H, W)`` (bool).

        Replacements are computed from the *visible* pixels of the window only
        (other hidden pixels and positions outside the image are left out), so no
        hidden value reaches the input anywhere, not even through a
        neighbouring hidden pixel's replacement. A window with no visible pixel
        (impossible for ``spacing >= 2``) would give 0.
        """
        b, c, h, w = y.shape
        s, r = self.spacing, self.radius
        rows, cols = -(-h // s), -(-w // s)
        offset = torch.randint(0, s, (2, b, rows, cols), device=y.device)
        top = (torch.arange(rows, device=y.device).view(1, rows, 1) * s + offset[0]).flatten(1)  # (B, P)
        left = (torch.arange(cols, device=y.device).view(1, 1, cols) * s + offset[1]).flatten(1)
        keep = (top < h) & (left < w)  # cells cut by the border may fall outside: they go to a spare slot
        top, left = top.clamp(max=h - 1), left.clamp(max=w - 1)
        slot = torch.where(keep, top * w + left, h * w)  # (B, P) flat positions, h * w: none
        mask = torch.zeros(b, h * w + 1, dtype=torch.bool, device=y.device).scatter(
            1, slot, torch.ones_like(keep))[:, : h * w].view(b, 1, h, w)
        # the visible image, NaN where hidden and outside, then every hidden pixel's window without its centre
        visible = F.pad(y.masked_fill(mask, float("nan")), (r, r, r, r), value=float("nan"))
        k = 2 * r + 1
        d = torch.arange(k * k, device=y.device)
        d = d[d != (k * k) // 2]
        dy, dx = d // k, d % k  # (K,) window offsets, the centre left out
        index = (top.unsqueeze(-1) + dy) * (w + 2 * r) + left.unsqueeze(-1) + dx  # (B, P, K) into padded
        ring = visible.flatten(2).gather(2, index.flatten(1).unsqueeze(1).expand(b, c, -1)).view(b, c, *index.shape[1:])
        value = self._pick(ring)  # (B, C, P)
        flat = torch.cat([y.flatten(2), y.new_zeros(b, c, 1)], dim=2)
        flat = flat.scatter(2, slot.unsqueeze(1).expand(b, c, -1), value)[:, :, : h * w]
        return flat.reshape(y.shape), mask

    def _pick(self, ring: Tensor) -> Tensor:
        """The replacement of each hidden pixel from its window's values ``(B, C, P, K)`` (NaN: not visible)."""
        seen = ~torch.isnan(ring[:, :1])  # (B, 1, P, K): visibility is the same in every channel
        if self.replacement == "neighbour":
            score = torch.rand(seen.shape, device=ring.device).masked_fill(~seen, -1.0)
            choice = score.argmax(dim=-1, keepdim=True).expand(*ring.shape[:-1], 1)
            value = ring.gather(-1, choice).squeeze(-1)
        elif self.replacement == "local-mean":
            value = ring.nanmean(dim=-1)
        else:
            value = ring.nanmedian(dim=-1).values
        return value.nan_to_num(0.0)

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult:
        check_batch(model, x_input, x_target, condition)
        hidden, mask = self.hide(x_input)
        out = denoise(model, hidden, condition)
        weight = mask.to(out.dtype)
        sq = ((out - x_target).square() * weight).sum(dim=(1, 2, 3))
        count = weight.sum(dim=(1, 2, 3)) * x_input.shape[1]
        mse = sq / count.clamp(min=1.0)
        return ObjectiveResult(mse.mean(), {"mse_hidden": mse})

    def __repr__(self) -> str:
        return f"BlindSpot(spacing={self.spacing}, replacement={self.replacement!r}, radius={self.radius})"


class SURE(ObjectiveBase):
    r"""Stein's unbiased risk estimate (Stein, 1981) for Gaussian noise of known ``sigma``, Monte-Carlo divergence.

    For :math:`y = x + \sigma\varepsilon`, :math:`\varepsilon \sim N(0, I)`, and a weakly
    differentiable repair :math:`f`, per image (``n = C H W`` pixels)

    .. math::
        \ell_b = \tfrac1n \|f(y_b) - y_b\|^2 - \sigma^2 + \tfrac{2\sigma^2}{n}\, \nabla_y\!\cdot f(y_b),
        \qquad E[\ell_b] = \tfrac1n E\|f(y_b) - x_b\|^2 :

    the supervised MSE in expectation, from the noisy image alone. The
    divergence is the Monte-Carlo estimate of Ramani et al. (2008) with a
    Rademacher probe :math:`b` (``E[b b^T] = I``, lower variance than a Gaussian one),
    :math:`\nabla\!\cdot f \approx b^\top J_f(y)\, b`, computed

    * ``divergence="fd"`` (default): by the finite difference
      :math:`b^\top (f(y + \epsilon b) - f(y)) / \epsilon`: one more forward pass
      and ordinary backpropagation (about 2x a supervised step); its bias is
      :math:`O(\epsilon)` (second derivatives of ``f``);
    * ``divergence="autograd"``: exactly, :math:`b^\top J b = (J^\top b) \cdot b` by a
      vector-Jacobian product with ``create_graph=True`` (double backpropagation,
      about 3x; no bias, for checking ``fd``).

    ``epsilon`` defaults to ``1e-3 * sigma``: small against the noise (the
    :math:`O(\epsilon)` bias), large against float32 rounding of ``f``.

    The objective estimates the risk from the input alone, so ``x_target`` must be
    ``x_input`` itself: train on :class:`~vaerepair.data.NoisyImages` with
    ``corruption=None``. Assumes the noise is exactly Gaussian with this
    ``sigma``, independent across pixels and unclipped: clipping, quantisation,
    a wrong ``sigma`` or correlated noise bias the estimate.

    Args:
        sigma: the noise standard deviation (> 0), on the images' scale.
        divergence: ``"fd"`` or ``"autograd"``.
        epsilon: the finite-difference step (``"fd"`` only).

    Terms ``(B,)``: ``sure``, ``mse_input`` (:math:`\tfrac1n\|f(y) - y\|^2`),
    ``divergence`` (:math:`\tfrac1n b^\top J b`).
    """

    def __init__(self, sigma: float, divergence: str = "fd", epsilon: float | None = None) -> None:
        self.sigma = check_positive(sigma, "sigma")
        if divergence not in ("fd", "autograd"):
            raise ValueError(f"divergence must be 'fd' or 'autograd', got {divergence!r}")
        self.divergence = divergence
        self.epsilon = check_positive(epsilon, "epsilon") if epsilon is not None else 1e-3 * self.sigma
        self.needs_grad = divergence == "autograd"  # the exact divergence differentiates inside the loss

    def __call__(
        self, model: LatentModel, x_input: Tensor, x_target: Tensor, condition: Tensor | None = None
    ) -> ObjectiveResult:
        check_batch(model, x_input, x_target, condition)
        if not _same_tensor(x_input, x_target):
            raise ValueError(
                "SURE estimates the risk from the noisy input alone, so its target must be the input itself; "
                "train on NoisyImages with corruption=None (a clean target would be supervised training: use "
                "Reconstruction)")
        y = x_input
        probe = torch.randint(0, 2, y.shape, device=y.device).to(y.dtype).mul_(2).sub_(1)
        n = y[0].numel()
        if self.divergence == "fd":
            both = denoise(model, torch.cat([y, y + self.epsilon * probe]), condition)
            out, shifted = both[: len(y)], both[len(y) :]
            div = (probe * (shifted - out)).flatten(1).sum(dim=1) / self.epsilon
        else:
            y_in = y.detach().requires_grad_(True)
            out = denoise(model, y_in, condition)
            (jtb,) = torch.autograd.grad(out, y_in, grad_outputs=probe, create_graph=True)
            div = (jtb * probe).flatten(1).sum(dim=1)
        mse = _per_image_mse(out, y)
        sure = mse - self.sigma**2 + (2.0 * self.sigma**2 / n) * div
        return ObjectiveResult(sure.mean(), {"sure": sure, "mse_input": mse, "divergence": div / n})

    def __repr__(self) -> str:
        return f"SURE(sigma={self.sigma}, divergence={self.divergence!r}, epsilon={self.epsilon:.3g})"
