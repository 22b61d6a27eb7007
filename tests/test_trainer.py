"""The Trainer: learning, history, fixed validation corruption, reproducibility, checkpoints, guards."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import vaerepair as vr
from vaerepair.objectives import ObjectiveResult
from vaerepair.training import CheckpointError, EarlyStopping, NonFiniteLossError, load_checkpoint, load_model


def _data(n: int = 256, seed: int = 0) -> torch.Tensor:
    """Structured 28x28 images (random rectangles) as uint8."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(n, 1, 28, 28)
    top, left = torch.randint(0, 14, (2, n), generator=g)
    for i in range(n):  # building test data, not library code
        imgs[i, 0, top[i] : top[i] + 12, left[i] : left[i] + 12] = 1.0
    return (imgs * 255).to(torch.uint8)


def _model(seed: int = 0) -> vr.LatentVariableModel:
    torch.manual_seed(seed)
    return vr.autoencoder(latent_dim=8, hidden=(64,), likelihood="gaussian", sigma=0.1, link="sigmoid")


def _trainer(model, **kw):
    kw.setdefault("epochs", 3)
    kw.setdefault("batch_size", 32)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(0.3), lr=3e-3, **kw)


def test_fit_learns_and_records_history():
    images = _data()
    trainer = _trainer(_model(), epochs=4)
    history = trainer.fit(images[:200], images[200:])
    assert len(history) == 4
    for key in ["train_loss", "train_recon", "val_loss", "val_recon", "val_psnr", "val_ssim",
                "val_psnr_input", "val_ssim_input", "seconds", "lr"]:
        assert len(history[key]) == 4, key
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_psnr"][-1] > history["val_psnr_input"][-1]  # repairs beat the noisy input
    assert len(set(history["val_psnr_input"])) == 1  # one fixed validation corruption


def test_same_seed_same_weights_different_seed_different():
    images = _data(128)
    runs = []
    for seed in (0, 0, 1):
        trainer = _trainer(_model(), epochs=2, seed=seed)
        trainer.fit(images)
        runs.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_evaluate_is_reproducible_and_complete():
    images = _data(64)
    trainer = _trainer(_model())
    a, b = trainer.evaluate(images), trainer.evaluate(images)
    assert a == b
    assert set(a) == {"loss", "recon", "psnr", "ssim", "mse", "psnr_input", "ssim_input", "mse_input", "n"}
    assert a["n"] == 64
    other = trainer.evaluate(images, corruption=vr.GaussianNoise(0.05))
    assert other["psnr_input"] > a["psnr_input"] + 10


