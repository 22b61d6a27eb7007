"""Folders of photographs: reading 8/16-bit, grey/colour, odd sizes; order; bad files; splits; real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaerepair as vr
from vaerepair.data import DatasetNotFoundError, ImageFolder, ImageReadError, read_image
from vaerepair.training import PatchSource

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _write(folder: Path) -> dict[str, np.ndarray]:
    """A folder of odd-sized files in every format, grey and colour, 8- and 16-bit, one in a subfolder."""
    rng = np.random.default_rng(0)
    arrays = {
        "a_grey.png": rng.integers(0, 256, (37, 53), dtype=np.uint8),
        "b_colour.png": rng.integers(0, 256, (21, 30, 3), dtype=np.uint8),
        "c_grey16.png": rng.integers(0, 65536, (19, 23), dtype=np.uint16),
        "d_colour.bmp": rng.integers(0, 256, (17, 13, 3), dtype=np.uint8),
        "e_grey.tif": rng.integers(0, 256, (12, 40), dtype=np.uint8),
        "sub/f_grey16.tiff": rng.integers(0, 65536, (9, 11), dtype=np.uint16),
    }
    for name, array in arrays.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / name)
    yy, xx = np.mgrid[0:21, 0:30]
    smooth = np.stack([yy * 10, xx * 8, (yy + xx) * 5], axis=-1).astype(np.uint8)  # JPEG keeps smooth images
    arrays["g_photo.jpg"] = smooth
    Image.fromarray(smooth).save(folder / "g_photo.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return arrays


def test_every_format_is_read_at_native_size_in_a_fixed_order(tmp_path: Path) -> None:
    arrays = _write(tmp_path)
    folder = ImageFolder(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in folder.paths]
    assert names == ["a_grey.png", "b_colour.png", "c_grey16.png", "d_colour.bmp", "e_grey.tif", "g_photo.jpg",
                     "sub/f_grey16.tiff"]
    for i, name in enumerate(names[:6]):
        if name.endswith(".jpg"):
            continue
        image, array = folder[i], arrays[name]
        expected = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        if array.dtype == np.uint16:  # 16-bit: float in [0, 1], nothing lost
            assert image.dtype == torch.float32
            torch.testing.assert_close(image, torch.from_numpy(expected.astype(np.float32) / 65535))
        else:
            assert image.dtype == torch.uint8 and torch.equal(image, torch.from_numpy(expected))
    jpeg, smooth = folder[5], torch.from_numpy(arrays["g_photo.jpg"].transpose(2, 0, 1).copy())
    assert jpeg.shape == (3, 21, 30) and float((jpeg.float() - smooth.float()).abs().mean()) < 3
    assert folder.sizes[0] == (37, 53) and len(ImageFolder(tmp_path, recursive=False)) == 6


def test_modes_convert_grey_and_colour(tmp_path: Path) -> None:
    arrays = _write(tmp_path)
    grey = ImageFolder(tmp_path, mode="L")
    assert {im.shape[0] for im in grey} == {1}
    expected = np.array(Image.fromarray(arrays["b_colour.png"]).convert("L"))  # Pillow's BT.601 conversion
    assert (grey[1][0].int() - torch.from_numpy(expected).int()).abs().max() <= 1
    colour = ImageFolder(tmp_path, mode="RGB")
    assert {im.shape[0] for im in colour} == {3} and torch.equal(colour[0][0], colour[0][2])


def test_lazy_reading_gives_the_same_images(tmp_path: Path) -> None:
    _write(tmp_path)
    eager, lazy = ImageFolder(tmp_path), ImageFolder(tmp_path, lazy=True)
    assert lazy._images is None and lazy.sizes == eager.sizes
    assert all(torch.equal(a, b) for a, b in zip(eager, lazy, strict=True))


def test_a_truncated_file_is_named_or_skipped(tmp_path: Path) -> None:
    _write(tmp_path)
    good = (tmp_path / "a_grey.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "fake.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageReadError, match=r"cannot read '.*broken\.png' as an image.*skip_unreadable=True"):
        ImageFolder(tmp_path)
    with pytest.warns(UserWarning) as caught:
        folder = ImageFolder(tmp_path, skip_unreadable=True)
    assert sorted(Path(str(w.message).split("'")[1]).name for w in caught) == ["broken.png", "fake.jpg"]
    assert len(folder) == 7 and not any(p.name in ("broken.png", "fake.jpg") for p in folder.paths)
    with pytest.raises(ImageReadError, match="fake.jpg"):
        read_image(tmp_path / "fake.jpg")


def test_no_folder_or_no_images_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetNotFoundError, match=r"no images \(PNG, JPEG, BMP, TIFF\) under"):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="mode must be"):
        ImageFolder(tmp_path, mode="CMYK")


def test_split_by_image_is_seeded(tmp_path: Path) -> None:
    _write(tmp_path)
    folder = ImageFolder(tmp_path, mode="L")
    train, val = vr.train_val_split(folder, val_fraction=0.3, seed=1)
    again, _ = vr.train_val_split(folder, val_fraction=0.3, seed=1)
    assert len(train) + len(val) == len(folder) and len(val) == 2
    assert train.paths == again.paths and not set(train.paths) & set(val.paths)
    assert vr.train_val_split(folder, val_fraction=0.3, seed=2)[1].paths != val.paths


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{path} is required in CI")
        pytest.skip(f"{path} is not here")
    return path


def test_the_real_sets_read_as_the_readme_says() -> None:
    train400, set12, live1 = (ImageFolder(_shared(n), lazy=True) for n in ("train400", "set12", "live1"))
    assert len(train400) == 400 and set(train400.sizes) == {(180, 180)}
    assert len(set12) == 12 and set(set12.sizes) == {(256, 256), (512, 512)}
    assert len(live1) == 29
    first = ImageFolder(_shared("live1")).subset([0])[0]
    assert first.shape[0] == 3 and first.dtype == torch.uint8
    grey = ImageFolder(_shared("set12"))
    assert all(im.shape[0] == 1 for im in grey)
    patches = PatchSource(list(grey), 40, augment=True)
    patches.setup(vr.training.sources.SourceContext(torch.device("cpu"), torch.float32, 16, 0, None))
    assert patches.draw(16).shape == (16, 1, 40, 40)


def test_an_empty_dataset_name_is_refused_not_read_as_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a folder that holds an image: "" used to load it without a word
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "a.png")
    for name in ("", "  "):
        with pytest.raises(ValueError, match="name is empty"):
            vr.load(name)
