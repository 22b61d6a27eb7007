"""Dataset loading with torchvision's readers on files in the real formats; root resolution; splits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from tests.conftest import make_cifar10, make_mnist_like
from vaerepair import data


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_loads_idx_files(tmp_path, name, folder):
    arrays = make_mnist_like(tmp_path / folder / "raw", n_train=30, n_test=12)
    train = data.load(name, "train", root=tmp_path)
    test = data.load(name, "test", root=tmp_path)
    assert train.images.shape == (30, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.shape == (12,) and test.labels.dtype == torch.long
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    img, label = train[3]
    assert img.shape == (1, 28, 28) and int(label) == arrays["train-labels-idx1-ubyte"][3]
    assert len(train[5:9]) == 4 and train.image_shape == (1, 28, 28)


def test_cifar10_loads_python_pickles(tmp_path, monkeypatch):
    written = make_cifar10(tmp_path, n_per_batch=4)
    # Fake files cannot match the published md5 sums; torchvision's own tests patch this check too.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    train = data.load("cifar10", "train", root=tmp_path)
    test = data.load("cifar10", "test", root=tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    row = written["data_batch_1"]["data"][0]
    np.testing.assert_array_equal(train.images[0].numpy(), row.reshape(3, 32, 32))  # planes R, G, B
    assert test.labels.tolist() == written["test_batch"]["labels"]


def test_root_resolution_order(tmp_path, monkeypatch):
    env_root, cache_home = tmp_path / "env", tmp_path / "cachehome"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    make_mnist_like(cache_home / "vaerepair" / "MNIST" / "raw", n_train=5, n_test=5, seed=1)
    assert data.locate("mnist") == cache_home / "vaerepair"
    make_mnist_like(env_root / "MNIST" / "raw", n_train=7, n_test=5, seed=2)
    monkeypatch.setenv("VAEREPAIR_DATA", str(env_root))
    assert data.locate("mnist") == env_root  # $VAEREPAIR_DATA before the cache
    assert len(data.load("mnist")) == 7
    explicit = tmp_path / "explicit"
    make_mnist_like(explicit / "MNIST" / "raw", n_train=9, n_test=5, seed=3)
    assert len(data.load("mnist", root=explicit)) == 9  # the root argument first


def test_missing_dataset_lists_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("VAEREPAIR_DATA", str(tmp_path / "e"))
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.locate("kmnist")
    msg = str(err.value)
    assert str(tmp_path / "e" / "KMNIST" / "raw") in msg and str(tmp_path / "c" / "vaerepair") in msg
    assert "vaerepair fetch kmnist" in msg and "download=True" in msg


def test_system_gzipped_idx_is_extracted_into_the_cache(tmp_path, monkeypatch):
    system = tmp_path / "usr-share"
    arrays = make_mnist_like(system, n_train=11, n_test=4, compress=True)
    entry = data.DATASETS["fashion-mnist"]
    moved = dataclasses.replace(entry, system_dirs=(str(system),))
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", moved)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = data.load("fashion-mnist")
    assert len(ds) == 11
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    raw = tmp_path / "cache" / "vaerepair" / "FashionMNIST" / "raw"
    assert (raw / "t10k-images-idx3-ubyte").is_file()
    assert not list(raw.glob("tmp*")), "no temporary leftovers"


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; known: mnist, kmnist, fashion-mnist, cifar10"):
        data.load("svhn")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load("mnist", split="val")


def test_aliases(mnist_root: Path):
    assert data.locate("MNIST", root=mnist_root) == mnist_root
    assert data.registry._canonical("FashionMNIST") == "fashion-mnist"


def test_train_val_split_is_deterministic_and_disjoint():
    ds = data.ImageDataset(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous(),
                           torch.arange(100))
    train, val = data.train_val_split(ds, 0.2, seed=5)
    train2, val2 = data.train_val_split(ds, 0.2, seed=5)
    _, val3 = data.train_val_split(ds, 0.2, seed=6)
    assert len(train) == 80 and len(val) == 20
    assert torch.equal(val.labels, val2.labels) and torch.equal(train.labels, train2.labels)
    assert not torch.equal(val.labels, val3.labels)
    assert set(train.labels.tolist()).isdisjoint(val.labels.tolist())
    with pytest.raises(ValueError, match="val_fraction must be in"):
        data.train_val_split(ds, 1.0)


def test_image_dataset_checks():
    with pytest.raises(TypeError, match="uint8"):
        data.ImageDataset(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        data.ImageDataset(torch.zeros(2, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        data.ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("labels, message", [
    (torch.tensor([0.5, 1.0]), "integer class indices, got torch.float32"),
    (torch.tensor([0.0, float("nan")]), "with NaN"),
    (["a", "b"], "labels must be integers"),
    (torch.tensor([True, False]), "got torch.bool"),
])
def test_image_dataset_labels_must_be_integers(labels, message):
    """Float labels were truncated to integers without a word, NaN became a huge negative class."""
    with pytest.raises(TypeError, match=message):
        data.ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), labels)
    assert data.ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), [3, 4]).labels.tolist() == [3, 4]


def test_train_val_split_and_load_check_their_argument_types(tmp_path):
    ds = data.ImageDataset(torch.zeros(10, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="dataset must be an ImageDataset"):
        data.train_val_split([1, 2, 3], 0.2)
    with pytest.raises(TypeError, match="val_fraction must be a number"):
        data.train_val_split(ds, "0.2")
    for seed in ("0", 1.5, -1):
        with pytest.raises((TypeError, ValueError), match="seed"):
            data.train_val_split(ds, 0.2, seed=seed)
    with pytest.raises(TypeError, match=r"root must be a folder \(a str or a Path\), got int"):
        data.load("fashion-mnist", "test", root=3)


def test_real_fashion_mnist(fashion_mnist_available):
    train, test = data.load("fashion-mnist", "train"), data.load("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    mean = train.images.float().mean().item() / 255
    assert 0.27 < mean < 0.30  # the published mean pixel, 0.286


def test_indexing_with_integer_like_values():
    ds = data.ImageDataset(torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1), torch.arange(5))
    assert int(ds[np.int64(3)][1]) == 3 and int(ds[torch.tensor(2)][1]) == 2
    assert ds[[0, 4]].labels.tolist() == [0, 4] and ds[torch.tensor([1, 2])].labels.tolist() == [1, 2]


def test_failed_download_says_where_and_what_else_to_do(tmp_path, monkeypatch):
    import urllib.error

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise urllib.error.URLError("network unreachable")

    monkeypatch.setitem(data.DATASETS, "kmnist", dataclasses.replace(data.DATASETS["kmnist"], cls=Offline))
    with pytest.raises(data.DatasetNotFoundError, match=r"could not download 'kmnist' into .*network unreachable"):
        data.load("kmnist", root=tmp_path, download=True)


def test_download_lands_where_torchvision_reads(tmp_path, monkeypatch):
    """fetch() calls torchvision's class with download=True; a stand-in writes the files it would."""
    calls = []

    class FakeDownload:
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            make_mnist_like(Path(root) / "MNIST" / "raw", n_train=6, n_test=3)

    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(data.DATASETS["mnist"], cls=FakeDownload))
    assert data.fetch("mnist", root=tmp_path) == tmp_path
    assert calls[0] == (str(tmp_path), True, True)
