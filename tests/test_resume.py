"""Fault tolerance: exact resume after SIGKILL and SIGTERM, mismatched checkpoints, the NaN guard."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vaerepair as vr
from vaerepair.training import CheckpointError, NonFiniteLossError, TrainingInterrupted, load_checkpoint

SCRIPT = Path(__file__).with_name("resume_script.py")


def _child(out: Path, mode: str, source: str = "tensor") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(out), mode, source], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("source", ["tensor", "loader", "ladder"])
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path: Path, source: str) -> None:
    full = _child(tmp_path / "full", "full", source)
    assert full.returncode == 0, full.stderr
    # call 1 is the Trainer's first-batch check, so call 8 is step 7 of 12: epoch 2, step 3 of 4, before the
    # update; the last checkpoint (checkpoint_every=2) was written after step 6
    killed = _child(tmp_path / "run", "kill-at-8", source)
    assert killed.returncode == -signal.SIGKILL
    state = load_checkpoint(tmp_path / "run" / "ckpt" / "last.pt")
    assert state["progress"]["epoch"] == 2 and state["progress"]["step"] == 2 and state["trainer"]["global_step"] == 6
    resumed = _child(tmp_path / "run", "resume", source)  # a fresh process, a different initialisation
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "full" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class SignalAt:
    """The ELBO; on the N-th training step the process sends itself ``sig``."""

    def __init__(self, n: int, sig: int = signal.SIGTERM) -> None:
        self.inner, self.n, self.sig, self.calls = vr.ELBO(beta=vr.objectives.LinearWarmup(10)), n, sig, 0

    def __call__(self, model, x_input, x_target, condition=None):
        if model.training:
            self.calls += 1
            if self.calls == self.n:
                os.kill(os.getpid(), self.sig)
        return self.inner(model, x_input, x_target, condition)

    def step(self) -> None:
        self.inner.step()

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


def _trainer(model: torch.nn.Module, objective, tmp_path: Path, **kw) -> vr.Trainer:
    kw.setdefault("epochs", 3)
    return vr.Trainer(model, objective, vr.GaussianNoise(0.2), batch_size=32, progress=False,
                      checkpoint_dir=tmp_path, **kw)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return vr.variational_autoencoder((1, 12, 12), latent_dim=3, hidden=(16,))


DATA = torch.rand(100, 1, 12, 12, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_at_a_step_boundary_and_resume_is_exact(tmp_path: Path, sig: int) -> None:
    reference = _model()
    _trainer(reference, SignalAt(10**9), tmp_path / "ref").fit(DATA[:80], DATA[80:])
    stopped = _model()
    # call 1 is the first-batch check; 3 steps per epoch, so call 6 is epoch 2, step 2
    with pytest.raises(TrainingInterrupted, match=rf"{signal.Signals(sig).name} stopped training at epoch 2, step 2"):
        _trainer(stopped, SignalAt(6, sig), tmp_path / "run").fit(DATA[:80], DATA[80:])
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are gone after fit
    resumed = _model(seed=7)
    objective = SignalAt(10**9)
    trainer = _trainer(resumed, objective, tmp_path / "run")
    history = trainer.fit(DATA[:80], DATA[80:], resume=tmp_path / "run" / "last.pt")
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert objective.inner.steps == 9  # the beta schedule's clock came back too (3 epochs x 3 steps)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_a_different_model_or_settings(tmp_path: Path) -> None:
    _trainer(_model(), vr.ELBO(), tmp_path).fit(DATA[:64])
    torch.manual_seed(0)
    other = vr.variational_autoencoder((1, 12, 12), latent_dim=4, hidden=(16,))
    with pytest.raises(CheckpointError, match=r"latent_dim=3 in the checkpoint, 4 in this model"):
        _trainer(other, vr.ELBO(), tmp_path).fit(DATA[:64], resume=tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"batch_size=32.*batch_size=16"):
        vr.Trainer(_model(), vr.ELBO(), batch_size=16, progress=False).fit(DATA[:64], resume=tmp_path / "last.pt")


def test_state_mismatch_names_the_keys_and_shapes() -> None:
    from vaerepair.training.state import state_mismatch

    a, b = torch.nn.Linear(3, 2), torch.nn.Sequential(torch.nn.Linear(3, 4))
    message = state_mismatch(a, {"weight": torch.zeros(5, 3), "extra": torch.zeros(1)})
    assert message is not None and "weight (5, 3) in the checkpoint vs (2, 3) here" in message
    assert "missing from the checkpoint: bias" in message and "not in this model: extra" in message
    assert state_mismatch(b, b.state_dict()) is None


class NaNAt:
    """The ELBO, with a NaN loss (or only a NaN gradient) on the N-th training step."""

    def __init__(self, n: int, gradient_only: bool = False) -> None:
        self.inner, self.n, self.gradient_only, self.calls = vr.ELBO(), n, gradient_only, 0

    def __call__(self, model, x_input, x_target, condition=None):
        result = self.inner(model, x_input, x_target, condition)
        if model.training:
            self.calls += 1
            if self.calls == self.n:
                p = next(model.parameters())
                if self.gradient_only:  # sqrt at 0: a finite value with an infinite derivative
                    bad = torch.sqrt((p * 0).sum().abs())
                    return vr.ObjectiveResult(result.loss + bad, result.terms)
                terms = {**result.terms, "kl": result.terms["kl"] * float("nan")}
                return vr.ObjectiveResult(result.loss * float("nan"), terms)
        return result


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 2 .*terms that went bad: \['kl'\]"):
        _trainer(model, NaNAt(6), tmp_path).fit(DATA[:80])
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1 and last["progress"] is None
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_non_finite_gradient_stops_naming_the_parameters(tmp_path: Path) -> None:
    message = r"non-finite gradient at epoch 1, step 2 .*in encoder\.net\.0\.weight"
    with pytest.raises(NonFiniteLossError, match=message):
        _trainer(_model(), NaNAt(3, gradient_only=True), tmp_path).fit(DATA[:80])


@pytest.mark.parametrize("gradient_only", [False, True])
def test_skip_policy_drops_bad_steps_and_counts_them(tmp_path: Path, gradient_only: bool) -> None:
    model = _model()
    trainer = _trainer(model, NaNAt(3, gradient_only), tmp_path, nan_policy="skip")  # call 3: epoch 1, step 2
    history = trainer.fit(DATA[:80])
    assert history["skipped_steps"] == [1.0, 0.0, 0.0]
    assert all(math.isfinite(v) for v in history["train_loss"])
    assert trainer.global_step == 8  # 9 steps, one dropped
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    with pytest.raises(ValueError, match="nan_policy"):
        _trainer(model, vr.ELBO(), tmp_path, nan_policy="ignore")


def test_a_fit_after_a_resumed_fit_continues_the_streams(tmp_path: Path) -> None:
    one = _trainer(_model(), vr.ELBO(), tmp_path / "one", epochs=1)
    one.fit(DATA[:64])
    one.fit(DATA[:64])  # a second fit continues the first one's random streams
    two = _trainer(_model(seed=5), vr.ELBO(), tmp_path / "two", epochs=1)
    _trainer(_model(), vr.ELBO(), tmp_path / "a", epochs=1).fit(DATA[:64])
    two.fit(DATA[:64], resume=tmp_path / "a" / "last.pt")  # nothing left to train: the state comes back
    two.fit(DATA[:64])  # ... and this fit must go on as one's second fit did (no new first-batch check)
    for a, b in zip(one.model.state_dict().values(), two.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
