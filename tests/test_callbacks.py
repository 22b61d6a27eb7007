"""Callbacks: the hooks' contract, the two checkpoint bugs, and each built-in callback."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

import vaerepair as vr
from vaerepair.training import (
    EMA,
    BestCheckpoint,
    Callback,
    CSVLogger,
    EarlyStopping,
    GradientClipping,
    ImageGrid,
    LRSchedule,
    NonFiniteLossError,
    TensorBoardLogger,
    TrainingInterrupted,
    load_checkpoint,
    load_model,
    monitor_mode,
)

DATA = torch.rand(100, 1, 12, 12, generator=torch.Generator().manual_seed(1))


def _vae(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return vr.variational_autoencoder((1, 12, 12), latent_dim=3, hidden=(16,))


def _trainer(model: torch.nn.Module, objective=None, **kw) -> vr.Trainer:
    kw.setdefault("epochs", 3)
    kw.setdefault("progress", False)
    return vr.Trainer(model, objective or vr.ELBO(), vr.GaussianNoise(0.2), batch_size=32, device="cpu", **kw)


class NaNAt:
    """The ELBO with a NaN loss on the N-th training step."""

    def __init__(self, n: int) -> None:
        self.inner, self.n, self.calls = vr.ELBO(), n, 0

    def __call__(self, model, x_input, x_target, condition=None):
        result = self.inner(model, x_input, x_target, condition)
        if model.training:
            self.calls += 1
            if self.calls == self.n:
                return vr.ObjectiveResult(result.loss * float("nan"), result.terms)
        return result


def test_a_checkpoint_is_only_written_from_verified_weights(tmp_path: Path) -> None:
    # check_every=50 (the CUDA default) with checkpoint_every=2, 8 steps per epoch: call 4 is step 3 (call 1 is
    # the first-batch check), an unchecked step whose NaN loss reaches the weights; step 4 writes last.pt, so it
    # is checked (before the fix, last.pt was written with NaN weights and the run went on to step 8)
    data = torch.rand(256, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 4"):
        _trainer(_vae(), NaNAt(4), check_every=50, checkpoint_every=2, checkpoint_dir=tmp_path).fit(data)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["progress"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values())


def test_the_checkpointer_refuses_non_finite_weights(tmp_path: Path) -> None:
    trainer = _trainer(_vae(), epochs=1, checkpoint_dir=tmp_path)
    trainer.fit(DATA[:64])
    before = (tmp_path / "last.pt").read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="refused to write .*last.pt: the weights are not finite"):
        trainer.checkpointer.save(trainer, "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before


def test_best_checkpoint_follows_the_declared_direction(tmp_path: Path) -> None:
    # the ELBO rises while the loss falls: best.pt must hold the epoch of the highest val_elbo
    trainer = _trainer(_vae(), epochs=4, monitor="val_elbo", checkpoint_dir=tmp_path, lr=1e-2)
    history = trainer.fit(DATA[:80], DATA[80:])
    elbos = history["val_elbo"]
    best, worst = (f(range(4), key=lambda i: elbos[i]) + 1 for f in (max, min))
    assert best != worst and history.best_epoch == best  # a guessed "min" would pick the worst
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == best


def test_a_metric_of_unknown_direction_needs_a_mode() -> None:
    assert monitor_mode("val_psnr") == "max" and monitor_mode("train_kl") == "min"
    assert monitor_mode("val_elbo") == "max"
    with pytest.raises(ValueError, match=r"direction of the metric 'val_sharpness' is unknown.*mode='min'"):
        _trainer(_vae(), monitor="val_sharpness")
    with pytest.raises(ValueError, match="direction"):
        EarlyStopping("my_score")
    assert EarlyStopping("my_score", mode="max").mode == "max"
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        BestCheckpoint("val_loss", mode="lowest")


class Recorder(Callback):
    """Counts every hook call; its counts are its state."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.epochs: list[int] = []
        self.starts = self.ends = 0

    def on_fit_start(self, trainer):
        self.starts += 1

    def on_step_end(self, trainer, batch, result):
        assert batch.input.shape == batch.target.shape and result.loss.dim() == 0
        self.steps.append(trainer.global_step)

    def on_epoch_end(self, trainer, record):
        assert trainer.history.records[-1] is record
        record["recorded_steps"] = float(len(self.steps))  # a callback may add a metric
        self.epochs.append(int(record["epoch"]))

    def on_fit_end(self, trainer):
        self.ends += 1

    def state_dict(self):
        return {"steps": list(self.steps), "epochs": list(self.epochs)}

    def load_state_dict(self, state):
        self.steps, self.epochs = list(state["steps"]), list(state["epochs"])