def test_checkpoints_best_and_last_load_weights_only(tmp_path: Path):
    images = _data(160)
    trainer = _trainer(_model(), epochs=3, checkpoint_dir=tmp_path)
    history = trainer.fit(images[:128], images[128:])
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and best["epoch"] == history.best_epoch
    assert best["epoch"] == history.best("val_loss")["epoch"]
    assert last["version"] == vr.__version__ and last["model_spec"]["latent_dim"] == 8
    model = load_model(tmp_path / "last.pt")
    x = images[:4].float() / 255
    torch.testing.assert_close(model.reconstruct(x), trainer.model.eval().reconstruct(x))
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch):
    images = _data(64)
    trainer = _trainer(_model(), epochs=1, checkpoint_dir=tmp_path)
    trainer.fit(images)
    before = (tmp_path / "last.pt").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError, match="could not write checkpoint: OSError: disk full"):
        trainer.fit(images)
    assert (tmp_path / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_corrupted_and_malicious_checkpoints_are_refused(tmp_path: Path):
    images = _data(64)
    _trainer(_model(), epochs=1, checkpoint_dir=tmp_path).fit(images)
    good = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(tmp_path / "cut.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("this would run code",))

    with open(tmp_path / "evil.pt", "wb") as f:
        torch.save({"format": "vaerepair-checkpoint", "payload": Evil()}, f, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a vaerepair checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_mismatched_spec_and_weights_are_refused(tmp_path: Path):
    images = _data(64)
    _trainer(_model(), epochs=1, checkpoint_dir=tmp_path).fit(images)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["model_spec"]["latent_dim"] = 9
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit its model spec"):
        load_model(tmp_path / "bad.pt")


class _NaNAfter:
    """An objective that goes bad on its k-th call in training mode."""

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, 0

    def __call__(self, model, x_input, x_target, condition=None):
        result = vr.Reconstruction()(model, x_input, x_target)
        self.calls += 1
        if self.calls >= self.k:
            bad = result.terms["recon"] * float("nan")
            return ObjectiveResult(bad.mean(), {"recon": bad, "fine": result.terms["recon"]})
        return ObjectiveResult(result.loss, {"recon": result.terms["recon"], "fine": result.terms["recon"]})


def test_nan_loss_stops_training_naming_step_and_term(tmp_path: Path):
    images = _data(128)
    trainer = vr.Trainer(_model(), _NaNAfter(6), vr.GaussianNoise(0.3), epochs=3, batch_size=32,
                         progress=False, device="cpu", checkpoint_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1.*\['recon'\]"):
        trainer.fit(images)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # the last good one is kept


def test_sanity_check_explains_bad_objectives():
    images = _data(32)

    def wrong_terms(model, x_input, x_target, condition=None):
        r = vr.Reconstruction()(model, x_input, x_target)
        return ObjectiveResult(r.loss, {"recon": r.terms["recon"].mean()})

    with pytest.raises(ValueError, match=r"term 'recon' must have shape \(32,\)"):
        vr.Trainer(_model(), wrong_terms, progress=False, device="cpu", batch_size=32).fit(images)

    def raises(model, x_input, x_target, condition=None):
        raise KeyError("boom")

    with pytest.raises(RuntimeError, match="objective failed on a first batch of shape"):
        vr.Trainer(_model(), raises, progress=False, device="cpu").fit(images)


def test_early_stopping_stops(tmp_path: Path):
    images = _data(96)
    trainer = vr.Trainer(_model(), vr.Reconstruction(), vr.GaussianNoise(0.3), lr=1e-12, epochs=20,
                         batch_size=32, progress=False, device="cpu",
                         early_stopping=EarlyStopping("val_psnr", patience=2, mode="max", min_delta=1.0))
    history = trainer.fit(images[:64], images[64:])
    assert history.stopped_early and len(history) == 3


def test_bad_data_and_arguments_are_refused():
    trainer = _trainer(_model())
    with pytest.raises(ValueError, match=r"images of shape \(3, 32, 32\) but the model takes \(1, 28, 28\)"):
        trainer.fit(torch.zeros(8, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got \[0, 255\]"):
        trainer.fit(torch.zeros(8, 1, 28, 28).index_fill_(0, torch.tensor([0]), 255.0))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        trainer.fit(torch.zeros(8, 28, 28))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        _trainer(_model(), batch_size=0)
    with pytest.raises(ValueError, match="device must be"):
        _trainer(_model(), device="tpu")
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        vr.Trainer(_model(), vr.Reconstruction(), lr=-1.0)


def test_float_data_and_plain_autoencoder_without_corruption():
    images = _data(64).float() / 255
    trainer = vr.Trainer(_model(), vr.Reconstruction(), None, epochs=2, batch_size=16, progress=False, device="cpu")
    history = trainer.fit(images)
    assert history["train_loss"][1] < history["train_loss"][0]


def test_user_optimizer_factory_and_scheduler():
    images = _data(64)
    trainer = vr.Trainer(_model(), vr.Reconstruction(), vr.GaussianNoise(0.2), epochs=2, batch_size=32,
                         optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
                         scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.1),
                         progress=False, device="cpu")
    history = trainer.fit(images)
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    assert history["lr"] == pytest.approx([0.5, 0.05])


def test_nan_step_never_reaches_the_weights():
    images = _data(128)
    trainer = vr.Trainer(_model(), _NaNAfter(3), vr.GaussianNoise(0.3), epochs=1, batch_size=32,
                         progress=False, device="cpu")
    with pytest.raises(NonFiniteLossError, match="step 2"):
        trainer.fit(images)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_float64_model_trains_on_uint8_data():
    images = _data(64)
    trainer = vr.Trainer(_model().double(), vr.Reconstruction(), vr.GaussianNoise(0.3), epochs=1, batch_size=32,
                         progress=False, device="cpu")
    history = trainer.fit(images)
    assert trainer.dtype == torch.float64 and len(history) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is missing")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available here"):
        vr.Trainer(_model(), vr.Reconstruction(), device="cuda")


class _InputGradientPenalty:
    """Reconstruction plus the squared norm of d(recon)/d(input): needs autograd inside the loss."""

    needs_grad = True

    def __call__(self, model, x_input, x_target, condition=None):
        x_input = x_input.detach().requires_grad_(True)
        recon = vr.Reconstruction()(model, x_input, x_target).terms["recon"]
        (grad,) = torch.autograd.grad(recon.sum(), x_input, create_graph=True)
        penalty = grad.square().sum(dim=(1, 2, 3))
        return ObjectiveResult((recon + 1e-3 * penalty).mean(), {"recon": recon, "penalty": penalty})


def test_objectives_that_need_autograd_also_validate():
    images = _data(96)
    trainer = vr.Trainer(_model(), _InputGradientPenalty(), vr.GaussianNoise(0.3), epochs=1, batch_size=32,
                         progress=False, device="cpu")
    history = trainer.fit(images[:64], images[64:])
    assert history.last["val_penalty"] > 0
    del _InputGradientPenalty.needs_grad  # without the flag, validation runs under no_grad and cannot differentiate
    try:
        with pytest.raises(RuntimeError, match="does not require grad|element 0 of tensors"):
            vr.Trainer(_model(), _InputGradientPenalty(), vr.GaussianNoise(0.3), epochs=1, batch_size=32,
                       progress=False, device="cpu").fit(images[:64], images[64:])
    finally:
        _InputGradientPenalty.needs_grad = True


def test_fit_called_twice_continues_the_random_streams():
    images = _data(64)
    one = _trainer(_model(), epochs=2, batch_size=16)
    one.fit(images)
    two = _trainer(_model(), epochs=1, batch_size=16)
    two.fit(images)
    two.fit(images)
    for a, b in zip(one.model.parameters(), two.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # two fits of one epoch == one fit of two epochs
    assert [r["epoch"] for r in two.history] == [1, 2]


def test_default_optimizer_is_fused_adam_with_the_same_updates_and_a_fallback(monkeypatch):
    from vaerepair.training import default_optimizer

    torch.manual_seed(0)
    a = torch.nn.Linear(6, 3)
    b = torch.nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    fused, plain = default_optimizer(a.parameters(), 0.01), torch.optim.Adam(b.parameters(), lr=0.01)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    for _ in range(5):
        x = torch.randn(8, 6)
        for net, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    real = torch.optim.Adam

    def no_fused(params, lr, fused=None):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(params, lr=lr)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    assert not default_optimizer(a.parameters(), 0.01).defaults["fused"]
    assert vr.Trainer(vr.autoencoder((1, 8, 8), latent_dim=2, hidden=(4,)), vr.Reconstruction()).optimizer is not None
