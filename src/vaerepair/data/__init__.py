"""Datasets: whole uint8 tensors (loading, locating, fetching, splitting) and folders of photographs."""

from vaerepair.data.dataset import ImageDataset, train_val_split
from vaerepair.data.folder import IMAGE_SUFFIXES, FolderPatches, ImageFolder, ImageReadError, read_image
from vaerepair.data.noisy import NoisyImages
from vaerepair.data.registry import (
    DATASETS,
    DatasetNotFoundError,
    cache_dir,
    fetch,
    load,
    load_dataset,
    locate,
    search_roots,
)

__all__ = [
    "ImageDataset",
    "ImageFolder",
    "NoisyImages",
    "FolderPatches",
    "ImageReadError",
    "read_image",
    "IMAGE_SUFFIXES",
    "train_val_split",
    "load",
    "load_dataset",
    "locate",
    "fetch",
    "search_roots",
    "cache_dir",
    "DATASETS",
    "DatasetNotFoundError",
]
