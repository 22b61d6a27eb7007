"""Tiled repair: coverage, blending weights, equality with the untiled repair, models of fixed size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vaerepair as vr
from vaerepair.tiling import blend_weights, repair_tiled, tile_starts


def _conv_net(layers: int = 4, seed: int = 0) -> nn.Module:
    """A fully convolutional net of ``layers`` 3x3 convolutions: receptive radius ``layers``."""
    torch.manual_seed(seed)
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Conv2d(1 if i == 0 else 8, 1 if i == layers - 1 else 8, 3, padding=1)]
        if i < layers - 1:
            blocks.append(nn.Tanh())
    return nn.Sequential(*blocks).eval()


@pytest.mark.parametrize(("length", "tile", "overlap"), [(1024, 128, 32), (100, 28, 8), (28, 28, 8), (10, 28, 8),
                                                         (777, 64, 0)])
def test_tiles_cover_the_image_with_the_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_weights_are_zero_at_inner_edges_and_one_inside() -> None:
    w = blend_weights(64, overlap=16, margin=4, first=False, last=False)
    assert torch.all(w[:4] == 0) and torch.all(w[-4:] == 0) and torch.all(w[12:52] == 1)
    assert torch.all(w[4:12] > 0) and torch.all(torch.diff(w[:12]) >= 0)
    edge = blend_weights(64, overlap=16, margin=4, first=True, last=True)
    assert torch.all(edge == 1)


def test_identity_repair_gives_back_the_image() -> None:
    x = torch.rand(2, 3, 97, 131)
    torch.testing.assert_close(repair_tiled(lambda t: t, x, tile=32, overlap=12), x)


def test_tiled_equals_untiled_on_a_1024_image() -> None:
    net = _conv_net(layers=4)
    x = torch.rand(1, 1, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = net(x)
        tiled = repair_tiled(net, x, tile=128, overlap=32, margin=8)  # margin 8 >= receptive radius 4
        careless = repair_tiled(net, x, tile=128, overlap=32, margin=0)  # weight where the tiles are wrong
    assert float((tiled - whole).abs().max()) < 1e-5  # the stated tolerance: float32 rounding
    assert float((careless - whole).abs().max()) > 1e-3  # without the margin the borders leak in


def test_odd_sizes_and_images_smaller_than_the_tile() -> None:
    net = _conv_net(layers=3)
    for shape in [(1, 1, 37, 53), (2, 1, 321, 481), (1, 1, 130, 20)]:
        x = torch.rand(shape)
        with torch.no_grad():
            assert float((repair_tiled(net, x, tile=64, overlap=16, margin=4) - net(x)).abs().max()) < 1e-5


def test_a_model_of_fixed_size_repairs_a_larger_image_tile_by_tile() -> None:
    torch.manual_seed(0)
    model = vr.autoencoder((1, 28, 28), latent_dim=8, hidden=(32,))
    x = torch.rand(1, 1, 84, 56)
    tiled = model.repair(x, tile=(28, 28), overlap=0)  # 3 x 2 tiles, no overlap: each tile's own repair
    for top in (0, 28, 56):
        for left in (0, 28):
            part = x[..., top : top + 28, left : left + 28]
            torch.testing.assert_close(tiled[..., top : top + 28, left : left + 28], model.repair(part))
    blended = model.repair(torch.rand(2, 1, 100, 90), tile=(28, 28), overlap=8)
    assert blended.shape == (2, 1, 100, 90) and torch.isfinite(blended).all()
    with pytest.raises(ValueError, match="expected x of size 28x28"):
        model.repair(torch.rand(1, 1, 100, 90), tile=(32, 32))


def test_bad_tiling_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap < tile"):
        repair_tiled(lambda t: t, torch.rand(1, 1, 50, 50), tile=16, overlap=16)
    with pytest.raises(ValueError, match="2 \\* margin <= overlap"):
        repair_tiled(lambda t: t, torch.rand(1, 1, 50, 50), tile=16, overlap=8, margin=5)
    with pytest.raises(ValueError, match="expected"):
        repair_tiled(lambda t: t[..., :-1], torch.rand(1, 1, 50, 50), tile=16, overlap=4)


def test_a_list_of_images_of_different_sizes() -> None:
    torch.manual_seed(0)
    model = vr.autoencoder((1, 28, 28), latent_dim=8, hidden=(32,))
    images = [torch.rand(1, 28, 28), torch.rand(1, 37, 53), torch.rand(1, 321, 481)]
    repaired = model.repair(images, tile=(28, 28), overlap=8)
    assert [tuple(r.shape) for r in repaired] == [(1, 28, 28), (1, 37, 53), (1, 321, 481)]
    torch.testing.assert_close(repaired[0], model.repair(images[0][None])[0])
    torch.testing.assert_close(repaired[2], model.repair(images[2][None], tile=(28, 28), overlap=8)[0])
