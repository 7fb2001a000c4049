"""A circuit breaker over a sliding time window of call outcomes.

Why: when the effector is failing, more calls only add load and latency; the breaker fails
fast (``BREAKER_OPEN``) for ``open_s``, then lets a few probes through to learn whether the
effector recovered. It reads no clock: every method takes ``now_s``, and a timestamp earlier
than the last one seen is treated as the last one. Each state change calls ``on_transition``
exactly once, so transitions can be logged and counted without double counting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from types import MappingProxyType

from exoarmur.errors import BreakerOpen


class BreakerState(str, Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True)
class BreakerPolicy:
    """Open when, over the last ``window_s``, at least ``min_calls`` calls were recorded and the
    failed fraction is ``>= failure_ratio``; stay open ``open_s``; then admit at most
    ``half_open_max_probes`` outstanding probes, closing after ``half_open_successes_to_close``
    probe successes and reopening on any probe failure."""

    name: str
    window_s: float
    min_calls: int
    failure_ratio: float
    open_s: float
    half_open_max_probes: int
    half_open_successes_to_close: int

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.open_s > 0 and 0 < self.failure_ratio <= 1):
            raise ValueError(f"{self.name}: need window_s, open_s > 0 and 0 < failure_ratio <= 1")
        if min(self.min_calls, self.half_open_max_probes, self.half_open_successes_to_close) < 1:
            raise ValueError(f"{self.name}: call counts must be >= 1")


# The single source of the numbers.
BREAKER_POLICIES: Mapping[str, BreakerPolicy] = MappingProxyType(
    {
        "effector": BreakerPolicy(
            "effector",
            window_s=5.0,
            min_calls=5,
            failure_ratio=0.5,
            open_s=1.0,
            half_open_max_probes=2,
            half_open_successes_to_close=2,
        ),
    }
)


@dataclass(frozen=True)
class Transition:
    """One state change. The counts are the evidence for it: the sliding window when leaving
    CLOSED, the probe outcomes of this half-open period when leaving HALF_OPEN, and 0/0 for
    OPEN -> HALF_OPEN (that one is due to time alone; ``at_s`` is when ``open_s`` ran out)."""

    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    at_s: float
    reason: str
    failures_in_window: int
    calls_in_window: int


class CircuitBreaker:
    """CLOSED -> OPEN -> HALF_OPEN -> CLOSED (or back to OPEN). Single event loop, no locks.

    Outcomes recorded while OPEN are late results of calls admitted earlier; they are ignored.
    A late outcome arriving in HALF_OPEN cannot be told from a probe's and counts as one.
    """

    def __init__(
        self,
        policy: BreakerPolicy,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.policy = policy
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._last_s = float("-inf")
        self._window: deque[tuple[float, bool]] = deque()  # (at_s, failed)
        self._window_failures = 0
        self._opened_at_s = 0.0
        self._probes_outstanding = 0
        self._probe_successes = 0
        self._transitions = 0

    @property
    def transitions_count(self) -> int:
        return self._transitions

    def _clock(self, now_s: float) -> float:
        self._last_s = max(self._last_s, now_s)
        return self._last_s

    def _prune(self, now_s: float) -> None:
        while self._window and now_s - self._window[0][0] >= self.policy.window_s:
            _, failed = self._window.popleft()
            self._window_failures -= failed

    def _clear_window(self) -> None:
        self._window.clear()
        self._window_failures = 0

    def _move(self, to: BreakerState, at_s: float, reason: str, failures: int, calls: int) -> None:
        transition = Transition(self.policy.name, self._state, to, at_s, reason, failures, calls)
        self._state = to
        self._transitions += 1
        if to is BreakerState.OPEN:
            self._opened_at_s = at_s
        if to is BreakerState.HALF_OPEN:
            self._probes_outstanding = 0
            self._probe_successes = 0
        if self._on_transition is not None:
            self._on_transition(transition)

    def state(self, now_s: float) -> BreakerState:
        """The state at ``now_s``; an OPEN breaker whose ``open_s`` elapsed turns HALF_OPEN."""
        now_s = self._clock(now_s)
        if self._state is BreakerState.OPEN:
            due_s = self._opened_at_s + self.policy.open_s
            if now_s >= due_s:
                self._move(BreakerState.HALF_OPEN, due_s, f"open for {self.policy.open_s}s", 0, 0)
        return self._state

    def window_counts(self, now_s: float) -> tuple[int, int]:
        """``(failures, calls)`` in the CLOSED sliding window at ``now_s``."""
        self._prune(self._clock(now_s))
        return self._window_failures, len(self._window)

    def allow(self, now_s: float) -> bool:
        """Whether a call may start now. In HALF_OPEN a True reserves one probe slot, freed by
        the call's ``record_success`` / ``record_failure``."""
        state = self.state(now_s)
        if state is BreakerState.CLOSED:
            return True
        max_probes = self.policy.half_open_max_probes
        if state is BreakerState.OPEN or self._probes_outstanding >= max_probes:
            return False
        self._probes_outstanding += 1  # HALF_OPEN with a free probe slot
        return True

    def check(self, now_s: float) -> None:
        """``allow`` that raises ``BreakerOpen`` instead of returning False."""
        if not self.allow(now_s):
            raise BreakerOpen(f"breaker {self.policy.name!r} is {self._state.value}")

    def record_success(self, now_s: float) -> None:
        state = self.state(now_s)
        now_s = self._last_s
        if state is BreakerState.CLOSED:
            self._window.append((now_s, False))
            self._prune(now_s)
        elif state is BreakerState.HALF_OPEN:
            self._probes_outstanding = max(0, self._probes_outstanding - 1)
            self._probe_successes += 1
            needed = self.policy.half_open_successes_to_close
            if self._probe_successes >= needed:
                successes = self._probe_successes
                self._clear_window()
                self._move(BreakerState.CLOSED, now_s, f"{needed} probes succeeded", 0, successes)

    def record_failure(self, now_s: float) -> None:
        state = self.state(now_s)
        now_s = self._last_s
        if state is BreakerState.CLOSED:
            self._window.append((now_s, True))
            self._window_failures += 1
            self._prune(now_s)
            failures, calls = self._window_failures, len(self._window)
            if calls >= self.policy.min_calls and failures / calls >= self.policy.failure_ratio:
                reason = f"{failures}/{calls} failed in {self.policy.window_s}s window"
                self._clear_window()
                self._move(BreakerState.OPEN, now_s, reason, failures, calls)
        elif state is BreakerState.HALF_OPEN:
            calls = self._probe_successes + 1
            self._probes_outstanding = 0
            self._move(BreakerState.OPEN, now_s, "a half-open probe failed", 1, calls)


def policy_table() -> list[dict]:
    """JSON-able rows of ``BREAKER_POLICIES``."""
    return [asdict(p) for p in BREAKER_POLICIES.values()]
