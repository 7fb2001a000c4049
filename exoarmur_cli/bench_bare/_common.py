"""What every bare process shares with ExoArmur's own services: the collector's tuning."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """As ``python -m exoarmur`` tunes its api, cells and effector (``exoarmur.__main__._tune_gc``),
    so the bare processes pay the same collector costs."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
