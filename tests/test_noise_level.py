"""The blind noise-level estimator against noise of known sigma, and its median against the images' edges."""

from __future__ import annotations

import pytest
import torch

import vaerepair as vr


@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.3])
def test_the_estimate_of_white_noise_on_a_flat_image_is_its_sigma(sigma: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = 0.5 + sigma * torch.randn(3, 1, 256, 256, generator=g, dtype=torch.float64)
    estimate = vr.estimate_noise_sigma(x)
    assert estimate.shape == (3,) and estimate.dtype == torch.float64
    # the median of 16384 |N(0, s^2)| draws: its relative standard error is about 1.17 / sqrt(16384) = 0.9 %
    assert torch.allclose(estimate, torch.full((3,), sigma, dtype=torch.float64), rtol=0.04)


def test_edges_do_not_move_the_median_and_a_clean_smooth_image_has_no_noise() -> None:
    g = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0, 1, 128, dtype=torch.float64).view(1, 1, 1, 128).expand(1, 1, 128, 128).clone()
    assert float(vr.estimate_noise_sigma(ramp)) < 1e-12  # a linear ramp: its Haar diagonal band is exactly 0
    blocks = ramp.clone()
    blocks[..., 40:90, 33:97] += 0.4  # a few strong edges
    noisy = blocks + 0.05 * torch.randn(blocks.shape, generator=g, dtype=torch.float64)
    assert float(vr.estimate_noise_sigma(noisy)) == pytest.approx(0.05, rel=0.06)


def test_channels_and_odd_sizes() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 65, 33, generator=g, dtype=torch.float64) * 0 + 0.5
    x = x + torch.tensor([0.05, 0.06, 0.05], dtype=torch.float64).view(1, 3, 1, 1) * torch.randn(
        x.shape, generator=g, dtype=torch.float64)
    assert vr.estimate_noise_sigma(x).tolist() == pytest.approx([0.05, 0.05], rel=0.1)  # the channels' median
    with pytest.raises(ValueError, match="at least 2x2 pixels"):
        vr.estimate_noise_sigma(torch.rand(1, 1, 1, 8))
    with pytest.raises(ValueError, match="non-finite"):
        vr.estimate_noise_sigma(torch.full((1, 1, 4, 4), float("nan")))


def test_the_self_ensemble_is_the_mean_of_the_eight_oriented_repairs_mapped_back() -> None:
    """Oracle: the same average written out with the dihedral group's eight maps."""
    torch.manual_seed(0)
    model = vr.models.build({"kind": "dae", "image_shape": [1, 0, 0], "arch": "unet", "hidden": [4, 8],
                             "likelihood": "gaussian", "sigma": 0.1})
    x = torch.rand(2, 1, 12, 20)
    maps = [(lambda t, k=k, f=f: torch.rot90(t, k, (-2, -1)).flip(-1) if f else torch.rot90(t, k, (-2, -1)),
             lambda t, k=k, f=f: torch.rot90(t.flip(-1) if f else t, -k, (-2, -1)))
            for k in range(4) for f in (False, True)]
    oracle = sum(back(model.repair(there(x))) for there, back in maps) / 8
    assert torch.allclose(model.repair(x, ensemble=8), oracle, atol=1e-6)
    assert not torch.allclose(model.repair(x, ensemble=8), model.repair(x), atol=1e-4)  # it does something
    # invariance: repairing a flipped image gives the flipped repair
    assert torch.allclose(model.repair(x.flip(-1), ensemble=8), model.repair(x, ensemble=8).flip(-1), atol=1e-5)
    assert [r.shape for r in model.repair([x[0], x[1, :, :8]], ensemble=8)] == [(1, 12, 20), (1, 8, 20)]


def test_the_self_ensemble_refuses_what_it_cannot_do() -> None:
    fixed = vr.autoencoder((1, 28, 28), latent_dim=4, hidden=(16,))
    for bad in (0, 2, 4, True, "8"):
        with pytest.raises(ValueError, match="ensemble must be 1"):
            fixed.repair(torch.rand(1, 1, 28, 28), ensemble=bad)
    with pytest.raises(ValueError, match="no return_std"):
        vr.ladder_vae(widths=(4, 4), latent_channels=2).repair(torch.rand(1, 1, 8, 8), ensemble=8, return_std=True,
                                                              n_samples=2)
    assert fixed.repair(torch.rand(2, 1, 28, 28), ensemble=8).shape == (2, 1, 28, 28)  # square: fine
