"""The wall clock, read in one place: milliseconds since the epoch, as records carry it."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
