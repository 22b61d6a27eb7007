"""vaerepair.testing: the contracts run over every built-in component and objective (one parametrised test per
kind, over the registry), and the kit catching deliberately broken objectives and components."""

from __future__ import annotations

import inspect
import math
import re
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from torch import Tensor, nn

import vaerepair as vr
from vaerepair import corruptions as corr
from vaerepair import distributions as dist
from vaerepair import nets
from vaerepair import objectives as obj
from vaerepair.flows import PlanarFlowPosterior
from vaerepair.objectives import ObjectiveResult
from vaerepair.testing import (
    BUILTIN_CORRUPTIONS,
    BUILTIN_LIKELIHOODS,
    BUILTIN_NETWORKS,
    BUILTIN_OBJECTIVES,
    BUILTIN_POSTERIORS,
    ContractError,
    check_bound,
    check_corruption,
    check_likelihood,
    check_network,
    check_objective,
    check_posterior,
    check_score,
    linear_gaussian_model,
    small_model,
)
from vaerepair.testing import strategies as vst

# --------------------------------------------------------------- the registry: every built-in passes


@pytest.mark.parametrize("name", list(BUILTIN_OBJECTIVES))
def test_builtin_objective_contract(name: str) -> None:
    entry = BUILTIN_OBJECTIVES[name]
    report = check_objective(entry.make(), likelihoods=entry.likelihoods, target=entry.target,
                             ignore_params=entry.ignore_params)
    assert report.ok and len(report.checks) >= 40
    if entry.bound is not None:
        check_bound(entry.make(), bound=entry.bound)


@pytest.mark.parametrize("name", list(BUILTIN_POSTERIORS))
def test_builtin_posterior_contract(name: str) -> None:
    factory, has_density = BUILTIN_POSTERIORS[name]
    assert check_posterior(factory(), has_density=has_density).ok


@pytest.mark.parametrize("name", list(BUILTIN_LIKELIHOODS))
def test_builtin_likelihood_contract(name: str) -> None:
    assert check_likelihood(BUILTIN_LIKELIHOODS[name]()).ok


@pytest.mark.parametrize("name", list(BUILTIN_CORRUPTIONS))
def test_builtin_corruption_contract(name: str) -> None:
    factory, value_range = BUILTIN_CORRUPTIONS[name]
    assert check_corruption(factory(), value_range=value_range).ok


@pytest.mark.parametrize("name", list(BUILTIN_NETWORKS))
def test_builtin_network_contract(name: str) -> None:
    factory, input_shape = BUILTIN_NETWORKS[name]
    assert check_network(factory, input_shape).ok


def _public_classes(module: object, base: type | None = None) -> set[type]:
    found = [getattr(module, n) for n in module.__all__]  # type: ignore[attr-defined]
    return {c for c in found if inspect.isclass(c) and (base is None or (issubclass(c, base) and c is not base))}


def test_the_registry_covers_every_public_component() -> None:
    assert {type(f()) for f, _ in BUILTIN_CORRUPTIONS.values()} >= _public_classes(corr, corr.Corruption)
    assert {type(f()) for f in BUILTIN_LIKELIHOODS.values()} >= {dist.Bernoulli, dist.ContinuousBernoulli,
                                                                  dist.Gaussian}
    assert {type(f()) for f, _ in BUILTIN_POSTERIORS.values()} >= {dist.GaussianPosterior, dist.PointMassPosterior,
                                                                     PlanarFlowPosterior}
    assert {type(f()) for f, _ in BUILTIN_NETWORKS.values()} >= _public_classes(nets, nn.Module)
    objective_classes = {c for c in _public_classes(obj) if "__call__" in vars(c)
                         and "x_target" in inspect.signature(c.__call__).parameters} - {obj.Objective}
    assert len(objective_classes) >= 4
    assert {type(e.make()) for e in BUILTIN_OBJECTIVES.values()} >= objective_classes


# --------------------------------------------------------------- broken objectives are caught


class _Base:
    def __repr__(self) -> str:
        return type(self).__name__

    def recon(self, model: nn.Module, x_input: Tensor, x_target: Tensor) -> Tensor:
        z = model.encode(x_input).rsample()
        return -model.decode(z).log_prob(x_target)


class DetachedDecoder(_Base):
    def __call__(self, model, x_input, x_target, condition=None):
        q = model.encode(x_input)
        z = q.rsample()
        params = model.decoder(z).detach()  # the bug
        recon = -model.likelihood(params).log_prob(x_target)
        kl = q.log_prob(z) - model.prior.log_prob(z)
        return ObjectiveResult((recon + kl).mean(), {"recon": recon, "kl": kl})


