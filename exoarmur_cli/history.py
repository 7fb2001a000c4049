"""The history: every operation of a run as an append-only Jepsen-style event.

It is the contract between running and judging. Drivers append; checkers only read.
``type`` is invoke (an operation began), ok (it took effect), fail (it definitely did not),
or info (unknown: e.g. a timeout, where the operation may or may not have happened) —
and for nemesis/observation events, info carries what was done or seen.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"


def wall_ms() -> int:
    """Milliseconds since the epoch: the one wall clock the harness records (``*_wall_ms``)."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Event:
    index: int
    time_ms: float  # milliseconds since the run began (monotonic clock)
    type: str
    f: str
    process: str
    scenario: str
    value: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)


class History:
    """Appends events to ``raw/history.jsonl`` as they happen (a crash keeps what was seen)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")
        self._lock = threading.Lock()
        self._index = 0
        self._t0 = time.monotonic()
        self.scenario = "-"

    def now_ms(self) -> float:
        return (time.monotonic() - self._t0) * 1000

    def append(self, type_: str, f: str, process: str, value: dict[str, Any] | None = None) -> Event:
        with self._lock:
            event = Event(self._index, round(self.now_ms(), 3), type_, f, process, self.scenario, value or {})
            self._index += 1
            self._file.write(event.to_json() + b"\n")
        return event

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.flush()
            self._file.close()


def read_events(path: Path) -> Iterator[Event]:
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield Event(**orjson.loads(line))
