"""Datasets as whole uint8 tensors: loading, locating, fetching, splitting."""

from vaerepair.data.dataset import ImageDataset, train_val_split
from vaerepair.data.registry import DATASETS, DatasetNotFoundError, cache_dir, fetch, load, locate, search_roots

__all__ = [
    "ImageDataset",
    "train_val_split",
    "load",
    "locate",
    "fetch",
    "search_roots",
    "cache_dir",
    "DATASETS",
    "DatasetNotFoundError",
]
