"""Conditional models (report 002): conditions, the condition reaching encoder and decoder,
training through the Trainer with labels or incomplete images, inpainting metrics."""

from __future__ import annotations

import math

import pytest
import torch

import vaerepair as vr
from vaerepair import distributions as D
from vaerepair import models, nets
from vaerepair.training import load_checkpoint, load_model


def _two_class_data(n: int = 256, seed: int = 0) -> vr.ImageDataset:
    """Class 0: a bright block on the left half; class 1: on the right half, on a grey background
    (so an erased block always loses information); uint8, labelled."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    imgs = torch.full((n, 1, 28, 28), 0.25)
    top = torch.randint(0, 14, (n,), generator=g)
    for i in range(n):  # building test data, not library code
        left = 2 if labels[i] == 0 else 16
        imgs[i, 0, top[i] : top[i] + 12, left : left + 10] = 1.0
    return vr.ImageDataset((imgs * 255).to(torch.uint8), labels)


def test_label_condition_one_hot_and_errors():
    cond = models.LabelCondition(4)
    c = cond.prepare(torch.rand(3, 1, 8, 8), torch.zeros(3, 1, 8, 8, dtype=torch.bool), torch.tensor([0, 3, 1]))
    torch.testing.assert_close(c, torch.eye(4)[[0, 3, 1]])
    torch.testing.assert_close(cond(torch.tensor([0, 3, 1])), c)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\], got \[0, 4\]"):
        cond(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="needs the labels"):
        cond.prepare(torch.rand(1, 1, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.bool), None)
    with pytest.raises(ValueError, match=r"one-hot rows \(B, 4\)"):
        cond(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="n_classes"):
        models.LabelCondition(1)


def test_image_condition_holds_corrupted_pixels_and_mask():
    x = torch.rand(2, 1, 28, 28)
    out = vr.BlockErasure(size=10)(x, return_mask=True, generator=torch.Generator().manual_seed(0))
    cond = models.ImageCondition((1, 28, 28), features=16)
    c = cond.prepare(out.images, out.mask)
    assert c.shape == (2, 2, 28, 28)
    torch.testing.assert_close(c[:, :1], out.images)
    torch.testing.assert_close(c[:, 1:], out.mask.float())
    assert cond(c).shape == (2, 16)
    with pytest.raises(ValueError, match=r"shape \(B, 2, 28, 28\)"):
        cond(torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize("kind", ["label", "image"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_condition_reaches_encoder_and_decoder(kind, arch):
    torch.manual_seed(0)
    model = models.conditional_vae(kind, latent_dim=4, arch=arch, hidden=(32,) if arch == "mlp" else (4, 8),
                                   features=16, condition_features=8)
    x = torch.rand(3, 1, 28, 28)
    if kind == "label":
        c1, c2 = model.condition(torch.tensor([0, 1, 2])), model.condition(torch.tensor([5, 6, 7]))
    else:
        mask = torch.zeros_like(x, dtype=torch.bool)
        c1, c2 = model.condition.prepare(x, mask), model.condition.prepare(x, ~mask)
    # Same image, different condition: the posterior changes (encoder side) ...
    assert not torch.allclose(model.encode(x, c1).mean, model.encode(x, c2).mean)
    # ... and so does the likelihood for the same latent (decoder side).
    z = torch.randn(3, 4)
    assert not torch.allclose(model.decode(z, c1).mean, model.decode(z, c2).mean)
    # (S, B, D) latents broadcast the condition.
    zs = torch.randn(5, 3, 4)
    torch.testing.assert_close(model.decode(zs, c1).mean[2], model.decode(zs[2], c1).mean)
    loss = vr.ELBO()(model, x, x, c1).loss
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_conditional_model_requires_the_condition_and_checks_sizes():
    model = models.conditional_vae("label", latent_dim=4, hidden=(16,))
    with pytest.raises(ValueError, match="this model is conditional"):
        model.reconstruct(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"condition must have n=3 rows"):
        model.sample(3, condition=model.condition(torch.tensor([1])))
    enc = nets.MLPEncoder(hidden=(16,))
    with pytest.raises(ValueError, match=r"16 features \+ 10 condition features .* in_features=26"):
        models.LatentVariableModel(enc, D.GaussianPosterior(16, 4), nets.MLPDecoder(14, hidden=(16,)),
                                   D.Bernoulli(), D.StandardNormal(4), condition=models.LabelCondition(10))
    with pytest.raises(ValueError, match=r"build the decoder with latent_dim=14"):
        models.LatentVariableModel(enc, D.GaussianPosterior(26, 4), nets.MLPDecoder(4, hidden=(16,)),
                                   D.Bernoulli(), D.StandardNormal(4), condition=models.LabelCondition(10))


def test_spec_round_trip_and_checkpoint(tmp_path):
    model = models.conditional_vae("image", latent_dim=4, hidden=(16,), condition_features=8)
    spec = models.ModelSpec.from_dict(model.spec)
    assert spec.condition == "image" and spec.condition_features == 8
    rebuilt = models.build(spec)
    rebuilt.load_state_dict(model.state_dict())
    data = _two_class_data(64)
    trainer = vr.Trainer(model, vr.ELBO(), vr.BlockErasure(size=8), epochs=1, batch_size=32, progress=False,
                         device="cpu", checkpoint_dir=tmp_path)
    trainer.fit(data)
    loaded = load_model(tmp_path / "last.pt")
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
    assert isinstance(loaded.condition, models.ImageCondition)
    assert load_checkpoint(tmp_path / "last.pt")["model_spec"]["condition"] == "image"
    with pytest.raises(ValueError, match="unknown condition"):
        models.ModelSpec(condition="text")


def test_label_cvae_learns_to_generate_the_asked_class():
    data = _two_class_data(512)
    torch.manual_seed(0)
    model = models.conditional_vae("label", latent_dim=2, hidden=(64,), n_classes=2)
    trainer = vr.Trainer(model, vr.ELBO(), None, epochs=15, batch_size=64, lr=3e-3, progress=False, device="cpu")
    trainer.fit(data)
    images = data.float_images()
    class_means = torch.stack([images[data.labels == k].mean(dim=0) for k in (0, 1)])
    gen = torch.Generator().manual_seed(0)
    for k in (0, 1):
        samples = model.sample(64, condition=model.condition(torch.full((64,), k)), generator=gen)
        dist = ((samples.mean(dim=0, keepdim=True) - class_means) ** 2).flatten(1).sum(dim=1)
        assert dist.argmin().item() == k, f"samples asked for class {k} look like class {dist.argmin().item()}"


def test_label_condition_needs_labelled_data():
    model = models.conditional_vae("label", latent_dim=2, hidden=(16,))
    trainer = vr.Trainer(model, vr.ELBO(), None, epochs=1, progress=False, device="cpu")
    with pytest.raises(TypeError, match="must be an ImageDataset with labels"):
        trainer.fit(torch.rand(8, 1, 28, 28))
    with pytest.raises(ValueError, match="has no labels"):
        trainer.fit(vr.ImageDataset(torch.zeros(8, 1, 28, 28, dtype=torch.uint8)))


def test_psnr_on_a_region_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    mask = torch.rand(3, 1, 8, 8, generator=g) > 0.5
    mask[2] = False
    values = vr.psnr(x, y, reduction="none", mask=mask)
    for b in range(2):
        mse = ((x[b] - y[b])[mask[b]] ** 2).mean().item()
        assert values[b].item() == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    assert values[2].isnan()  # an empty region has no PSNR
    assert vr.psnr(x, y, mask=mask).item() == pytest.approx(values[:2].mean().item(), rel=1e-6)
    torch.testing.assert_close(vr.psnr(x, y, mask=torch.ones_like(mask)), vr.psnr(x, y))


def test_inpainting_cvae_reports_missing_region_psnr_and_beats_the_hole():
    data = _two_class_data(384)
    torch.manual_seed(0)
    model = models.conditional_vae("image", latent_dim=4, hidden=(128,), condition_features=64,
                                   likelihood="gaussian", sigma=0.1, link="sigmoid")
    trainer = vr.Trainer(model, vr.ELBO(), vr.BlockErasure(size=12), epochs=8, batch_size=32, lr=2e-3,
                         progress=False, device="cpu")
    history = trainer.fit(data[:320], data[320:])
    assert "val_psnr_missing" in history.keys() and "val_psnr_missing_input" in history.keys()
    result = trainer.evaluate(data[320:])
    # Only the region differs, so the whole-image PSNR is higher than the region's for the input.
    assert result["psnr_input"] > result["psnr_missing_input"]
    assert result["psnr_missing"] > result["psnr_missing_input"] + 3.0  # the hole is filled with something useful
    # Gaussian noise touches every pixel: no separate missing-region number.
    assert "psnr_missing" not in trainer.evaluate(data[320:], corruption=vr.GaussianNoise(0.2))
