"""``vaerepair models``: the pretrained models that ship with the package."""

from __future__ import annotations

import argparse

from vaerepair.zoo import pretrained

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> None:
    """List the shipped models with what each was trained on."""
    shipped = pretrained()
    if not shipped:
        print("no pretrained models are installed")
    for info in shipped:
        print(info.describe())
