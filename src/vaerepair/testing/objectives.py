"""``check_objective`` and ``check_bound``: run a user's objective on small models and report what is wrong."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import product
from typing import Any

import torch
from torch import Tensor, nn

from vaerepair.objectives.base import ObjectiveResult
from vaerepair.testing.models import (
    ARCHS,
    LIKELIHOODS,
    POSTERIORS,
    ExchangeableModel,
    linear_gaussian_model,
    small_model,
)
from vaerepair.testing.report import CheckReport

__all__ = ["check_objective", "check_bound"]

ModelFactory = Callable[[torch.dtype], nn.Module]


def _grid_model(arch: str, posterior: str, likelihood: str, device: torch.device, dtype: torch.dtype) -> nn.Module:
    return small_model(arch, posterior, likelihood, dtype=dtype, device=device)


def _images(b: int, shape: tuple[int, ...], seed: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, *shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def _run(objective: Any, model: nn.Module, x_in: Tensor, x_t: Tensor, seed: int) -> ObjectiveResult:
    torch.manual_seed(seed)
    result = objective(model, x_in, x_t)
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise TypeError(f"the objective must return ObjectiveResult(loss, terms), got {type(result).__name__}")
    return ObjectiveResult(*result)


def describe(subject: Any) -> str:
    """How a report names what it checks: its own ``repr``, unless that is Python's default ``<... object at 0x...>``
    (then its class name), or a function's name."""
    text = repr(subject)
    if re.fullmatch(r"<.* at 0x[0-9a-f]+>", text):
        name = getattr(subject, "__qualname__", None) or type(subject).__qualname__
        return name if callable(subject) and hasattr(subject, "__qualname__") else f"{name}()"
    return text


def _max_rel(a: Tensor, b: Tensor) -> float:
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    return float((a - b).abs().max()) / scale


TARGETS = ("clean", "noisy", "pair")
_OWN_LIKELIHOOD = ("; an objective that scores with a likelihood of its own, not the model's, bounds another model's "
                   "log p(x): check it with check_objective(..., bound=False)")


def _pair(x_in: Tensor, x_t: Tensor, target: str) -> tuple[Tensor, Tensor]:
    """``(input, target)`` as the objective gets them: the noisy kind trains on the input itself (one tensor)."""
    return (x_in, x_in) if target == "noisy" else (x_in, x_t)


