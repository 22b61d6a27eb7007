"""Mixed precision (CPU autocast bf16; fp16 with a gradient scaler) and torch.compile as Trainer options."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import vaerepair as vr
from vaerepair.training import load_checkpoint

DATA = torch.rand(96, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def _fit(precision=None, compile=False, objective=None, model=None, epochs=2, **kw):
    torch.manual_seed(0)
    model = model or vr.variational_autoencoder((1, 12, 12), latent_dim=3, hidden=(32,))
    trainer = vr.Trainer(model, objective or vr.ELBO(), vr.GaussianNoise(0.2), epochs=epochs, batch_size=32,
                         progress=False, precision=precision, compile=compile, **kw)
    return model, trainer, trainer.fit(DATA)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_on_cpu_trains_close_to_full_precision(precision: str) -> None:
    _, _, full = _fit()
    model, trainer, mixed = _fit(precision)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a cast of the weights
    assert all(math.isfinite(v) for v in mixed["train_loss"])
    assert mixed["train_loss"][-1] < mixed["train_loss"][0]
    assert mixed["train_loss"][-1] == pytest.approx(full["train_loss"][-1], rel=0.03)
    assert trainer.scaler.is_enabled() == (precision == "fp16")


def test_no_precision_computes_in_the_model_dtype_even_inside_a_callers_autocast() -> None:
    """precision=None spares the disabled autocast only where autocast is already off; inside a caller's
    bf16 region it still turns autocast off, so the step computes in float32 as documented."""
    seen: list[torch.dtype] = []
    model = vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(32,), likelihood="gaussian", sigma=0.3)
    model.decoder.register_forward_hook(lambda module, args, out: seen.append(out.dtype) if module.training else None)
    trainer = vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(0.2), epochs=1, batch_size=32, progress=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trainer.fit(DATA)
    assert seen[-3:] == [torch.float32] * 3  # the epoch's 3 steps (96 images, batch 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the control: the same step under the caller's autocast
        assert model.decoder(torch.zeros(2, 4)).dtype == torch.bfloat16


def test_fp16_scaler_state_is_checkpointed_and_restored(tmp_path: Path) -> None:
    _, trainer, _ = _fit("fp16", checkpoint_dir=tmp_path)
    trainer.scaler.update(new_scale=123.0)  # a scale a fresh scaler would not have
    trainer.checkpointer.save(trainer, "last.pt")
    assert load_checkpoint(tmp_path / "last.pt")["scaler"]["scale"] == 123.0
    torch.manual_seed(1)
    model = vr.variational_autoencoder((1, 12, 12), latent_dim=3, hidden=(32,))
    resumed = vr.Trainer(model, vr.ELBO(), vr.GaussianNoise(0.2), epochs=2, batch_size=32, progress=False,
                         precision="fp16")
    resumed.fit(DATA, resume=tmp_path / "last.pt")  # nothing left to train: only the state comes back
    assert resumed.scaler.get_scale() == 123.0


def test_compiled_step_matches_eager() -> None:
    def dae() -> torch.nn.Module:
        torch.manual_seed(0)
        return vr.autoencoder((1, 12, 12), latent_dim=4, hidden=(32,), likelihood="gaussian", sigma=0.3)

    eager, _, h_eager = _fit(objective=vr.Reconstruction(), model=dae())
    compiled, trainer, h_compiled = _fit(objective=vr.Reconstruction(), model=dae(), compile="aot_eager")
    assert trainer.forward is not trainer.step_module  # the compiled step
    assert h_compiled["train_loss"] == pytest.approx(h_eager["train_loss"], rel=1e-4)
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        vr.Trainer(vr.autoencoder((1, 12, 12)), vr.Reconstruction(), precision="fp8")


@pytest.mark.parametrize("flows", [0, 2])
def test_a_compiled_vae_trains_through_a_smaller_last_batch(flows: int) -> None:
    # 80 images in batches of 32: the last has 16; before, the compiled step's Gaussian draw failed there
    # (randn with generator=None cannot take a varying batch size under torch.compile)
    torch.manual_seed(0)
    model = vr.flow_vae(flows, (1, 12, 12), latent_dim=3, hidden=(32,))
    trainer = vr.Trainer(model, vr.ELBO(), vr.GaussianNoise(0.2), epochs=2, batch_size=32, progress=False,
                         compile="aot_eager")
    history = trainer.fit(DATA[:80])
    assert trainer.forward is not trainer.step_module
    assert all(math.isfinite(v) for v in history["train_loss"])
