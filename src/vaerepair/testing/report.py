"""What a check returns: the checks that ran, the ones that failed and why."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Check", "CheckReport", "ContractError"]


class ContractError(AssertionError):
    """A component or objective broke its contract; the message lists every failed check."""


@dataclass(frozen=True)
class Check:
    """One check: its name, whether it passed, and (when it failed) what went wrong."""

    name: str
    passed: bool
    message: str = ""


@dataclass
class CheckReport:
    """The checks run on one subject (an objective, a posterior, a corruption...).

    ``report.ok`` is true when every check passed; ``str(report)`` lists them;
    :meth:`raise_if_failed` raises :class:`ContractError` naming each failure.
    ``numbers`` holds measured values a check reports (e.g. a bias and its standard error).
    """

    subject: str
    checks: list[Check] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def add(self, name: str, passed: bool, message: str = "") -> bool:
        """Record a check; returns ``passed``."""
        self.checks.append(Check(name, bool(passed), "" if passed else message))
        return bool(passed)

    def extend(self, other: CheckReport, prefix: str = "") -> None:
        """Add another report's checks, their names prefixed (e.g. with the model they ran on)."""
        self.checks.extend(Check(prefix + c.name, c.passed, c.message) for c in other.checks)

    def raise_if_failed(self) -> CheckReport:
        """Raise :class:`ContractError` listing every failed check; return the report when all passed."""
        if not self.ok:
            lines = "\n".join(f"  - {c.name}: {c.message}" for c in self.failures)
            raise ContractError(f"{self.subject}: {len(self.failures)} of {len(self.checks)} checks failed\n{lines}")
        return self

    def __str__(self) -> str:
        lines = [f"{self.subject}: {len(self.checks) - len(self.failures)}/{len(self.checks)} checks passed"]
        lines += [f"  {'ok  ' if c.passed else 'FAIL'} {c.name}{': ' + c.message if c.message else ''}"
                  for c in self.checks]
        return "\n".join(lines)
