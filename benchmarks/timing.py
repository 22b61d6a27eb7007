"""What the benchmarks share to report a timing ratio honestly."""

from __future__ import annotations

import math
import statistics

__all__ = ["median_interval"]


def median_interval(ratios: list[float]) -> tuple[float, float, float]:
    """The median of ``ratios`` and its distribution-free 95 % interval: the order statistics ``k`` and
    ``n - 1 - k`` (0-based) of the sorted ratios, ``k`` the largest with ``P(B <= k) <= 0.025`` for
    ``B ~ Binomial(n, 1/2)`` (the count of ratios below the true median), so the interval covers it with
    probability at least 95 % (the whole range when ``n < 6``)."""
    ordered, n = sorted(ratios), len(ratios)
    k, below = 0, 1  # below: sum of comb(n, j) for j <= k + 1
    while k + 1 < n / 2:
        below += math.comb(n, k + 1)
        if below / 2**n > 0.025:
            break
        k += 1
    return statistics.median(ordered), ordered[k], ordered[n - 1 - k]
