"""Pictures: the repair grid's layout and the loss-curve PNG."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from vaerepair.plots import plot_history, save_repair_grid
from vaerepair.training import History


def _read(path: str) -> torch.Tensor:
    with Image.open(path) as img:
        return pil_to_tensor(img)


def test_repair_grid_rows_are_clean_corrupted_repaired(tmp_path):
    clean = torch.zeros(5, 1, 28, 28)
    corrupted = torch.full((5, 1, 28, 28), 0.5)
    repaired = torch.ones(5, 1, 28, 28)
    path = save_repair_grid(tmp_path / "g.png", clean, corrupted, repaired, n=4, scale=1)
    grid = _read(str(path)).float() / 255
    assert grid.shape[-2:] == (3 * 28 + 4 * 2, 4 * 28 + 5 * 2)
    rows = [grid[0, 2 + r * 30 + 14, 2 + 14].item() for r in range(3)]
    assert rows == pytest.approx([0.0, 0.5, 1.0], abs=1 / 255)
    big = _read(str(save_repair_grid(tmp_path / "big.png", clean, corrupted, repaired, n=4)))
    assert big.shape[-2:] == (3 * 112 + 4 * 2, 4 * 112 + 5 * 2)  # 28 px scaled x4 to reach 96 px


def test_plot_history_writes_png(tmp_path):
    h = History([{"epoch": 1, "train_loss": 3.0, "val_loss": 3.5, "val_psnr": 15.0, "val_psnr_input": 6.0},
                 {"epoch": 2, "train_loss": 2.0, "val_loss": 2.5, "val_psnr": 17.0, "val_psnr_input": 6.0}])
    path = plot_history(h, tmp_path / "loss.png")
    img = _read(str(path))
    assert img.shape[-1] > img.shape[-2] > 100
    with pytest.raises(ValueError, match="none of"):
        plot_history(h, tmp_path / "x.png", metrics=("nope",))


def test_latent_projection_is_the_top_two_principal_components():
    from vaerepair.plots import latent_projection

    g = torch.Generator().manual_seed(0)
    codes = torch.randn(500, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    points, axis = latent_projection(codes)
    eigvals = torch.linalg.eigvalsh(torch.cov(codes.T)).flip(0)
    torch.testing.assert_close(torch.cov(points.T), torch.diag(eigvals[:2]), atol=1e-8, rtol=1e-8)
    two = torch.randn(10, 2, dtype=torch.float64)
    assert latent_projection(two)[1] == "z" and torch.equal(latent_projection(two)[0], two)
    assert axis == "PC"


def test_samples_grid_and_latent_scatter(tmp_path):
    import vaerepair as vr
    from vaerepair.plots import plot_latent_scatter, save_samples_grid

    model = vr.variational_autoencoder(latent_dim=3, hidden=(16,))
    grid = _read(str(save_samples_grid(tmp_path / "s.png", model, n=16)))
    assert grid.shape[-2:] == (2 * 84 + 3 * 2, 8 * 84 + 9 * 2)  # 28 px x3, 8 per row
    path = plot_latent_scatter(tmp_path / "z.png", model, torch.rand(50, 1, 28, 28), torch.arange(50) % 10)
    assert _read(str(path)).shape[-1] > 300
    with pytest.raises(ValueError, match="sampling needs a prior"):
        save_samples_grid(tmp_path / "x.png", vr.autoencoder())


def test_image_rows_keep_their_order_and_density_plot(tmp_path):
    from vaerepair.plots import plot_density_2d, save_image_rows

    rows = {f"row {i}": torch.full((4, 1, 28, 28), i / 3) for i in range(4)}
    img = _read(str(save_image_rows(tmp_path / "rows.png", rows, n=4, scale=1)))
    assert img.shape[-2:] == (4 * 28 + 5 * 2, 4 * 28 + 5 * 2)
    for i in range(4):  # each row's grey level, top to bottom
        y = 2 + i * 30 + 14
        assert abs(int(img[0, y, 16]) - round(255 * i / 3)) <= 1
    with pytest.raises(ValueError, match="rows is empty"):
        save_image_rows(tmp_path / "none.png", {})
    path = plot_density_2d(tmp_path / "d.png", {"a": lambda z: -(z**2).sum(-1), "b": lambda z: -z.abs().sum(-1)})
    assert _read(str(path)).shape[-1] > 400

