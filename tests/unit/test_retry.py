"""Retry: full jitter within bounds and seed-deterministic; bounded attempts; injected sleep."""

from __future__ import annotations

import json
import random

import pytest

from exoarmur.contracts import ReasonCode
from exoarmur.errors import RetryExhausted
from exoarmur.reliability import retry
from exoarmur.reliability.retry import (
    RETRY_POLICIES,
    RetryDetails,
    RetryPolicy,
    backoff_s,
    retry_async,
)
from exoarmur.reliability.timeouts import TimeoutCategory, deadline_s

POLICY = RetryPolicy("test", attempts=4, base_s=0.1, cap_s=0.5, retry_on="Transient")


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, wait_s: float) -> None:
        self.waits.append(wait_s)


def test_required_policies_have_the_agreed_numbers() -> None:
    assert (RETRY_POLICIES["effector_call"].attempts, RETRY_POLICIES["effector_call"].base_s,
            RETRY_POLICIES["effector_call"].cap_s) == (4, 0.02, 0.25)
    for name, policy in RETRY_POLICIES.items():
        assert policy.name == name and policy.retry_on


def test_every_policy_in_the_table_is_one_the_stack_applies() -> None:
    # The bundle shows this table as "in force": a row no code path uses would be a false claim.
    from exoarmur.cell.effects import EffectorCalls

    assert set(RETRY_POLICIES) == {"effector_call"}
    assert EffectorCalls().retry is RETRY_POLICIES["effector_call"]


def test_effector_retries_fit_inside_the_containment_deadline() -> None:
    p = RETRY_POLICIES["effector_call"]
    worst_s = p.attempts * deadline_s(TimeoutCategory.EFFECTOR_CALL) + (p.attempts - 1) * p.cap_s
    assert worst_s <= deadline_s(TimeoutCategory.EXECUTION_CONTAINMENT)


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy("x", attempts=0, base_s=0.1, cap_s=1.0, retry_on="")
    with pytest.raises(ValueError):
        RetryPolicy("x", attempts=2, base_s=1.0, cap_s=0.5, retry_on="")


def test_policy_table_is_json() -> None:
    rows = retry.policy_table()
    assert json.loads(json.dumps(rows)) == rows
    assert [r["name"] for r in rows] == ["effector_call"]
    assert set(rows[0]) == {"name", "attempts", "base_s", "cap_s", "retry_on"}


def test_backoff_within_full_jitter_bounds() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(POLICY.cap_s, POLICY.base_s * 2**attempt)
        waits = [backoff_s(POLICY, attempt, rng) for _ in range(300)]
        assert all(0.0 <= w <= ceiling for w in waits)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(waits) < ceiling * 0.1 and max(waits) > ceiling * 0.9


def test_backoff_is_capped_and_huge_attempt_does_not_overflow() -> None:
    rng = random.Random(1)
    assert all(backoff_s(POLICY, 10_000, rng) <= POLICY.cap_s for _ in range(100))
    with pytest.raises(ValueError):
        backoff_s(POLICY, -1, rng)


def test_backoff_deterministic_per_seed() -> None:
    a = [backoff_s(POLICY, n % 5, random.Random(42)) for n in range(10)]
    b = [backoff_s(POLICY, n % 5, random.Random(42)) for n in range(10)]
    assert a == b
    r1, r2, r3 = random.Random(3), random.Random(3), random.Random(4)
    s1 = [backoff_s(POLICY, n, r1) for n in range(6)]
    s2 = [backoff_s(POLICY, n, r2) for n in range(6)]
    s3 = [backoff_s(POLICY, n, r3) for n in range(6)]
    assert s1 == s2 and s1 != s3


def test_backoff_matches_the_formula() -> None:
    expected = random.Random(9).uniform(0, min(POLICY.cap_s, POLICY.base_s * 2**2))
    assert backoff_s(POLICY, 2, random.Random(9)) == expected


async def test_first_success_uses_one_attempt_and_never_sleeps() -> None:
    sleep = FakeSleep()

    async def ok(attempt: int) -> str:
        return f"ok@{attempt}"

    assert await retry_async(ok, POLICY, random.Random(0), is_retryable=retryable,
                             sleep=sleep) == ("ok@0", 1)
    assert sleep.waits == []


async def test_retries_then_succeeds_with_injected_sleep_and_details() -> None:
    sleep = FakeSleep()
    seen: list[int] = []
    details: list[RetryDetails] = []

    async def flaky(attempt: int) -> str:
        seen.append(attempt)
        if attempt < 2:
            raise Transient(f"fail {attempt}")
        return "ok"

    result = await retry_async(flaky, POLICY, random.Random(5), is_retryable=retryable,
                               on_retry=details.append, sleep=sleep)
    assert result == ("ok", 3)
    assert seen == [0, 1, 2]
    ref = random.Random(5)
    expected = [backoff_s(POLICY, 0, ref), backoff_s(POLICY, 1, ref)]
    assert sleep.waits == expected
    assert [d.attempt for d in details] == [0, 1]
    assert [d.wait_s for d in details] == expected
    assert all(d.policy_name == "test" for d in details)
    assert details[0].error == "Transient: fail 0"


async def test_non_retryable_propagates_immediately_unchanged() -> None:
    sleep = FakeSleep()
    calls = 0
    fatal = Fatal("no")

    async def bad(attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise fatal

    with pytest.raises(Fatal) as info:
        await retry_async(bad, POLICY, random.Random(0), is_retryable=retryable, sleep=sleep)
    assert info.value is fatal
    assert calls == 1 and sleep.waits == []


async def test_non_retryable_after_retryable_stops_there() -> None:
    sleep = FakeSleep()

    async def mixed(attempt: int) -> None:
        raise Transient("t") if attempt == 0 else Fatal("f")

    with pytest.raises(Fatal):
        await retry_async(mixed, POLICY, random.Random(0), is_retryable=retryable, sleep=sleep)
    assert len(sleep.waits) == 1


async def test_exhaustion_raises_retry_exhausted_chained_from_last_error() -> None:
    sleep = FakeSleep()
    details: list[RetryDetails] = []
    errors: list[Transient] = []

    async def always(attempt: int) -> None:
        errors.append(Transient(f"fail {attempt}"))
        raise errors[-1]

    with pytest.raises(RetryExhausted) as info:
        await retry_async(always, POLICY, random.Random(0), is_retryable=retryable,
                          on_retry=details.append, sleep=sleep)
    exc = info.value
    assert exc.attempts == POLICY.attempts == len(errors)
    assert exc.last_error is errors[-1]
    assert exc.__cause__ is errors[-1]
    assert exc.reason_code is ReasonCode.RETRY_EXHAUSTED
    # A wait between attempts, none after the last.
    assert len(sleep.waits) == len(details) == POLICY.attempts - 1


async def test_single_attempt_policy_never_sleeps() -> None:
    sleep = FakeSleep()
    once = RetryPolicy("once", attempts=1, base_s=0.1, cap_s=0.1, retry_on="")

    async def fail(attempt: int) -> None:
        raise Transient("x")

    with pytest.raises(RetryExhausted) as info:
        await retry_async(fail, once, random.Random(0), is_retryable=retryable, sleep=sleep)
    assert info.value.attempts == 1 and sleep.waits == []