class BatchCoupled(_Base):
    def __call__(self, model, x_input, x_target, condition=None):
        x_in = x_input - x_input.mean(dim=0, keepdim=True) + 0.5  # centring with batch statistics
        recon = self.recon(model, x_in, x_target)
        return ObjectiveResult(recon.mean(), {"recon": recon})


class SumNotMean(_Base):
    def __call__(self, model, x_input, x_target, condition=None):
        recon = self.recon(model, x_input, x_target)
        return ObjectiveResult(recon.sum(), {"recon": recon})


class NaNOnSome(_Base):
    def __call__(self, model, x_input, x_target, condition=None):
        recon = self.recon(model, x_input, x_target) - x_target.log().sum(dim=(1, 2, 3))  # log 0 on black pixels
        return ObjectiveResult(recon.mean(), {"recon": recon})


class ScoresTheInput(_Base):
    def __call__(self, model, x_input, x_target, condition=None):
        recon = self.recon(model, x_input, x_input)  # the bug: the corrupted image as target
        return ObjectiveResult(recon.mean(), {"recon": recon})


class BoundWithoutKL(_Base):
    """Claims E[log p(x|z)] as a lower bound on log p(x): it is not (the KL is missing)."""

    def __call__(self, model, x_input, x_target, condition=None):
        q = model.encode(x_input)
        z = q.rsample()
        recon = -model.decode(z).log_prob(x_target)
        kl = q.log_prob(z) - model.prior.log_prob(z)
        return ObjectiveResult((recon + kl).mean(), {"elbo": -recon})


class _ELBOLike(_Base):
    """An ELBO with one deliberate bug (in the subclasses), reporting recon, kl and elbo as the built-in one does."""

    def parts(self, model, x_input, x_target):
        q = model.encode(x_input)
        z = q.rsample()
        return -model.decode(z).log_prob(x_target), q.log_prob(z) - model.prior.log_prob(z)

    def result(self, loss, recon, kl):
        return ObjectiveResult(loss, {"recon": recon, "kl": kl, "elbo": -(recon + kl)})


class FlippedKL(_ELBOLike):
    def __call__(self, model, x_input, x_target, condition=None):
        recon, kl = self.parts(model, x_input, x_target)
        return self.result((recon - kl).mean(), recon, kl)  # the bug: its elbo term is right


class KLWeightedByPosition(_ELBOLike):
    def __call__(self, model, x_input, x_target, condition=None):
        recon, kl = self.parts(model, x_input, x_target)
        weight = torch.linspace(0.5, 1.5, len(kl), dtype=kl.dtype)  # the bug
        return self.result((recon + weight * kl).mean(), recon, kl)


class DetachedKL(_ELBOLike):
    def __call__(self, model, x_input, x_target, condition=None):
        recon, kl = self.parts(model, x_input, x_target)
        return self.result((recon + kl.detach()).mean(), recon, kl)  # the bug: the KL trains nothing


class PixelMean(_ELBOLike):
    def __call__(self, model, x_input, x_target, condition=None):
        recon, kl = self.parts(model, x_input, x_target)
        recon = recon / x_target[0].numel()  # the bug: a mean over pixels where log p(x | z) is their sum
        return self.result((recon + kl).mean(), recon, kl)


class MissingConstant(_ELBOLike):
    """A Gaussian log-likelihood without its normaliser: a bound, but not the ELBO."""

    def __call__(self, model, x_input, x_target, condition=None):
        q = model.encode(x_input)
        z = q.rsample()
        lik = model.decode(z)
        recon = 0.5 * ((x_target - lik.mean) / lik.scale).square().sum(dim=(1, 2, 3))  # the bug: no normaliser
        kl = q.log_prob(z) - model.prior.log_prob(z)
        return self.result((recon + kl).mean(), recon, kl)


class OrderDependent(_Base):
    def __call__(self, model, x_input, x_target, condition=None):
        recon = self.recon(model, x_input, x_target)
        return ObjectiveResult((recon * torch.arange(1, len(recon) + 1, dtype=recon.dtype)).mean(),
                               {"recon": recon * torch.arange(1, len(recon) + 1, dtype=recon.dtype)})


class NoRepr:
    def __call__(self, model, x_input, x_target, condition=None):
        recon = -model.decode(model.encode(x_input).rsample()).log_prob(x_target)
        return ObjectiveResult(recon.sum(), {"recon": recon})


