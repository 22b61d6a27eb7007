"""Photographs of any size: the U-Net denoiser, its spatial code, aligned tiling, the protocol, shipped models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import vaerepair as vr
from vaerepair.data import ImageFolder
from vaerepair.distributions import SpatialPointMassPosterior
from vaerepair.models import ModelSpec, build
from vaerepair.nets import ConvHead, UNetEncoder
from vaerepair.nets.unet import pad_to_multiple
from vaerepair.protocol import evaluate_protocol, protocol_noise, psnr_8bit, to_8bit
from vaerepair.testing import check_objective
from vaerepair.tiling import repair_tiled, tile_starts
from vaerepair.training import PatchSource
from vaerepair.zoo import WEIGHTS_DIR, check_noise_range

from .test_folder import _shared


def small_unet(channels: int = 1) -> vr.LatentVariableModel:
    torch.manual_seed(0)
    return build(ModelSpec(kind="dae", image_shape=(channels, 0, 0), arch="unet", hidden=(8, 16, 16), latent_dim=8,
                           likelihood="gaussian"))


@pytest.mark.parametrize("size", [(37, 53), (1, 1), (3, 2), (4, 8), (321, 481)])
@pytest.mark.parametrize("channels", [1, 3])
def test_unet_takes_any_size(size, channels, device, dtype):
    model = small_unet(channels).to(device, dtype)
    x = torch.rand(2, channels, *size, device=device, dtype=dtype)
    assert model.reconstruct(x).shape == x.shape
    assert model.image_shape == (channels, None, None) and model.fully_convolutional


def test_padding_mirrors_and_is_cropped_away():
    x = torch.arange(15.0).view(1, 1, 3, 5)
    padded, size = pad_to_multiple(x, 4)
    assert size == (3, 5) and padded.shape == (1, 1, 4, 8)
    torch.testing.assert_close(padded[..., 3, :5], x[..., 1, :])  # reflect: row 3 mirrors row 1
    torch.testing.assert_close(padded[..., :3, 5:], x[..., :, [3, 2, 1]])
    tiny, _ = pad_to_multiple(torch.ones(1, 1, 1, 1), 4)  # too small to mirror: the edge repeated
    assert tiny.shape == (1, 1, 4, 4) and bool((tiny == 1).all())


def test_spatial_code_and_samples_decode_per_pixel():
    model = small_unet()
    x = torch.rand(3, 1, 12, 20)
    q = model.encode(x)
    assert q.mean.shape == (3, 8, 12, 20) and q.rsample(4).shape == (4, 3, 8, 12, 20)
    assert model.decode(q.rsample(4)).mean.shape == (4, 3, 1, 12, 20)
    torch.testing.assert_close(model.decode(q.rsample(2)).mean[1], model.decode(q.mean).mean)


def test_receptive_radius_bounds_the_true_dependence():
    model = small_unet().double()
    radius = model.receptive_radius
    assert radius is not None
    for centre in [(40, 40), (41, 43)]:  # both phases of the downsampling grid
        x = torch.rand(1, 1, 96, 96, dtype=torch.float64, requires_grad=True)
        model.reconstruct(x)[0, 0, centre[0], centre[1]].backward()
        rows, cols = (x.grad[0, 0] != 0).nonzero().unbind(1)
        reach = max(int((rows - centre[0]).abs().max()), int((cols - centre[1]).abs().max()))
        assert 10 < reach <= radius  # it sees far (the coarse levels), never beyond the stated radius


def test_mismatched_parts_and_options_are_refused():
    with pytest.raises(ValueError, match="in_channels=8"):
        vr.LatentVariableModel(UNetEncoder(1, (8, 16)), SpatialPointMassPosterior(4, 3), ConvHead(3),
                               vr.distributions.Gaussian())
    with pytest.raises(ValueError, match="latent_channels=3"):
        vr.LatentVariableModel(UNetEncoder(1, (8, 16)), SpatialPointMassPosterior(8, 3), ConvHead(5),
                               vr.distributions.Gaussian())
    with pytest.raises(ValueError, match="without flows"):
        ModelSpec(kind="vae", arch="unet", n_flows=2)
    with pytest.raises(ValueError, match="one image size"):
        ModelSpec(arch="conv", image_shape=(1, None, None))
    with pytest.raises(ValueError, match="channels must be an integer"):
        UNetEncoder(0)


def test_spec_records_channels_not_size():
    model = small_unet(3)
    spec = ModelSpec.from_dict(model.spec)
    assert spec.image_shape == (3, None, None)
    rebuilt = build(model.spec)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 19, 23)
    torch.testing.assert_close(rebuilt.reconstruct(x), model.reconstruct(x))


def test_objectives_compose_with_the_unet():
    report = check_objective(vr.Reconstruction(), models=[lambda dtype: small_unet().to(dtype)])
    assert report.ok, report.failures


@pytest.mark.parametrize("length,tile,overlap,align", [(1024, 256, 68, 4), (481, 128, 40, 4), (321, 100, 30, 8),
                                                       (50, 16, 4, 1), (100, 100, 10, 4)])
def test_aligned_tile_starts_cover_and_overlap(length, tile, overlap, align):
    starts = tile_starts(length, tile, overlap, align)
    assert all(s % align == 0 for s in starts) and starts == sorted(set(starts))
    ends = [s + tile for s in starts[:-1]] + [length]
    assert ends[-1] - starts[-1] < tile + align  # the last tile runs to the border
    assert all(e - s >= overlap for s, e in zip(starts[1:], ends[:-1], strict=True))


def test_tiled_repair_equals_untiled_on_1024_pixels(device, dtype):
    model = small_unet().to(device, dtype)
    x = torch.rand(1, 1, 1024, 1024, device=device, dtype=dtype)
    full = model.repair(x)
    tiled = model.repair(x, tile=256)
    # float rounding only: the tiles see what the whole image sees
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert float((tiled - full).abs().max()) < tolerance
    careless = repair_tiled(model.repair, x, 256, overlap=16, margin=0)  # no margin, tiles off the grid: seams
    assert float((careless - full).abs().max()) > 100 * float((tiled - full).abs().max())


def test_tiled_repair_of_a_list_of_sizes_and_colour():
    model = small_unet(3)
    images = [torch.rand(3, 250, 197), torch.rand(3, 40, 41)]
    for image, out in zip(images, model.repair(images, tile=128), strict=True):
        torch.testing.assert_close(out, model.repair(image[None])[0], atol=1e-5, rtol=0)
    small_tiles = model.repair(images[0][None], tile=48)  # below 4 r + 32: half-tile overlaps, blended
    assert small_tiles.shape == images[0][None].shape and bool(torch.isfinite(small_tiles).all())


def test_protocol_noise_is_the_published_draw():
    clean = torch.randint(0, 256, (1, 17, 23), dtype=torch.uint8)
    np.random.seed(0)  # noqa: NPY002 (the published scripts' legacy global generator is the oracle)
    reference = clean[0].numpy() / 255.0 + np.random.normal(0, 25 / 255, (17, 23))  # noqa: NPY002
    torch.testing.assert_close(protocol_noise(clean, 25)[0], torch.from_numpy(reference).float())
    assert float(protocol_noise(clean, 50).min()) < 0  # unclipped
    colour = torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8)
    np.random.seed(0)  # noqa: NPY002 (the published scripts' legacy global generator is the oracle)
    reference = colour.numpy() / 255.0 + np.random.normal(0, 15 / 255, (3, 5, 4))  # noqa: NPY002
    torch.testing.assert_close(protocol_noise(colour, 15), torch.from_numpy(reference).float())
    with pytest.raises(ValueError, match="8-bit"):
        protocol_noise(clean.float(), 25)


def test_8bit_rounding_and_psnr():
    assert to_8bit(torch.tensor([-0.2, 0.5 / 255, 1.49 / 255, 0.5, 1.7])).tolist() == [0, 0, 1, 128, 255]
    a = torch.zeros(1, 4, 4, dtype=torch.uint8)
    b = a.clone()
    b[0, 0, 0] = 16
    assert psnr_8bit(b, a) == pytest.approx(10 * math.log10(255**2 / (16**2 / 16)))
    assert psnr_8bit(a, a) == math.inf
    images = [torch.randint(0, 256, (1, 16, 16), dtype=torch.uint8) for _ in range(2)]
    identity = evaluate_protocol(lambda x: x, images, 25)
    assert identity["psnr"] == pytest.approx(identity["psnr_input"])  # repairing nothing gives the noisy PSNR
    assert evaluate_protocol(lambda x: x, images, 0)["psnr"] == math.inf


def test_patch_training_learns_on_photos_of_different_sizes():
    torch.manual_seed(0)
    base = torch.linspace(0, 1, 64)
    photos = [(base[:h, None] * base[None, :w]).unsqueeze(0) for h, w in [(40, 64), (64, 48), (33, 35)]]
    model = small_unet()
    trainer = vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise((0.0, 0.2)), epochs=4, batch_size=8,
                         lr=3e-3, device="cpu", progress=False, seed=0)
    history = trainer.fit(PatchSource(photos, 32, patches_per_epoch=64, augment=True), torch.stack(
        [p[:, :32, :32] for p in photos]))
    records = history.records
    assert records[-1]["val_psnr"] > records[0]["val_psnr"] and records[-1]["val_psnr"] > records[-1]["val_psnr_input"]


def test_validation_at_full_size_on_photos_of_several_sizes():
    model = small_unet()
    photos = [torch.rand(1, 30, 41), torch.rand(1, 24, 24), torch.rand(1, 30, 41)]
    trainer = vr.Trainer(model, vr.Reconstruction(), vr.GaussianNoise(0.1), epochs=1, device="cpu", progress=False)
    fixed = trainer.validator.fix(photos, 7, trainer.corruption, "val")
    assert [f.clean.shape for f in fixed] == [(2, 1, 30, 41), (1, 1, 24, 24)]
    combined = trainer.validator.repair_quality(fixed)
    assert combined["n"] == 3
    expected = (2 * trainer.validator.repair_quality(fixed[0])["psnr"] + trainer.validator.repair_quality(
        fixed[1])["psnr"]) / 3
    assert combined["psnr"] == pytest.approx(expected)
    history = trainer.fit(PatchSource(photos, 16, patches_per_epoch=16), val=photos)
    assert math.isfinite(history.records[-1]["val_psnr"])


# ---------------------------------------------------------------- shipped models


def test_shipped_models_are_listed_small_and_weights_only():
    shipped = {m.name: m for m in vr.pretrained()}
    assert set(shipped) == {"grey", "grey-sigma", "colour"}
    assert shipped["grey"].channels == shipped["grey-sigma"].channels == 1 and shipped["colour"].channels == 3
    assert [name for name, info in shipped.items() if info.takes_sigma] == ["grey-sigma"]
    for info in shipped.values():
        assert info.path.parent == WEIGHTS_DIR and info.path.stat().st_size <= 5e6
        assert info.sigma_range == pytest.approx((0.0, 55 / 255))
        torch.load(info.path, weights_only=True)  # tensors and plain values only
    with pytest.raises(ValueError, match="no pretrained model 'gray'; shipped: colour, grey, grey-sigma"):
        vr.pretrained("gray")


@pytest.mark.parametrize("name,channels", [("grey", 1), ("grey-sigma", 1), ("colour", 3)])
def test_shipped_models_repair_a_321x481_photo(name, channels):
    model = vr.pretrained(name)
    clean = torch.linspace(0, 1, 481).expand(channels, 321, 481).clone()
    clean[:, 100:200, 150:300] = 0.8  # a flat square on a ramp
    noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    told = torch.full((1,), 25 / 255) if model.condition is not None else None  # the non-blind model: sigma given
    repaired = model.repair(noisy[None], told)[0]
    assert repaired.shape == clean.shape
    assert float(vr.psnr(repaired.clamp(0, 1)[None], clean[None])) > float(vr.psnr(noisy[None], clean[None])) + 8
    with pytest.raises(ValueError, match=f"{channels} channel"):
        model.repair(torch.rand(1, 4 - channels, 20, 20), told)


def test_shipped_grey_model_on_set12_images():
    set12 = ImageFolder(_shared("set12"), mode="L").subset([0, 4])
    model = vr.pretrained("grey")
    result = evaluate_protocol(model.repair, list(set12), 25)
    assert result["psnr"] > result["psnr_input"] + 7  # 20.4 dB noisy; BM3D gives about 30 on Set12


def test_shipped_non_blind_model_told_sigma_on_set12_images():
    """grey-sigma told the protocol's sigma, and estimating it, on two Set12 images: both repair, and telling it
    the true level is not worse than its own estimate by more than rounding."""
    set12 = list(ImageFolder(_shared("set12"), mode="L").subset([0, 4]))
    model = vr.pretrained("grey-sigma")
    told = evaluate_protocol(lambda x: model.repair(x, torch.full((len(x),), 25 / 255)), set12, 25)
    estimated = evaluate_protocol(lambda x: model.repair(x, model.condition.prepare(x)), set12, 25)
    assert told["psnr"] > told["psnr_input"] + 7
    assert told["psnr"] > estimated["psnr"] - 0.05


def test_a_noise_level_outside_the_training_range_warns():
    model = vr.pretrained("grey")
    check_noise_range(model, (25 / 255, 25 / 255))  # inside: silent
    with pytest.warns(UserWarning, match="trained on Gaussian noise with sigma in \\[0, 55\\]/255"):
        check_noise_range(model, (75 / 255, 75 / 255))


def test_load_reads_a_folder_of_photos(tmp_path):
    from PIL import Image

    Image.new("L", (7, 5), 128).save(tmp_path / "a.png")
    Image.new("RGB", (4, 6), (10, 20, 30)).save(tmp_path / "b.jpg")
    for name in (tmp_path, str(tmp_path)):
        photos = vr.data.load(name, mode="L")
        assert isinstance(photos, ImageFolder) and [tuple(im.shape) for im in photos] == [(1, 5, 7), (1, 6, 4)]
    with pytest.raises(ValueError, match="unknown dataset 'no-such-thing'"):
        vr.data.load("no-such-thing")


def test_patches_stream_from_a_lazy_folder_reproducibly(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 33), (25, 60)]):
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    lazy = ImageFolder(tmp_path, lazy=True)
    patches = vr.data.FolderPatches(lazy, 16, patches_per_image=5, augment=True, seed=3)
    assert len(patches) == 10
    again = vr.data.FolderPatches(ImageFolder(tmp_path), 16, patches_per_image=5, augment=True, seed=3)
    for k in range(10):
        torch.testing.assert_close(patches[k], again[k])  # the same item from disk or memory, in any process
        image = lazy[k % 2].float()
        windows = image.unfold(1, 16, 1).unfold(2, 16, 1).reshape(-1, 16, 16)  # every 16x16 window
        found = any(bool((windows == variant).all((1, 2)).any())
                    for variant in _dihedral(patches[k][0].float()))
        assert found, k  # each patch is a flip/rotation of a window of its image
    assert not torch.equal(patches[0], vr.data.FolderPatches(lazy, 16, 5, True, seed=4)[0])
    trainer = vr.Trainer(small_unet(), vr.Reconstruction(), vr.GaussianNoise(0.1), epochs=1, batch_size=4,
                         device="cpu", progress=False)
    assert len(trainer.fit(vr.training.LoaderSource(patches)).records) == 1
    with pytest.raises(ValueError, match="smaller than the 30x30 patch"):
        vr.data.FolderPatches(lazy, 30)


def _dihedral(p: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for q in (p, p.T):
        out += [q, q.flip(0), q.flip(1), q.flip(0).flip(1)]
    return out


def test_the_photo_benchmarks_peak_memory_is_the_childs_own_not_its_parents():
    """benchmarks/photos.py times repairs in fresh processes: their peak memory must not include the memory of
    the process that started them (``ru_maxrss`` of a vfork-exec'd child does; ``VmHWM`` does not)."""
    import importlib.util
    import subprocess
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "photos.py"
    spec = importlib.util.spec_from_file_location("photos_benchmark", path)
    photos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(photos)
    ballast = np.ones(400 * 2**20 // 8)  # 400 MB held by this (the parent) process
    child = "import sys; sys.path.insert(0, sys.argv[1]); from photos import peak_rss_mb; print(peak_rss_mb())"
    peak = float(subprocess.run([sys.executable, "-c", child, str(path.parent)], check=True, capture_output=True,
                                text=True).stdout)
    assert photos.peak_rss_mb() > 400 + float(ballast[0])  # the parent holds the ballast
    assert peak < photos.peak_rss_mb() - 300  # the child, which imported torch and vaerepair, holds less
