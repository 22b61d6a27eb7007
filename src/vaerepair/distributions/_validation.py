"""A switch for per-call argument validation in distributions (like torch.distributions)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["validation_enabled", "validation"]

_ENABLED = True


def validation_enabled() -> bool:
    """Whether likelihoods check their targets (e.g. Bernoulli targets in ``[0, 1]``)."""
    return _ENABLED


@contextmanager
def validation(enabled: bool) -> Iterator[None]:
    """Turn the per-call input checks on or off inside a ``with`` block.

    They are the likelihoods' target checks, the objectives' batch check
    (:func:`~vaerepair.objectives.check_batch`) and the corruptions' input and
    generator checks. Most read tensor values, which on a GPU means a host
    synchronisation per call; the Trainer checks its data once up front and then
    turns them off inside the training step. With them off, a bad input fails
    wherever torch first notices it (or not at all): turn them off only around
    inputs checked before.
    """
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = previous