class SignalAt:
    def __init__(self, n: int) -> None:
        self.inner, self.n, self.calls = vr.ELBO(), n, 0

    def __call__(self, model, x_input, x_target, condition=None):
        if model.training:
            self.calls += 1
            if self.calls == self.n:
                import os
                import signal

                os.kill(os.getpid(), signal.SIGTERM)
        return self.inner(model, x_input, x_target, condition)


def test_a_callback_sees_every_step_and_epoch_and_resumes_its_state(tmp_path: Path) -> None:
    reference = Recorder()
    history = _trainer(_vae(), callbacks=[reference]).fit(DATA[:80], DATA[80:])
    assert reference.steps == list(range(1, 10)) and reference.epochs == [1, 2, 3]  # 3 steps per epoch
    assert reference.starts == reference.ends == 1 and history["recorded_steps"] == [3.0, 6.0, 9.0]
    stopped = Recorder()
    with pytest.raises(TrainingInterrupted):  # call 6 is epoch 2, step 2 (call 1 is the first-batch check)
        _trainer(_vae(), SignalAt(6), callbacks=[stopped], checkpoint_dir=tmp_path).fit(DATA[:80], DATA[80:])
    assert stopped.steps == [1, 2, 3, 4, 5]
    resumed = Recorder()
    _trainer(_vae(7), callbacks=[resumed]).fit(DATA[:80], DATA[80:], resume=tmp_path / "last.pt")
    assert resumed.steps == reference.steps and resumed.epochs == reference.epochs


def test_tensorboard_logger_writes_the_loss(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = _trainer(_vae(), epochs=2, callbacks=[TensorBoardLogger(tmp_path / "tb", log_every=1)]).fit(
        DATA[:80], DATA[80:])
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"train/loss", "val/loss", "val/psnr", "step/loss"} <= set(events.Tags()["scalars"])
    logged = [e.value for e in events.Scalars("train/loss")]
    assert logged == pytest.approx(history["train_loss"], rel=1e-6)
    assert len(events.Scalars("step/loss")) == 6


def test_csv_logger_and_image_grid(tmp_path: Path) -> None:
    callbacks = [CSVLogger(tmp_path / "log.csv"), ImageGrid(tmp_path / "grids", n=4, every=2)]
    history = _trainer(_vae(), epochs=4, callbacks=callbacks).fit(DATA[:80], DATA[80:])
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["val_psnr"]) for r in rows] == pytest.approx(history["val_psnr"])
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == ["grid_002.png", "grid_004.png"]


def test_lr_schedule_per_step_and_per_epoch() -> None:
    steps = LRSchedule(lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5), interval="step")
    trainer = _trainer(_vae(), epochs=2, callbacks=[steps], lr=1.0)
    trainer.fit(DATA[:64])  # 2 steps per epoch
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.5**4)
    assert trainer.history["lr"] == pytest.approx([0.25, 0.5**4])  # read at each epoch's end
    epochs = _trainer(_vae(), epochs=2, lr=1.0, scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, 0.1))
    epochs.fit(DATA[:64])
    assert epochs.history["lr"] == pytest.approx([1.0, 0.1])
    with pytest.raises(ValueError, match="interval"):
        LRSchedule(lambda opt: None, interval="batch")


