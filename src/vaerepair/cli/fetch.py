"""``vaerepair fetch``: make a dataset available (the Debian package's files, or torchvision's download)."""

from __future__ import annotations

import argparse
import sys

from vaerepair.cli import arguments as A
from vaerepair.data import DatasetNotFoundError, fetch, locate

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=A.dataset)
    p.add_argument("--root", default=None)
    p.add_argument("--check", action="store_true", help="only check; exit 1 when missing")


def run(args: argparse.Namespace) -> int:
    """Locate (``--check``) or fetch the dataset; print its root. Exit status 1 when ``--check`` finds nothing."""
    if args.check:
        try:
            print(locate(args.dataset, args.root))
            return 0
        except DatasetNotFoundError as err:
            print(err, file=sys.stderr)
            return 1
    print(fetch(args.dataset, args.root))
    return 0
