"""Argument types of the command line: each parses one option's text or says, in one line, what it expects."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from vaerepair import corruptions as corr
from vaerepair.data import DATASETS
from vaerepair.sweep import beta_range

__all__ = ["widths", "positive_int", "nonnegative_int", "positive_float", "nonnegative_float", "fraction", "seed",
           "corruption", "betas", "sigmas", "dataset"]


def widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 400 or 32,64, got {text!r}") from None
    if min(widths) < 1:
        raise argparse.ArgumentTypeError(f"every width must be >= 1, got {text!r}")
    return widths


def whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def nonnegative_int(text: str) -> int:
    return whole_number(text, 0)


def positive_float(text: str) -> float:
    value = nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _float(text: str, expects: str, ok: Callable[[float], bool]) -> float:
    """``text`` as a float for which ``ok`` holds, else one line saying what was ``expected``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expects}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expects}, got {text!r}")
    return value


def fraction(text: str) -> float:
    return _float(text, "a fraction strictly between 0 and 1 like 0.2", lambda v: 0 < v < 1)


def nonnegative_float(text: str) -> float:
    return _float(text, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"the seed must be in [0, 2**63), got {text}")
    return value


def corruption(text: str) -> str:
    try:
        corr.from_spec(text)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def betas(text: str) -> list[float]:
    try:
        return beta_range(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def sigmas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated noise levels in 0..255 units like 15,25,50, "
                                         f"got {text!r}") from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"noise levels must be finite and >= 0, got {text!r}")
    return values


def dataset(text: str) -> str:
    key = text.strip().lower()
    if key not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; known: {', '.join(DATASETS)}")
    return key
