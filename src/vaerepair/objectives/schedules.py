"""Schedules for the KL weight beta: small objects mapping a training step to a value."""

from __future__ import annotations

from vaerepair._checks import check_count, check_positive

__all__ = ["Schedule", "Constant", "LinearWarmup", "Cyclical"]


class Schedule:
    """``schedule(step) -> value`` for ``step = 0, 1, 2, ...`` (optimizer steps)."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError


class Constant(Schedule):
    """Always ``value``."""

    def __init__(self, value: float) -> None:
        self.value = check_positive(value, "value", allow_zero=True)

    def __call__(self, step: int) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"Constant({self.value})"


class LinearWarmup(Schedule):
    """From ``start`` to ``end`` linearly over ``steps`` steps, then ``end`` (KL annealing)."""

    def __init__(self, end: float = 1.0, steps: int = 10_000, start: float = 0.0) -> None:
        self.start = check_positive(start, "start", allow_zero=True)
        self.end = check_positive(end, "end", allow_zero=True)
        steps = check_count(steps, "steps")
        self.steps = steps

    def __call__(self, step: int) -> float:
        t = min(max(step, 0), self.steps) / self.steps
        return self.start + (self.end - self.start) * t

    def __repr__(self) -> str:
        return f"LinearWarmup(end={self.end}, steps={self.steps}, start={self.start})"


class Cyclical(Schedule):
    """Cyclical annealing (Fu et al., 2019): each ``period`` rises linearly from ``low`` to ``high``
    over the first ``ratio`` of it, then stays at ``high``."""

    def __init__(self, period: int, high: float = 1.0, low: float = 0.0, ratio: float = 0.5) -> None:
        period = check_count(period, "period")
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
        self.period, self.ratio = period, float(ratio)
        self.high = check_positive(high, "high", allow_zero=True)
        self.low = check_positive(low, "low", allow_zero=True)

    def __call__(self, step: int) -> float:
        t = (max(step, 0) % self.period) / (self.period * self.ratio)
        return self.low + (self.high - self.low) * min(t, 1.0)

    def __repr__(self) -> str:
        return f"Cyclical(period={self.period}, high={self.high}, low={self.low}, ratio={self.ratio})"