def _check_one(objective: Any, model: nn.Module, dtype: torch.dtype, device: torch.device, batch: int,
               rtol: float, ignore_params: Sequence[str], target: str = "clean") -> CheckReport:
    report = CheckReport("model")
    # a fully convolutional model (image_shape (C, None, None)) is checked on odd-sized 13x10 images
    c, h, w = model.image_shape  # type: ignore[misc]
    shape = (c, 13 if h is None else h, 10 if w is None else w)
    if target == "clean":
        x_t = _images(batch, shape, 1, dtype, device)
        x_in = (x_t + 0.3 * _images(batch, shape, 2, dtype, device)).clamp(0, 1)  # a "corrupted" input
    else:  # unclipped noisy observations of one clean batch (two independent ones for pairs)
        clean = _images(batch, shape, 1, dtype, device)
        x_in = clean + 0.3 * (_images(batch, shape, 2, dtype, device) - 0.5) * 3.4
        x_t = clean + 0.3 * (_images(batch, shape, 3, dtype, device) - 0.5) * 3.4
    other_observation = x_t
    x_in, x_t = _pair(x_in, x_t, target)

    try:
        result = _run(objective, model, x_in, x_t, seed=0)
    except Exception as err:  # the objective cannot even run: every other check would fail the same way
        report.add("runs", False, f"raised {type(err).__name__}: {err}")
        return report
    loss, terms = result
    if not report.add("loss is a scalar tensor", isinstance(loss, Tensor) and loss.dim() == 0,
                      f"the loss must be a 0-d tensor (the batch mean), got {getattr(loss, 'shape', type(loss))}"):
        return report
    loss_value = loss.detach()
    report.add("loss is finite", bool(torch.isfinite(loss_value)),
               f"the loss is {float(loss_value)} on random images in [0, 1]")
    bad_terms = {k: tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__ for k, v in terms.items()
                 if not (isinstance(v, Tensor) and v.shape == (batch,))}
    report.add("terms are per-image (B,)", not bad_terms,
               f"every term must have shape ({batch},) (one value per image), got {bad_terms}")
    report.add("dtype and device kept", loss.dtype == dtype and loss.device.type == device.type,
               f"inputs were {dtype} on {device}, the loss is {loss.dtype} on {loss.device}")

    # gradients reach every trainable parameter of the encoder, posterior and decoder
    params = {n: p for n, p in model.named_parameters()
              if p.requires_grad and not any(n.startswith(prefix) for prefix in ignore_params)}
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True) if loss.requires_grad else None
    if grads is None:
        report.add("gradients reach every parameter", False,
                   "the loss does not require grad: it is detached from the model's parameters")
    else:
        dead = [n for (n, _), g in zip(params.items(), grads, strict=True) if g is None or not bool(g.abs().sum() > 0)]
        finite = all(g is None or bool(torch.isfinite(g).all()) for g in grads)
        report.add("gradients reach every parameter", not dead,
                   f"no gradient reaches {', '.join(dead)}: something detaches them (.detach(), torch.no_grad(), "
                   "a tensor rebuilt from .item()/.numpy())")
        report.add("gradients are finite", finite, "some parameter gradients are NaN or infinite")

    again = _run(objective, model, x_in, x_t, seed=0)
    report.add("deterministic under a fixed seed", torch.equal(again.loss.detach(), loss_value),
               f"two runs with torch.manual_seed(0) gave {float(loss_value):.6g} and "
               f"{float(again.loss.detach()):.6g}: draw randomness from torch's generators only")

    _check_loss_against_its_bound(report, objective, model, x_in, x_t, list(params.values()), rtol)

    # mean over images: the batch repeated twice gives the same loss
    doubled = float(_run(objective, model, *_pair(torch.cat([x_in, x_in]), torch.cat([x_t, x_t]), target),
                         seed=0).loss.detach())
    value = float(loss_value)
    ratio = doubled / value if value != 0 else float("nan")
    # per-position draws (masks, probes) differ for the repeated half: then only "about 1x, not 2x" is exact
    mean_ok = math.isclose(doubled, value, rel_tol=rtol, abs_tol=1e-8) if target == "clean" else 0.5 < ratio < 1.5
    if math.isclose(ratio, 2.0, rel_tol=1e-3):  # the draws repeat with the images: a sum gives 2x exactly
        why = "the loss must be the mean over images (a sum grows with the batch size)"
    else:  # neither a mean nor a sum: weights by position, or a dependence on the batch size
        why = ("the loss depends on the batch size or on the positions in the batch (a weight by position? a "
               "normalisation by something other than the number of images?)")
    report.add("mean over the batch (not a sum)", mean_ok,
               f"the loss on the batch repeated twice is {ratio:.6g}x the loss on the batch: {why}")

    # images are independent: order does not matter, and changing one image changes only its own terms
    perm = torch.arange(batch - 1, -1, -1, device=device)
    permuted = _run(objective, model, *_pair(x_in[perm], x_t[perm], target), seed=0)
    order_ok = math.isclose(float(permuted.loss.detach()), value, rel_tol=rtol, abs_tol=1e-8) and all(
        _max_rel(permuted.terms[k][perm.argsort()].detach(), v.detach()) <= rtol
        for k, v in terms.items() if k in permuted.terms)
    if target == "clean":  # draws by position in the batch (masks, probes) are exchangeable in distribution only
        report.add("independent of the batch order", order_ok,
                   "reversing the batch changed the loss or the per-image terms: images must not interact")
    x_in2, x_t2 = x_in.clone(), x_t.clone()
    x_in2[0], x_t2[0] = x_in[0].flip(-1), x_t[0].flip(-1)
    changed = _run(objective, model, *_pair(x_in2, x_t2, target), seed=0)
    leak = max((_max_rel(changed.terms[k][1:].detach(), v[1:].detach()) for k, v in terms.items()
                if k in changed.terms), default=0.0)
    report.add("images are independent", leak <= rtol,
               f"changing image 0 changed the terms of the other images (relative change {leak:.2g}): the "
               "objective couples the images of a batch (batch statistics, BatchNorm, a loss over the whole batch)")

    # the encoder sees x_input, the likelihood scores x_target
    if target == "noisy":
        other = _run(objective, model, *_pair(other_observation, other_observation, target), seed=0).loss.detach()
        report.add("depends on the observation", not math.isclose(float(other), value, rel_tol=1e-9, abs_tol=0),
                   "the loss does not change when the noisy observation changes")
    else:
        same_target = float(_run(objective, model, x_in, x_in.clone(), seed=0).loss.detach())
        report.add(f"scores the {'second observation' if target == 'pair' else 'clean target'}",
                   not math.isclose(same_target, value, rel_tol=1e-9, abs_tol=0),
                   "the loss does not change when x_target changes: the objective must score x_target "
                   "(it scores x_input instead, or nothing)")
        same_input = float(_run(objective, model, x_t, x_t.clone(), seed=0).loss.detach())
        report.add("encodes the input", not math.isclose(same_input, value, rel_tol=1e-9, abs_tol=0),
                   "the loss does not change when x_input changes: the encoder must see x_input")

    # edge images: black, white, binary
    for name, edge in {"all-zero": torch.zeros_like(x_t), "all-one": torch.ones_like(x_t),
                       "binary": (x_t > 0.5).to(dtype)}.items():
        edge_loss = _run(objective, model, *_pair(edge, edge.clone(), target), seed=0).loss.detach()
        report.add(f"finite on {name} images", bool(torch.isfinite(edge_loss)),
                   f"the loss is {float(edge_loss)} on {name} images (a log of 0? a division by a variance of 0?)")
    return report


