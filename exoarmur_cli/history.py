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
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Iterator

import orjson

from exoarmur.contracts import Outcome, ReasonCode


class EventType(str, Enum):
    INVOKE = "invoke"  # an operation began
    OK = "ok"  # it took effect
    FAIL = "fail"  # it definitely did not
    INFO = "info"  # unknown outcome; or a nemesis/observer event: what was done or seen


INVOKE, OK, FAIL, INFO = EventType.INVOKE, EventType.OK, EventType.FAIL, EventType.INFO


class Tag(str, Enum):
    """What a submission is for, as its ``tag`` records it for the checkers."""

    NONE = ""
    HANG = "hang"
    LATE_EFFECTOR = "late_effector"  # the effector slower than most calls' deadlines
    FLAKY = "flaky"
    EFFECTOR_DOWN = "effector_down"
    CHAOS = "chaos"
    PROBE = "probe"
    BACKPRESSURE = "backpressure"
    CROSS_TENANT = "cross_tenant"
    SAME_KEY_OTHER_TENANT = "same_key_other_tenant"  # one idempotency key, submitted by two tenants
    BAD_INPUT = "bad_input"
    QUIET_BASELINE = "quiet:baseline"
    QUIET_NOISE = "quiet:noise"
    NOISY = "noisy"
    GLOBAL_FLOOD = "global_flood"  # one tenant alone, far past the global rate
    ACCESS_AFTER_FORGERY = "access:after_forgery"  # the real intent behind a forged-ahead audit record


@dataclass(frozen=True)
class Expect:
    """A submission whose one terminal record must carry exactly this outcome and reason; its
    tag is ``expect:OUTCOME/REASON``."""

    outcome: Outcome
    reason: ReasonCode
    PREFIX: ClassVar[str] = "expect:"

    @property
    def pair(self) -> str:
        return f"{self.outcome.value}/{self.reason.value}"

    @property
    def tag(self) -> str:
        return self.PREFIX + self.pair

    @classmethod
    def parse(cls, tag: str) -> "Expect | None":
        """The expectation a tag carries; None when it carries none (or one that names no
        known outcome and reason)."""
        if not tag.startswith(cls.PREFIX):
            return None
        outcome, _, reason = tag.removeprefix(cls.PREFIX).partition("/")
        try:
            return cls(Outcome(outcome), ReasonCode(reason))
        except ValueError:
            return None


EXECUTED_OK = Expect(Outcome.EXECUTED, ReasonCode.OK)


def tag_text(tag: "Tag | Expect | str") -> str:
    """A tag as the history records it."""
    if isinstance(tag, Expect):
        return tag.tag
    return tag.value if isinstance(tag, Tag) else str(tag)


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
        return self.append_as(self.scenario, type_, f, process, value)

    def append_as(self, scenario: str, type_: str, f: str, process: str,
                  value: dict[str, Any] | None = None) -> Event:
        """``append`` for ``scenario``, whichever scenario the history is on now."""
        with self._lock:
            event = Event(self._index, round(self.now_ms(), 3), EventType(type_).value, f, process, scenario,
                          value or {})
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


class ScopedHistory:
    """The same history for one scenario that runs beside others (one with a stack of its own):
    every event it appends carries that scenario's name, whatever ``History.scenario`` says."""

    def __init__(self, history: History, scenario: str) -> None:
        self.history = history
        self.scenario = scenario

    @property
    def path(self) -> Path:
        return self.history.path

    def now_ms(self) -> float:
        return self.history.now_ms()

    def append(self, type_: str, f: str, process: str, value: dict[str, Any] | None = None) -> Event:
        return self.history.append_as(self.scenario, type_, f, process, value)

    def flush(self) -> None:
        self.history.flush()


def read_events(path: Path) -> Iterator[Event]:
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield Event(**orjson.loads(line))
