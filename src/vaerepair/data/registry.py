"""Finding, fetching and reading the supported datasets with torchvision's readers.

Root resolution, first hit wins: the ``root`` argument (alone, when given),
``$VAEREPAIR_DATA``, the user cache directory (``$XDG_CACHE_HOME/vaerepair``
or ``~/.cache/vaerepair``), then system locations where distributions ship the
files (Debian's ``/usr/share/datasets/fashion-mnist``, gzipped IDX), which are
extracted into the cache in torchvision's layout with torchvision's own
extraction utility.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torchvision import datasets as tvd
from torchvision.datasets.utils import extract_archive

from vaerepair.data.dataset import ImageDataset

if TYPE_CHECKING:
    from vaerepair.data.folder import ImageFolder

__all__ = ["DATASETS", "DatasetNotFoundError", "load", "load_dataset", "locate", "fetch", "search_roots", "cache_dir"]


@dataclass(frozen=True)
class _Entry:
    cls: type
    folder: str  # where torchvision looks under a root
    files: tuple[str, ...]  # the files that must exist under root/folder
    system_dirs: tuple[str, ...] = ()  # gzipped IDX shipped by a distribution
    apt_package: str | None = None
    n_classes: int = 10


_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS: dict[str, _Entry] = {
    "mnist": _Entry(tvd.MNIST, "MNIST/raw", _IDX),
    "kmnist": _Entry(tvd.KMNIST, "KMNIST/raw", _IDX),
    "fashion-mnist": _Entry(
        tvd.FashionMNIST,
        "FashionMNIST/raw",
        _IDX,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        apt_package="dataset-fashion-mnist",
    ),
    "cifar10": _Entry(
        tvd.CIFAR10,
        "cifar-10-batches-py",
        ("batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"),
    ),
}
_ALIASES = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10", "k-mnist": "kmnist"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk in any searched place; the message says where it looked and how to fetch it."""


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, _ALIASES.get(key.replace("-", ""), key))
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return key


def _unregistered(name: str) -> bool:
    try:
        _canonical(name)
    except ValueError:
        return True
    return False