# each broken objective with the diagnosis it must get, and a diagnosis it must not get
GALLERY = [
    (FlippedKL(), r"adds the KL with the wrong sign", r"mean over images"),
    (KLWeightedByPosition(), r"depends on the batch size or on the positions in the batch",
     r"a sum grows with the batch size"),
    (DetachedKL(), r"a term of the loss is detached", r"no gradient reaches"),
    (PixelMean(), r"exceeds the exact log p\(x\).*a mean over pixels", r"a sum grows"),
    (MissingConstant(), r"a missing or doubled constant", r"a sum grows"),
    (OrderDependent(), r"reversing the batch changed the loss", r"a sum grows"),
    (SumNotMean(), r"repeated twice is 2x the loss on the batch: the loss must be the mean over images",
     r"positions in the batch"),
]


@pytest.mark.parametrize(("objective", "message", "not_message"), GALLERY, ids=lambda v: repr(v) if not
                         isinstance(v, str) else "")
def test_each_break_a_user_can_make_gets_its_own_diagnosis(objective, message: str, not_message: str) -> None:
    report = check_objective(objective, likelihoods=("gaussian",), raise_on_failure=False)
    text = "\n".join(f"{c.name}: {c.message}" for c in report.failures)
    assert re.search(message, text), text
    assert not re.search(not_message, text), text


def test_a_report_names_an_objective_without_a_repr_by_its_class() -> None:
    with pytest.raises(ContractError, match=r"^check_objective\(NoRepr\(\)\): "):
        check_objective(NoRepr())


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        (DetachedDecoder(), r"no gradient reaches decoder\.net"),
        (BatchCoupled(), r"changing image 0 changed the terms of the other images"),
        (SumNotMean(), r"repeated twice is 2x the loss on the batch.*mean over images"),
        (NaNOnSome(), r"finite on all-zero images: the loss is (nan|inf)"),
        (ScoresTheInput(), r"does not change when x_target changes.*scores x_input instead"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else "",
)
def test_broken_objectives_are_reported(objective: object, message: str) -> None:
    report = check_objective(objective, raise_on_failure=False)
    assert not report.ok and "FAIL" in str(report)
    with pytest.raises(ContractError, match=message):
        report.raise_if_failed()


def test_a_bound_above_the_exact_log_likelihood_is_reported() -> None:
    check_objective(BoundWithoutKL(), bound=False, raise_on_failure=False)  # only its bound is wrong
    with pytest.raises(ContractError, match=r"exceeds the exact log p\(x\).*not a lower bound"):
        check_bound(BoundWithoutKL())
    with pytest.raises(ContractError, match=r"\[bound\].*exceeds the exact log p\(x\)"):
        check_objective(BoundWithoutKL())  # the bound checks run by themselves on an objective that reports one


def test_the_kit_runs_with_user_models() -> None:
    report = check_objective(vr.ELBO(), models=[lambda dtype: small_model("mlp", "gaussian", "gaussian",
                                                                          dtype=dtype, seed=3)])
    assert report.ok and all(c.name.startswith(("[model 0, float", "[bound] ")) for c in report.checks)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        check_objective(vr.ELBO(), batch_size=1)


# --------------------------------------------------------------- the models the kit builds


@pytest.mark.parametrize("posterior", ["gaussian", "flow"])
def test_exchangeable_draws_follow_the_images(posterior: str) -> None:
    model = small_model("mlp", posterior, "bernoulli", dtype=torch.float64)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    torch.manual_seed(0)
    z = model.encode(x).rsample(2)
    torch.manual_seed(0)
    z_perm = model.encode(x.flip(0)).rsample(2)
    torch.testing.assert_close(z_perm, z.flip(1), rtol=1e-12, atol=1e-12)
    torch.manual_seed(1)
    assert not torch.allclose(model.encode(x).rsample(2), z)  # a new seed, new draws