def _check_loss_against_its_bound(report: CheckReport, objective: Any, model: nn.Module, x_in: Tensor, x_t: Tensor,
                                  params: list[Tensor], rtol: float) -> None:
    """An objective that reports a bound (an ``elbo`` term, or an IWAE ``nll`` term) must minimise it: its loss is
    minus the bound's batch mean (with the same gradient: a detached term changes only the gradient), or
    ``recon + beta * kl`` with ``beta >= 0`` (a beta-ELBO, free bits)."""
    result = _run(objective, model, x_in, x_t, seed=0)
    loss, terms = result
    if "elbo" in terms:
        claimed, what = -terms["elbo"].mean(), "minus the batch mean of its elbo term"
    elif "nll" in terms:
        claimed, what = terms["nll"].mean(), "the batch mean of its nll term"
    else:
        return
    value, bound = float(loss.detach()), float(claimed.detach())
    if math.isclose(value, bound, rel_tol=rtol, abs_tol=1e-6):
        if not (loss.requires_grad and claimed.requires_grad):
            return  # detached terms (logging only): the gradient cannot be compared
        g_loss = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        g_bound = torch.autograd.grad(claimed, params, allow_unused=True)
        gaps = [_max_rel(a if a is not None else torch.zeros_like(p), b if b is not None else torch.zeros_like(p))
                for a, b, p in zip(g_loss, g_bound, params, strict=True) if a is not None or b is not None]
        gap = max(gaps, default=0.0)
        report.add("the loss has the gradient of the bound it reports", gap <= 10 * rtol,
                   f"the loss equals {what} but its gradient differs from the bound's (relative difference "
                   f"{gap:.2g}): a term of the loss is detached (.detach(), .item(), .data) and trains nothing")
        return
    if "recon" in terms and "kl" in terms and abs(float(terms["kl"].detach().mean())) > 1e-9:
        recon, kl = float(terms["recon"].detach().mean()), float(terms["kl"].detach().mean())
        beta = (value - recon) / kl
        report.add("the loss adds the KL with a weight >= 0", beta >= -1e-3,
                   f"the loss is recon + beta * kl with beta = {beta:.4g}, while the elbo term is -(recon + kl): the "
                   "loss adds the KL with the wrong sign (minimising it maximises the KL)")
        return
    report.add("the loss is the bound it reports", False,
               f"the loss {value:.6g} is not {what} ({bound:.6g}), nor recon + beta * kl: the loss must minimise the "
               "bound the objective reports (a term missing from the loss, or from the bound?)")


