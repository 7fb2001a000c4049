"""How every fault is recorded: one ``info`` event by the process ``nemesis`` in the history.

Its value is what was done, with the wall-clock time it was done at (``wall_ms``). A fault
that begins is recorded before it is applied, one that ends after it is lifted, so the
recorded window always covers the fault. Without a history (tests, ``stack up``), nothing is
recorded.
"""

from __future__ import annotations

from typing import Any

from exoarmur_cli.history import INFO, History, wall_ms

NEMESIS = "nemesis"


def record(history: History | None, f: str, **value: Any) -> None:
    if history is not None:
        history.append(INFO, f, NEMESIS, {"wall_ms": wall_ms(), **value})