def test_linear_gaussian_log_marginal_matches_quadrature() -> None:
    model = linear_gaussian_model(latent_dim=2, sigma=0.5)
    x = torch.rand(3, *model.image_shape, dtype=torch.float64)
    grid = torch.linspace(-7, 7, 401, dtype=torch.float64)
    z = torch.cartesian_prod(grid, grid)  # (G, 2)
    cell = math.log(float(grid[1] - grid[0])) * 2
    with torch.no_grad():
        log_joint = model.decode(z[:, None, :].expand(-1, 3, -1)).log_prob(x) + model.prior.log_prob(z)[:, None]
        quadrature = torch.logsumexp(log_joint, dim=0) + cell
        torch.testing.assert_close(model.log_marginal(x), quadrature, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------- component checks catch broken components


def test_check_score_catches_a_wrong_score() -> None:
    points = torch.randn(5, 3)
    prior = dist.StandardNormal(3)
    assert check_score(prior.score, prior.log_prob, points).ok
    with pytest.raises(ContractError, match="differs from grad log p"):
        check_score(lambda z: z, prior.log_prob, points, name="sign-flipped score")


class _WrongScoreGaussian(dist.DiagonalGaussian):
    def score(self, z: Tensor) -> Tensor:
        return -(z - self.loc) / self.scale  # should be / scale**2


class _WrongScoreHead(dist.GaussianPosterior):
    def forward(self, features: Tensor) -> dist.DiagonalGaussian:
        q = super().forward(features)
        return _WrongScoreGaussian(q.loc, q.scale)


def test_check_posterior_catches_a_wrong_score() -> None:
    with pytest.raises(ContractError, match="posterior score at the draws equals differences of log_prob"):
        check_posterior(_WrongScoreHead(6, 3))


class _InPlaceNoise(corr.GaussianNoise):
    def transform(self, x: Tensor, params: dict) -> corr.Corrupted:
        return corr.Corrupted(x.addcmul_(params["sigma"], params["noise"]), torch.ones_like(x, dtype=torch.bool))


class _LyingMask(corr.GaussianNoise):
    def transform(self, x: Tensor, params: dict) -> corr.Corrupted:
        y = torch.addcmul(x, params["sigma"], params["noise"]).clamp(0, 1)
        return corr.Corrupted(y, torch.zeros_like(x, dtype=torch.bool))  # claims nothing was touched


def test_check_corruption_catches_in_place_changes_and_wrong_masks() -> None:
    with pytest.raises(ContractError, match="modified its input tensor"):
        check_corruption(_InPlaceNoise(0.1), value_range=None)
    with pytest.raises(ContractError, match="changed outside the mask"):
        check_corruption(_LyingMask(0.1))


class _BatchMeanNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.lin(x.flatten(1))
        return h - h.mean(dim=0, keepdim=True)


def test_check_network_catches_a_batch_coupled_network() -> None:
    with pytest.raises(ContractError, match="inputs are independent"):
        check_network(_BatchMeanNet, (1, 4, 4))


# --------------------------------------------------------------- the hypothesis strategies


@settings(max_examples=15, deadline=None)
@given(vst.corruptions(), vst.image_batches(sizes=(8,), batch_sizes=(2, 3)))
def test_random_corruptions_keep_the_contract(corruption: corr.Corruption, x: Tensor) -> None:
    check_corruption(corruption, x.float(), value_range=None)


@settings(max_examples=6, deadline=None)
@given(vst.small_models())
def test_random_small_models_train_with_the_elbo(model: nn.Module) -> None:
    check_objective(vr.ELBO(), models=[lambda dtype: model], dtypes=(next(model.parameters()).dtype,))


@settings(max_examples=20, deadline=None)
@given(vst.latent_batches())
def test_standard_normal_score_on_random_latents(z: Tensor) -> None:
    prior = dist.StandardNormal(z.shape[1])
    check_score(prior.score, prior.log_prob, z)


def test_importing_the_kit_needs_neither_pytest_nor_hypothesis() -> None:
    code = ("import sys, vaerepair, vaerepair.testing; "
            "assert 'pytest' not in sys.modules and 'hypothesis' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_with_the_exact_posterior_the_elbo_is_the_log_likelihood() -> None:
    model = linear_gaussian_model(exact_posterior=True)
    x = torch.rand(4, *model.image_shape, dtype=torch.float64)
    for seed in range(3):
        torch.manual_seed(seed)
        elbo = vr.ELBO(kl="mc")(model, x, x).terms["elbo"]
        torch.testing.assert_close(elbo, model.log_marginal(x).detach(), rtol=1e-10, atol=1e-10)


def test_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_objective(vr.ELBO(), dtypes=(torch.float64,))
    check_bound(vr.ELBO(), n_repeats=30)
    torch.testing.assert_close(torch.rand(3), expected)
    with pytest.raises(ValueError, match="n_repeats must be >= 30"):
        check_bound(vr.ELBO(), n_repeats=5)