class GradNorm(Callback):
    """The gradients' total norm seen just before each optimizer step (after any clipping before it)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer):
        grads = [p.grad for p in trainer.trainable if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_gradient_clipping_bounds_the_norm() -> None:
    free, clipped = GradNorm(), GradNorm()
    _trainer(_vae(), epochs=1, callbacks=[free]).fit(DATA[:64])
    clip = GradientClipping(max_norm=0.01)
    _trainer(_vae(), epochs=1, callbacks=[clip, clipped]).fit(DATA[:64])
    assert min(free.norms) > 0.01
    assert max(clipped.norms) <= 0.01 * (1 + 1e-4)
    assert clip.last_norm is not None and float(clip.last_norm) > 0.01


def test_ema_matches_its_recurrence_and_is_what_validation_and_load_model_use(tmp_path: Path) -> None:
    class Snapshots(Callback):
        def __init__(self) -> None:
            self.after_step: list[list[torch.Tensor]] = []

        def on_step_end(self, trainer, batch, result):
            self.after_step.append([p.detach().clone() for p in trainer.model.parameters()])

    ema, snaps = EMA(decay=0.9), Snapshots()
    trainer = _trainer(_vae(), epochs=2, callbacks=[ema, snaps], checkpoint_dir=tmp_path)
    initial = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(DATA[:80], DATA[80:])
    expected = initial
    for n, weights in enumerate(snaps.after_step):
        d = min(0.9, (1 + n) / (10 + n))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights, strict=True)]
    assert ema.shadow is not None
    for e, s in zip(expected, ema.shadow, strict=True):
        torch.testing.assert_close(s, e, rtol=1e-5, atol=1e-6)
    # validation ran with the average: evaluating the averaged weights gives the recorded val_loss
    averaged = _vae(3)
    ema.copy_to(averaged)
    check = _trainer(averaged)
    check.val_fixed = None
    same = check.validator.repair_quality(check.validator.fix(DATA[80:], trainer.seed + 1, check.corruption, "v"))
    assert same["psnr"] == pytest.approx(trainer.history["val_psnr"][-1], rel=1e-5)
    name = "encoder.net.0.weight"
    live, average = trainer.model.state_dict()[name], averaged.state_dict()[name]
    assert not torch.equal(live, average)
    assert torch.equal(load_model(tmp_path / "last.pt").state_dict()[name], average)
    assert torch.equal(load_model(tmp_path / "last.pt", ema=False).state_dict()[name], live)


def test_an_image_grid_after_an_ema_shows_the_averaged_weights(tmp_path: Path) -> None:
    seen = []

    class Grid(ImageGrid):
        def on_validation_end(self, trainer):
            seen.append(next(trainer.model.parameters()).detach().clone())
            super().on_validation_end(trainer)

    ema = EMA(decay=0.5)
    trainer = _trainer(_vae(), epochs=1, callbacks=[ema, Grid(tmp_path, n=2)])
    trainer.fit(DATA[:80], DATA[80:])
    assert ema.shadow is not None and torch.equal(seen[0], ema.shadow[0])
    assert not torch.equal(next(trainer.model.parameters()), ema.shadow[0])  # the live weights came back


def test_early_stopping_stops_and_resumes_its_counter(tmp_path: Path) -> None:
    stop = EarlyStopping("val_psnr", patience=1, min_delta=100.0)  # nothing improves by 100 dB
    history = _trainer(_vae(), epochs=5, early_stopping=stop, checkpoint_dir=tmp_path).fit(DATA[:80], DATA[80:])
    assert len(history) == 2 and history.stopped_early and stop.wait == 1
    assert load_checkpoint(tmp_path / "last.pt")["callbacks"]["EarlyStopping"]["wait"] == 1
    assert not math.isnan(history["val_psnr"][-1])


def test_callbacks_must_be_callbacks_with_distinct_keys() -> None:
    with pytest.raises(TypeError, match="Callback instances"):
        _trainer(_vae(), callbacks=[object()])
    with pytest.raises(ValueError, match="state key 'CSVLogger'"):
        _trainer(_vae(), callbacks=[CSVLogger("a.csv"), CSVLogger("b.csv")])
