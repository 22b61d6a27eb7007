"""Shared fixtures: fixed seeds, fake datasets in the real formats, the real Fashion-MNIST."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vaerepair import data


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="where the device-aware tests run (cpu, cuda, cuda:1, ...)")
    parser.addoption("--dtype", default="float32", choices=("float32", "float64"),
                     help="the floating-point type of the dtype-aware tests")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """The ``--device`` the device-aware tests use; a missing GPU is an error, not a skip."""
    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"--device {dev} asked for, but CUDA is not available here")
    return dev


@pytest.fixture
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """The ``--dtype`` the dtype-aware tests use."""
    return getattr(torch, request.config.getoption("--dtype"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests out of the user's cache, except the Fashion-MNIST tests that share one."""
    monkeypatch.delenv("VAEREPAIR_DATA", raising=False)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` (uint8) in the IDX format MNIST uses (big-endian header)."""
    dims = array.shape
    header = struct.pack(">HBB", 0, 0x08, len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_mnist_like(folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0, compress: bool = False) -> dict:
    """Write the four IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, (n_train,), dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, (n_test,), dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(folder / (name + (".gz" if compress else "")), arr, compress=compress)
    return arrays


def make_cifar10(root: Path, n_per_batch: int = 8, seed: int = 0) -> dict:
    """Write CIFAR-10's python pickles (``data`` rows are R, G, B planes of 32x32)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, (n_per_batch,)).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        written[name] = batch
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    return written


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """A root holding a small fake MNIST in torchvision's layout."""
    make_mnist_like(tmp_path / "MNIST" / "raw", n_train=200, n_test=50)
    return tmp_path


@pytest.fixture(scope="session")
def fashion_mnist_available() -> None:
    """The real Fashion-MNIST: fails in CI (CI=true) when missing, skips elsewhere."""
    try:
        data.locate("fashion-mnist")
    except data.DatasetNotFoundError as err:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Fashion-MNIST is required in CI: {err}")
        pytest.skip(f"Fashion-MNIST not installed: {err}")
