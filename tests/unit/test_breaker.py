"""Circuit breaker: full cycle, reopen on probe failure, probe cap, one callback per transition."""

from __future__ import annotations

import json

import pytest

from exoarmur.contracts import ReasonCode
from exoarmur.errors import BreakerOpen
from exoarmur.reliability import breaker
from exoarmur.reliability.breaker import (
    BREAKER_POLICIES,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Transition,
)

POLICY = BREAKER_POLICIES["effector"]
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def make() -> tuple[CircuitBreaker, list[Transition]]:
    seen: list[Transition] = []
    return CircuitBreaker(POLICY, on_transition=seen.append), seen


def trip(cb: CircuitBreaker, at_s: float) -> None:
    for _ in range(POLICY.min_calls):
        assert cb.allow(at_s)
        cb.record_failure(at_s)


def test_agreed_numbers_and_table() -> None:
    assert POLICY == BreakerPolicy("effector", window_s=5.0, min_calls=5, failure_ratio=0.5,
                                   open_s=1.0, half_open_max_probes=2,
                                   half_open_successes_to_close=2)
    rows = breaker.policy_table()
    assert json.loads(json.dumps(rows)) == rows and rows[0]["name"] == "effector"


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy("x", 5.0, 5, 0.0, 1.0, 1, 1)
    with pytest.raises(ValueError):
        BreakerPolicy("x", 5.0, 0, 0.5, 1.0, 1, 1)


def test_full_cycle_closed_open_half_open_closed() -> None:
    cb, seen = make()
    assert cb.state(0.0) is CLOSED
    for i in range(4):
        cb.record_failure(0.1 * i)
        assert cb.state(0.1 * i) is CLOSED  # below min_calls
    cb.record_failure(0.5)
    assert cb.state(0.5) is OPEN
    assert not cb.allow(0.6) and not cb.allow(1.49)
    assert cb.state(1.49) is OPEN
    assert cb.state(1.5) is HALF_OPEN  # open_s elapsed
    assert cb.allow(1.5) and cb.allow(1.5)
    cb.record_success(1.6)
    assert cb.state(1.6) is HALF_OPEN
    cb.record_success(1.7)
    assert cb.state(1.7) is CLOSED
    assert cb.window_counts(1.7) == (0, 0)  # closing clears the window

    assert [(t.from_state, t.to_state) for t in seen] == [
        (CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)
    ]
    opened, probing, closed = seen
    assert (opened.at_s, opened.failures_in_window, opened.calls_in_window) == (0.5, 5, 5)
    assert probing.at_s == pytest.approx(1.5)
    assert (probing.failures_in_window, probing.calls_in_window) == (0, 0)
    assert (closed.at_s, closed.failures_in_window, closed.calls_in_window) == (1.7, 0, 2)
    assert all(t.breaker == "effector" and t.reason for t in seen)
    assert cb.transitions_count == 3


def test_half_open_failure_reopens_and_restarts_open_timer() -> None:
    cb, seen = make()
    trip(cb, 10.0)
    assert cb.allow(11.0)  # HALF_OPEN probe
    cb.record_failure(11.2)
    assert cb.state(11.2) is OPEN
    assert not cb.allow(12.1)  # open again for a full open_s from 11.2
    assert cb.state(12.2) is HALF_OPEN
    assert [(t.from_state, t.to_state) for t in seen] == [
        (CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN)
    ]
    assert seen[2].at_s == 11.2
    assert (seen[2].failures_in_window, seen[2].calls_in_window) == (1, 1)
    assert seen[3].at_s == pytest.approx(12.2)


def test_probe_cap_in_half_open() -> None:
    cb, _ = make()
    trip(cb, 0.0)
    assert cb.state(1.0) is HALF_OPEN
    assert [cb.allow(1.0) for _ in range(4)] == [True, True, False, False]
    cb.record_success(1.1)  # one probe finished: a slot frees up
    assert cb.state(1.1) is HALF_OPEN
    assert cb.allow(1.1)
    assert not cb.allow(1.1)
    cb.record_success(1.2)
    assert cb.state(1.2) is CLOSED
    assert all(cb.allow(1.2) for _ in range(10))  # CLOSED does not cap


def test_check_raises_breaker_open() -> None:
    cb, _ = make()
    cb.check(0.0)
    trip(cb, 0.0)
    with pytest.raises(BreakerOpen) as info:
        cb.check(0.5)
    assert info.value.reason_code is ReasonCode.BREAKER_OPEN


def test_failure_ratio_below_threshold_stays_closed() -> None:
    cb, seen = make()
    for i in range(20):  # 1 failure in 3: ratio 0.33 < 0.5
        if i % 3 == 0:
            cb.record_failure(0.01 * i)
        else:
            cb.record_success(0.01 * i)
    assert cb.state(0.2) is CLOSED and seen == []


def test_ratio_at_threshold_opens() -> None:
    cb, seen = make()
    for t in (0.0, 0.1, 0.2):
        cb.record_success(t)
    for t in (0.3, 0.4):
        cb.record_failure(t)
    assert cb.state(0.4) is CLOSED  # 2/5 = 0.4
    cb.record_failure(0.5)  # 3/6 = 0.5 >= 0.5
    assert cb.state(0.5) is OPEN
    assert (seen[0].failures_in_window, seen[0].calls_in_window) == (3, 6)


def test_old_outcomes_slide_out_of_the_window() -> None:
    cb, seen = make()
    for t in (0.0, 0.1, 0.2, 0.3):
        cb.record_failure(t)
    assert cb.window_counts(0.3) == (4, 4)
    cb.record_failure(5.15)  # 0.0 and 0.1 are >= window_s old now; 0.2 is not
    assert cb.window_counts(5.15) == (3, 3)
    assert cb.state(5.15) is CLOSED and seen == []
    assert cb.window_counts(5.25) == (2, 2)  # reading also slides the window


def test_outcomes_while_open_are_ignored() -> None:
    cb, seen = make()
    trip(cb, 0.0)
    cb.record_success(0.2)
    cb.record_failure(0.3)
    assert cb.state(0.5) is OPEN
    assert len(seen) == 1  # no extra transitions, timer not restarted
    assert cb.state(1.0) is HALF_OPEN


def test_each_transition_emitted_exactly_once_despite_repeated_queries() -> None:
    cb, seen = make()
    trip(cb, 0.0)
    for _ in range(5):
        cb.state(0.5)
        cb.allow(0.5)
    for _ in range(5):
        cb.state(3.0)  # long past open_s: one OPEN -> HALF_OPEN only
    assert [(t.from_state, t.to_state) for t in seen] == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]
    assert cb.transitions_count == len(seen) == 2


def test_backwards_time_does_not_reopen_or_unexpire() -> None:
    cb, seen = make()
    trip(cb, 10.0)
    assert cb.state(11.0) is HALF_OPEN
    assert cb.state(9.0) is HALF_OPEN  # a step back does not return to OPEN
    cb.record_failure(5.0)  # treated as at 11.0
    assert seen[-1].at_s == 11.0 and cb.state(11.5) is OPEN
    assert cb.state(12.0) is HALF_OPEN


def test_works_without_callback() -> None:
    cb = CircuitBreaker(POLICY)
    trip(cb, 0.0)
    assert cb.state(0.0) is OPEN and cb.transitions_count == 1
