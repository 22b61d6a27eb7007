"""Tiled repair: coverage, blending weights, equality with the untiled repair, models of fixed size."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import vaerepair as vr
from vaerepair import memory
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



_FAULTS = """
import contextlib, resource, sys, torch
from vaerepair import tiling
if sys.argv[1] == "off":
    tiling.keep_freed_memory = contextlib.nullcontext
x = torch.rand(1, 1, 256, 512)

def big_buffers(tiles):  # allocates, touches and frees a 48 MB buffer per batch of tiles, as a network's layers do
    return tiles + torch.ones(12 * 2**20)[:1].sum() - 1

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
tiling.repair_tiled(big_buffers, x, tile=64, overlap=16, batch_size=1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _minor_faults(keep: bool) -> int:
    """Minor page faults of a 32-tile repair in a fresh process (the allocator's state is process-wide)."""
    out = subprocess.run([sys.executable, "-c", _FAULTS, "on" if keep else "off"], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(memory._LIBC is None, reason="glibc's allocator only; elsewhere keep_freed_memory does nothing")
def test_tiled_repair_reuses_its_freed_buffers_instead_of_faulting_pages_in() -> None:
    """glibc gave every large buffer fresh pages (mmap) and returned them on free: a 4000x3000 repair spent
    76 of 171 s in the kernel on ~25 million page faults. The tiling loop keeps freed memory for reuse."""
    fresh, kept = _minor_faults(keep=False), _minor_faults(keep=True)
    assert fresh > 32 * 12 * 2**20 * 4 // 4096 // 2, (fresh, kept)  # without: most pages of all 32 buffers fault in
    assert kept < fresh / 4, (fresh, kept)  # with: about one buffer's pages (12 850 against 676 457 here)


def test_keep_freed_memory_nests() -> None:
    with memory.keep_freed_memory():
        with memory.keep_freed_memory():
            assert memory._depth == 2
        assert memory._depth == 1
    assert memory._depth == 0


class _RecordingLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad, 0))
        return 1


def test_repair_and_sample_repairs_keep_freed_memory_for_their_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _RecordingLibc()
    monkeypatch.setattr(memory, "_LIBC", libc)
    model = vr.models.build(vr.models.ModelSpec(kind="dae", image_shape=(1, None, None), arch="unet",
                                                hidden=(8, 16), latent_dim=4))
    model.repair(torch.rand(1, 1, 40, 40), tile=24)  # repair calls itself per batch of tiles: one block
    assert libc.calls == [("mallopt", -4, 0), ("mallopt", -1, 2**31 - 1), ("mallopt", -4, 65536),
                          ("mallopt", -1, 128 * 1024), ("malloc_trim", 0, 0)]
    vae = vr.ladder_vae(widths=(8,), latent_channels=2, sigma=0.3)
    libc.calls.clear()
    vae.sample_repairs(torch.rand(2, 1, 16, 16), 3)
    assert [c[0] for c in libc.calls] == ["mallopt", "mallopt", "mallopt", "mallopt", "malloc_trim"]