def cache_dir() -> Path:
    """The user cache directory: ``$XDG_CACHE_HOME/vaerepair`` or ``~/.cache/vaerepair``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vaerepair"


def search_roots(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The roots searched, in order (the system locations are not roots: see :func:`locate`)."""
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a folder (a str or a Path), got {type(root).__name__} ({root!r})")
        return [Path(root).expanduser()]
    roots = []
    env = os.environ.get("VAEREPAIR_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(cache_dir())
    return roots


def _has_files(root: Path, entry: _Entry) -> bool:
    return all((root / entry.folder / f).is_file() for f in entry.files)


def _from_system(entry: _Entry, target_root: Path) -> bool:
    """Extract a distribution's gzipped IDX files into ``target_root`` in torchvision's layout."""
    for sysdir in entry.system_dirs:
        src = Path(sysdir)
        if not all((src / f"{f}.gz").is_file() for f in entry.files):
            continue
        dest = target_root / entry.folder
        dest.mkdir(parents=True, exist_ok=True)
        for f in entry.files:
            if (dest / f).is_file():
                continue
            # Extract beside the target and rename: a crash leaves no half-written file.
            with tempfile.TemporaryDirectory(dir=dest) as tmp:
                extract_archive(str(src / f"{f}.gz"), tmp)
                os.replace(os.path.join(tmp, f), dest / f)
        return True
    return False


def _fetch_hint(key: str, entry: _Entry) -> str:
    hints = []
    if entry.apt_package:
        hints.append(f"apt-get install -y {entry.apt_package}  (Debian, as root)")
    hints.append(f"vaerepair fetch {key}  (torchvision's downloader, needs internet)")
    hints.append(f"or load({key!r}, download=True)")
    return "; ".join(hints)


def locate(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The root under which torchvision finds ``name``.

    Raises:
        DatasetNotFoundError: listing every place searched and the command that fetches it.
    """
    key = _canonical(name)
    entry = DATASETS[key]
    roots = search_roots(root)
    for r in roots:
        if _has_files(r, entry):
            return r
    searched = [str(r / entry.folder) for r in roots]
    if root is None and entry.system_dirs:
        target = roots[-1]  # the user cache
        try:
            if _from_system(entry, target):
                return target
        except (OSError, EOFError, ValueError, zlib.error) as err:  # a damaged .gz
            raise DatasetNotFoundError(
                f"found {key} in {entry.system_dirs} but could not extract it into {target} "
                f"({type(err).__name__}: {err}); the system files may be damaged: reinstall them "
                f"({_fetch_hint(key, entry)})"
            ) from err
        searched.extend(entry.system_dirs)
    raise DatasetNotFoundError(
        f"dataset {key!r} not found; searched: {', '.join(searched)}. Fetch it with: {_fetch_hint(key, entry)}"
    )


def fetch(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Make ``name`` available: locate it, else download it with torchvision into the first root."""
    key = _canonical(name)
    try:
        return locate(key, root)
    except DatasetNotFoundError:
        pass
    target = search_roots(root)[0]
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # under a file, no permission, read-only file system
        raise DatasetNotFoundError(f"cannot create the dataset folder {str(target)!r} ({err.strerror or err}); "
                                   "give a root that is, or can become, a folder you can write") from err
    entry = DATASETS[key]
    try:
        entry.cls(str(target), train=True, download=True)
        entry.cls(str(target), train=False, download=True)
    except Exception as err:  # network errors come in many types
        raise DatasetNotFoundError(
            f"could not download {key!r} into {target}: {err}. Without internet: {_fetch_hint(key, entry)}"
        ) from err
    return locate(key, root)


def load(
    name: str | os.PathLike[str],
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    mode: str | None = None,
) -> ImageDataset | ImageFolder:
    """Load a whole split as an :class:`ImageDataset` (uint8 ``(N, C, H, W)``, labels ``(N,)``), or a folder of
    photographs as an :class:`~vaerepair.data.ImageFolder`.

    Args:
        name: ``"mnist"``, ``"kmnist"``, ``"fashion-mnist"`` or ``"cifar10"``; or the path of a folder
            (a ``Path``, or a string that is not a dataset name): every PNG, JPEG, BMP and TIFF under it.
        split: ``"train"`` or ``"test"`` (a registered dataset).
        root: a directory in torchvision's layout; ``None`` searches the default places.
        download: fetch with torchvision's downloader when not found.
        mode: a folder's ``None``/``"L"``/``"RGB"`` (see :class:`~vaerepair.data.ImageFolder`).

    Example:
        >>> train = load("fashion-mnist", split="train")  # doctest: +SKIP
        >>> train.images.shape  # doctest: +SKIP
        torch.Size([60000, 1, 28, 28])
        >>> photos = load("my_photos/", mode="L")  # doctest: +SKIP
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a dataset name ({', '.join(DATASETS)}) or a folder of images, got {name!r}")
    if not str(name).strip():  # Path("") is the working directory: an empty name is a mistake, not a folder
        raise ValueError(f"name is empty; give a dataset name ({', '.join(DATASETS)}) or a folder of images "
                         "(\".\" for the working directory)")
    if isinstance(name, os.PathLike) or (_unregistered(name) and Path(name).is_dir()):
        from vaerepair.data.folder import ImageFolder

        return ImageFolder(name, mode=mode)
    return load_dataset(str(name), split, root, download)


def load_dataset(name: str, split: str = "train", root: str | os.PathLike[str] | None = None,
                 download: bool = False) -> ImageDataset:
    """A registered dataset's split as an :class:`ImageDataset` (:func:`load` without folders)."""
    key = _canonical(name)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    found = fetch(key, root) if download else locate(key, root)
    entry = DATASETS[key]
    folder = found / entry.folder
    try:
        ds = entry.cls(str(found), train=split == "train", download=False)
    except (RuntimeError, AssertionError, ValueError, EOFError, OSError, IndexError, KeyError,
            pickle.UnpicklingError) as err:
        # torchvision's readers fail deep inside on truncated files (a reshape), bad magic numbers (a bare
        # assert) and random bytes
        raise DatasetNotFoundError(
            f"the {key} files in {str(folder)!r} are damaged or not {key} files ({type(err).__name__}: "
            f"{err or 'bad header'}); delete {str(folder)!r} and fetch it again ({_fetch_hint(key, entry)})"
        ) from err
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= entry.n_classes):
        raise DatasetNotFoundError(
            f"the {key} labels in {str(folder)!r} run from {int(labels.min())} to {int(labels.max())}, but {key} has "
            f"{entry.n_classes} classes: the files are damaged; delete {str(folder)!r} and fetch it again"
        )
    data = ds.data
    if key == "cifar10":
        images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    else:
        images = data.unsqueeze(1).contiguous()
    if len(labels) != len(images):
        raise DatasetNotFoundError(f"the {key} files in {str(folder)!r} hold {len(images)} images but {len(labels)} "
                                   f"labels: they are damaged; delete {str(folder)!r} and fetch it again")
    return ImageDataset(images, labels, name=key, split=split)


