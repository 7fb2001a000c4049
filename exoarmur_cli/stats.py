"""The one definition of a quantile the harness reports (p50, p99), used by the checkers and by
``bench`` alike, so a p99 means the same thing wherever it is printed."""

from __future__ import annotations

import math
from collections.abc import Iterable


def quantile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank quantile: the smallest value with at least ``q`` of all values at or below
    it (rank ceil(q·n), 1-based). None (a missing measurement) when there is nothing to rank."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return float(ordered[rank])


def p99(values: Iterable[float]) -> float | None:
    return quantile(values, 0.99)
