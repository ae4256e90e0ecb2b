"""One number with its confidence interval, and why it is missing when it is.

Every estimate this package returns is an `Interval`. A degenerate input (one seed, a constant
metric, NaN returns, a source return of zero) does not crash and does not pretend: the point or
the bounds are NaN and `reason` says what was wrong, so a table can print "n/a" and the report
can say why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from darla.errors import ConfigError


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (NaN where it cannot be computed)."""

    point: float
    low: float
    high: float
    n: int
    """runs (or points) the estimate rests on, after dropping non-finite ones"""
    reason: str | None = None
    """why the point or the interval is NaN (or what was dropped); None when all went well"""

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def format(self, digits: int = 2) -> str:
        """`1.23 [0.90, 1.50]`, `1.23` without an interval, `n/a` without a point."""
        if not math.isfinite(self.point):
            return "n/a"
        if not self.has_ci:
            return format_number(self.point, digits)
        low, high = format_number(self.low, digits), format_number(self.high, digits)
        return f"{format_number(self.point, digits)} [{low}, {high}]"

    def as_dict(self) -> dict[str, float | int | str | None]:
        """JSON-ready: NaN becomes None (JSON has no NaN)."""
        return {
            "point": finite_or_none(self.point),
            "low": finite_or_none(self.low),
            "high": finite_or_none(self.high),
            "n": self.n,
            "reason": self.reason,
        }


def missing(reason: str, n: int = 0) -> Interval:
    """No estimate at all, and why."""
    return Interval(math.nan, math.nan, math.nan, n, reason)


def point_only(point: float, n: int, reason: str) -> Interval:
    """A point estimate whose interval is undefined (one run has no spread to resample)."""
    return Interval(float(point), math.nan, math.nan, n, reason)


def finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def format_number(x: float, digits: int = 2) -> str:
    """Fixed-point, `n/a` for NaN, and never `-0.00`."""
    if not math.isfinite(x):
        return "n/a"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def check_bootstrap(reps: int, level: float) -> None:
    """Reject bootstrap settings that would make every interval meaningless."""
    if reps < 1:
        raise ConfigError(f"bootstrap reps must be >= 1, got {reps}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level must be in (0, 1), got {level}")
