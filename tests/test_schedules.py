"""Beta schedules: their values, and the Trainer stepping them through the ELBO."""

from __future__ import annotations

import pytest
import torch

import vaerepair as vr
from vaerepair.objectives import Constant, Cyclical, LinearWarmup


def test_schedule_values():
    assert [Constant(4.0)(s) for s in (0, 10**6)] == [4.0, 4.0]
    warm = LinearWarmup(end=2.0, steps=4, start=0.0)
    assert [warm(s) for s in (0, 1, 2, 4, 100)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    cyc = Cyclical(period=4, high=1.0, low=0.0, ratio=0.5)
    assert [cyc(s) for s in range(9)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LinearWarmup(steps=0), "steps must be an integer >= 1"),
        (lambda: Cyclical(period=0), "period must be an integer >= 1"),
        (lambda: Cyclical(period=5, ratio=0.0), "ratio must be in"),
        (lambda: Constant(-1.0), "value must be finite and >= 0"),
    ],
)
def test_schedule_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_trainer_steps_the_elbo_schedule_and_records_beta():
    images = (torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.7).to(torch.uint8) * 255
    objective = vr.ELBO(beta=LinearWarmup(end=1.0, steps=8))
    trainer = vr.Trainer(vr.variational_autoencoder(latent_dim=3, hidden=(16,)), objective, None, epochs=3,
                         batch_size=16, progress=False, device="cpu")
    history = trainer.fit(images)  # 4 steps per epoch
    assert objective.steps == 12
    assert history["beta"] == [0.5, 1.0, 1.0]


def test_beta_weights_the_kl_term():
    model = vr.variational_autoencoder(latent_dim=3, hidden=(16,))
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    a = vr.ELBO(beta=0.0)(model, x, x)
    torch.manual_seed(0)
    b = vr.ELBO(beta=3.0)(model, x, x)
    torch.testing.assert_close(b.loss - a.loss, 3.0 * a.terms["kl"].mean())
