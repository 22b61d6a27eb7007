"""The objective boundary: every built-in objective (and ``check_batch`` for users' own) refuses a bad batch
with an error that names it, instead of a NaN loss or a traceback from deep inside torch."""

from __future__ import annotations

import pytest
import torch

import vaerepair as vr
from vaerepair.distributions import validation
from vaerepair.objectives import IWAE, SURE, BlindSpot, Noise2Noise, check_batch

OBJECTIVES = {
    "reconstruction": vr.Reconstruction,
    "elbo": vr.ELBO,
    "iwae": lambda: IWAE(k=2),
    "fisher": vr.FisherDivergence,
    "sure": lambda: SURE(0.1),
    "blindspot": BlindSpot,
    "noise2noise": Noise2Noise,
}


def _vae() -> torch.nn.Module:
    torch.manual_seed(0)
    return vr.variational_autoencoder((1, 28, 28), latent_dim=4, hidden=(16,), likelihood="gaussian")


def _batch(kind: str) -> tuple[torch.Tensor, object]:
    x = torch.rand(4, 1, 28, 28)
    if kind == "nan input":
        x[1, 0, 2, 2] = float("nan")
        return x, x
    if kind == "inf target":
        y = x.clone()
        y[3, 0, 0, 0] = float("inf")
        return x, y
    return {"empty": (x[:0], x[:0]), "float16": (x.half(), x.half()), "bfloat16": (x.bfloat16(), x.bfloat16()),
            "None target": (x, None), "shapes differ": (x, x[:, :, :20, :20]), "batch sizes differ": (x, x[:3]),
            "3-d": (x[0], x[0])}[kind]


CASES = {
    "nan input": (ValueError, r"x_input has non-finite pixel values \(NaN or Inf\) in image 1"),
    "inf target": (ValueError, r"x_target has non-finite pixel values .* in image 3"),
    "empty": (ValueError, r"empty batch \(0 images\)"),
    "float16": (TypeError, r"x_input is torch.float16 but the model's weights are torch.float32"),
    "bfloat16": (TypeError, r"x_input is torch.bfloat16 but the model's weights are torch.float32"),
    "None target": (TypeError, r"x_target is None"),
    "shapes differ": (ValueError, r"same shape, got \(4, 1, 28, 28\) and \(4, 1, 20, 20\)"),
    "batch sizes differ": (ValueError, r"same shape, got \(4, 1, 28, 28\) and \(3, 1, 28, 28\)"),
    "3-d": (ValueError, r"expected x_input of shape \(B, C, H, W\), got \(1, 28, 28\)"),
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_builtin_objective_refuses_a_bad_batch_by_name(objective: str, kind: str) -> None:
    x_input, x_target = _batch(kind)
    if objective == "sure" and kind not in ("None target", "shapes differ", "batch sizes differ", "inf target"):
        x_target = x_input  # SURE scores the input itself
    error, message = CASES[kind]
    with pytest.raises(error, match=message):
        OBJECTIVES[objective]()(_vae(), x_input, x_target)


def test_a_ladder_is_checked_at_the_same_boundary() -> None:
    torch.manual_seed(0)
    ladder = vr.ladder_vae(widths=(4, 4), latent_channels=2, sigma=0.3)
    x = torch.rand(2, 1, 8, 8)
    for objective in (vr.ELBO(), IWAE(k=2), vr.Reconstruction()):
        with pytest.raises(ValueError, match="empty batch"):
            objective(ladder, x[:0], x[:0])
        with pytest.raises(TypeError, match="float16"):
            objective(ladder, x.half(), x.half())
        with pytest.raises(ValueError, match="expected x_input with 1 channel"):
            objective(ladder, x.repeat(1, 3, 1, 1), x.repeat(1, 3, 1, 1))


def test_nothing_is_checked_where_validation_is_off() -> None:
    """The Trainer checks its data once per fit and turns checks off in its steps: a NaN then goes through
    (and the guard stops it) at no per-step cost."""
    x, _ = _batch("nan input")
    with validation(False):
        assert not torch.isfinite(vr.Reconstruction()(_vae(), x, x).loss)
    with pytest.raises(ValueError, match="non-finite"):
        vr.Reconstruction()(_vae(), x, x)


def test_check_batch_serves_a_users_own_model_and_objective() -> None:
    """A model of the user's own (encode/decode, no check_input) is checked against its weights' dtype."""

    class Mine(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(TypeError, match="x_input is torch.float32 but the model's weights are torch.float64"):
        check_batch(Mine(), x, x)
    check_batch(Mine(), x.double(), x.double())  # accepted
    with pytest.raises(ValueError, match="condition must be a tensor with one row per image"):
        check_batch(Mine(), x.double(), x.double(), torch.zeros(3, 2))


@pytest.mark.parametrize("argument", ["chunk", "batch_size"])
@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_iwae_nll_refuses_a_bad_chunk_or_batch_size(argument: str, value: object) -> None:
    with pytest.raises((ValueError, TypeError), match=argument):
        vr.iwae_nll(_vae(), torch.rand(2, 1, 28, 28), k=4, **{argument: value})