def check_objective(
    objective: Any,
    models: Iterable[ModelFactory] | None = None,
    *,
    archs: Sequence[str] = ARCHS,
    posteriors: Sequence[str] = POSTERIORS,
    likelihoods: Sequence[str] = LIKELIHOODS,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    rtol: float | None = None,
    full_grid: bool = False,
    ignore_params: Sequence[str] = (),
    raise_on_failure: bool = True,
    target: str = "clean",
    bound: str | Callable[[ObjectiveResult], Tensor] | bool = "auto",
) -> CheckReport:
    r"""Run ``objective(model, x_input, x_target)`` on small models and batches and check its contract.

    On every model (by default enough :func:`~vaerepair.testing.small_model`
    models that each of ``archs``, ``posteriors`` and ``likelihoods`` appears
    once: an MLP with a Gaussian posterior and a conv net with a planar-flow
    posterior; ``full_grid=True``: every combination) and dtype, it checks that:

    * it runs and returns ``ObjectiveResult(loss, terms)``: a finite scalar loss,
      per-image terms of shape ``(B,)``, in the inputs' dtype and on their device;
    * gradients reach every trainable parameter (encoder, posterior head,
      decoder, likelihood) and are finite: nothing detaches them;
    * it is deterministic under ``torch.manual_seed``;
    * the loss is the *mean* over images: the batch repeated twice gives the same loss;
    * images are independent: reversing the batch permutes the terms, and
      changing one image leaves the others' terms unchanged;
    * the encoder sees ``x_input`` and the likelihood scores ``x_target``
      (changing either changes the loss);
    * it is finite on all-zero, all-one and binary images;
    * when it reports a bound on :math:`\log p(x)` (an ``elbo`` term, or an
      ``nll`` term: IWAE), its loss minimises that bound: the loss is minus the
      bound's mean with the same gradient (a detached term is caught), or
      ``recon + beta * kl`` with ``beta >= 0``; and :func:`check_bound` passes
      (below the exact :math:`\log p(x)`, equal to it with the exact posterior).

    ``target`` says what the objective trains on: ``"clean"`` (a corrupted
    input, a clean target), ``"noisy"`` (self-supervised: unclipped noisy
    observations, the input and the target one tensor, as the Trainer passes
    :class:`~vaerepair.data.NoisyImages`; the two input/target checks become
    "depends on the observation") or ``"pair"`` (two independent noisy
    observations, as Noise2Noise). For ``"noisy"`` and ``"pair"`` the
    batch-order check is left out: masks and probes drawn by position in the
    batch are exchangeable in distribution only.

    The models' posterior draws are tied to the images
    (:class:`~vaerepair.testing.ExchangeableModel`), so these comparisons are
    exact up to ``rtol`` (default 1e-4 in float32, 1e-9 in float64): an
    objective must draw its randomness through the posterior's ``rsample``.

    Args:
        objective: the objective to check.
        models: factories ``dtype -> model`` replacing the default grid.
        archs: the default models' architectures.
        posteriors: the default models' posteriors.
        likelihoods: the default models' likelihoods (e.g. ``("gaussian",)``
            for an objective that needs a density in x).
        dtypes: the dtypes to run in.
        device: where models and images live.
        batch_size: images per batch (>= 2).
        rtol: relative tolerance of the comparisons.
        full_grid: every combination of ``archs`` x ``posteriors`` x ``likelihoods``.
        ignore_params: parameter-name prefixes the objective is not meant to
            train (e.g. ``("likelihood.",)`` for an objective that uses only the
            decoder's mean and leaves a learned likelihood scale alone).
        raise_on_failure: raise :class:`~vaerepair.testing.ContractError` listing
            every failure (default), or only return the report.
        target: ``"clean"``, ``"noisy"`` or ``"pair"``.
        bound: ``"auto"`` (run :func:`check_bound` when the objective reports an
            ``elbo`` or ``nll`` term), ``False`` (never), or the bound for
            :func:`check_bound` (a term name or a function of the result).

    Returns:
        The :class:`~vaerepair.testing.CheckReport`.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 to check that images are independent, got {batch_size}")
    device = torch.device(device)
    if models is None:
        n = max(len(archs), len(posteriors), len(likelihoods))
        grid = list(product(archs, posteriors, likelihoods)) if full_grid else [
            (archs[i % len(archs)], posteriors[i % len(posteriors)], likelihoods[i % len(likelihoods)])
            for i in range(n)]
        factories: list[tuple[str, ModelFactory]] = [
            (f"{a}/{p}/{lk}", partial(_grid_model, a, p, lk, device)) for a, p, lk in grid
        ]
    else:
        factories = [(f"model {i}", f) for i, f in enumerate(models)]
    report = CheckReport(f"check_objective({describe(objective)})")
    with torch.random.fork_rng(devices=[]):  # the checks reseed torch's generator; the caller's state comes back
        for (name, factory), dtype in product(factories, dtypes):
            tol = rtol if rtol is not None else (1e-9 if dtype == torch.float64 else 1e-4)
            model = factory(dtype)
            report.extend(_check_one(objective, model, dtype, device, batch_size, tol, ignore_params, target),
                          prefix=f"[{name}, {str(dtype).removeprefix('torch.')}] ")
        if bound is not False and _reports_a_bound(objective, bound):
            report.extend(check_bound(objective, bound="auto" if bound is True else bound, n_repeats=100,
                                      raise_on_failure=False), prefix="[bound] ")
    return report.raise_if_failed() if raise_on_failure else report


def _reports_a_bound(objective: Any, bound: Any) -> bool:
    """Whether :func:`check_bound` applies: a bound was named, or the objective reports an elbo/nll term on the
    linear-Gaussian model (where it must run)."""
    if bound != "auto":
        return True
    model = linear_gaussian_model()
    x = _images(2, tuple(model.image_shape), 0, torch.float64, torch.device("cpu"))
    try:
        terms = _run(objective, model, x, x, seed=0).terms
    except Exception:  # noqa: BLE001 - an objective that needs another model (a ladder, a likelihood kind)
        return False
    return "elbo" in terms or "nll" in terms


def _bound_of(result: ObjectiveResult, bound: str | Callable[[ObjectiveResult], Tensor]) -> Tensor:
    if callable(bound):
        return bound(result)
    if bound != "auto":
        return result.terms[bound]
    if "elbo" in result.terms:
        return result.terms["elbo"]
    if "nll" in result.terms:
        return -result.terms["nll"]
    raise KeyError(f"no bound term found in {sorted(result.terms)}; pass bound='<term name>' or a function "
                   "ObjectiveResult -> (B,) lower bound on log p(x)")


def check_bound(
    objective: Any,
    model: ExchangeableModel | None = None,
    bound: str | Callable[[ObjectiveResult], Tensor] = "auto",
    n_images: int = 6,
    n_repeats: int = 200,
    n_sigma: float = 4.0,
    raise_on_failure: bool = True,
    tight: bool = True,
) -> CheckReport:
    r"""Check that a claimed lower bound on :math:`\log p(x)` stays below the exact value, and reaches it where
    it must.

    On :class:`~vaerepair.testing.LinearGaussianModel` s (float64; exact
    :math:`\log p(x) = \log N(x; b, W W^\top + s^2 I)`), the objective is run
    ``n_repeats`` times on clean images; the mean of the bound per image must not
    exceed the exact log-likelihood by more than ``n_sigma`` standard errors
    (a single Monte-Carlo draw may, an expectation may not). By default two
    models are used: one whose encoder is the exact posterior (where the ELBO
    is exact, so anything claiming more is caught at once) and one with a
    random encoder. With ``tight`` (default) the bound must also *equal*
    :math:`\log p(x)` on the exact-posterior model, as the ELBO and IWAE do at
    every draw: a missing or doubled constant (a Gaussian's normaliser) breaks
    this and nothing else.

    Args:
        objective: the objective.
        model: a model with ``log_marginal(x)`` replacing the two defaults.
        bound: the per-image bound: a term name, a function of the result, or
            ``"auto"`` (the ``elbo`` term, else minus the ``nll`` term).
        n_images: images per model.
        n_repeats: Monte-Carlo repeats (>= 30: the tolerance is in standard errors estimated from them).
        n_sigma: tolerance in standard errors.
        raise_on_failure: raise :class:`~vaerepair.testing.ContractError` on failure.
        tight: also require the bound to equal :math:`\log p(x)` with the exact
            posterior (``False`` for a bound looser by design).
    """
    if n_repeats < 30:
        raise ValueError(f"n_repeats must be >= 30 for a reliable standard error, got {n_repeats}")
    models: dict[str, Any] = {"given model": model} if model is not None else {
        "exact-posterior encoder": linear_gaussian_model(exact_posterior=True),
        "random encoder": linear_gaussian_model(),
    }
    report = CheckReport(f"check_bound({describe(objective)})")
    for name, m in models.items():
        log_marginal = getattr(m, "log_marginal", None)
        if log_marginal is None:
            raise TypeError("check_bound needs a model with an exact log_marginal(x) "
                            "(vaerepair.testing.linear_gaussian_model())")
        ref = next(m.parameters())
        x = _images(n_images, tuple(m.image_shape), 3, ref.dtype, ref.device)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            exact = log_marginal(x)
            draws = torch.stack([_bound_of(_run(objective, m, x, x, seed=i), bound).detach()
                                 for i in range(n_repeats)])
        mean, se = draws.mean(0), draws.std(0) / math.sqrt(n_repeats)
        excess = (mean - exact) / (se + 1e-9 * (1 + exact.abs()))
        worst = int(excess.argmax())
        report.add(f"[{name}] bound <= exact log p(x)", bool((excess <= n_sigma).all()),
                   f"the claimed lower bound exceeds the exact log p(x) on image {worst}: mean bound "
                   f"{float(mean[worst]):.4f} vs log p(x) {float(exact[worst]):.4f} nats "
                   f"({float(excess[worst]):.1f} standard errors above): it is not a lower bound (a mean over "
                   "pixels or latent dimensions where a log-density needs their sum? a KL with the wrong sign or "
                   f"missing? a constant left out?){_OWN_LIKELIHOOD}")
        if tight and name == "exact-posterior encoder":
            gap = (exact - mean).abs()
            off = int(gap.argmax())
            report.add(f"[{name}] bound = exact log p(x)", bool((gap <= n_sigma * se + 1e-6 * (1 + exact.abs())).all()),
                       f"with the exact posterior as encoder the ELBO and IWAE equal log p(x) at every draw, but the "
                       f"bound is {float(mean[off] - exact[off]):+.4f} nats from it on image {off} (mean "
                       f"{float(mean[off]):.4f} vs {float(exact[off]):.4f}): a missing or doubled constant (a "
                       "Gaussian's normaliser -0.5 log(2 pi sigma^2) per pixel?) or a term counted twice; pass "
                       f"tight=False for a bound looser by design{_OWN_LIKELIHOOD}")
        report.add(f"[{name}] bound is finite", bool(torch.isfinite(draws).all()),
                   "the bound is NaN or infinite on some draws")
    return report.raise_if_failed() if raise_on_failure else report
