"""Timeout table and with_deadline: every category has a row, expiry carries its reason code."""

from __future__ import annotations

import asyncio
import json

import pytest

from exoarmur.contracts import ReasonCode
from exoarmur.errors import DeadlineExceeded, ExoError
from exoarmur.reliability import timeouts
from exoarmur.reliability.timeouts import (
    TIMEOUTS,
    TimeoutCategory,
    TimeoutPolicy,
    deadline_s,
    with_deadline,
)

EXPECTED_S = {
    "NATS_CONNECT": 2.0,
    "NATS_PUBLISH": 2.0,
    "NATS_SUBSCRIBE": 2.0,
    "NATS_STREAM_CREATE": 5.0,
    "KV_CREATE": 1.0,
    "KV_GET": 1.0,
    "KV_PUT": 1.0,
    "KV_DELETE": 1.0,
    "EXECUTION_INTENT": 3.5,
    "EXECUTION_CONTAINMENT": 3.0,
    "EFFECTOR_CALL": 0.5,
    "APPROVAL_CHECK": 1.0,
    "APPROVAL_GRANT": 2.0,
    "REPLAY_PROCESSING": 30.0,
    "API_REQUEST": 5.0,
}


def test_table_has_one_row_per_category_with_expected_deadlines() -> None:
    assert {c.name for c in TimeoutCategory} == set(EXPECTED_S)
    assert set(TIMEOUTS) == set(TimeoutCategory)
    for category in TimeoutCategory:
        policy = TIMEOUTS[category]
        assert policy.category is category
        assert policy.deadline_s == EXPECTED_S[category.name]
        assert deadline_s(category) == EXPECTED_S[category.name]
        assert policy.reason_code is ReasonCode["TIMEOUT_" + category.name]
        assert policy.covers and "\n" not in policy.covers


def test_table_is_read_only_and_rows_frozen() -> None:
    with pytest.raises(TypeError):
        TIMEOUTS[TimeoutCategory.KV_GET] = TIMEOUTS[TimeoutCategory.KV_PUT]  # type: ignore[index]
    with pytest.raises(AttributeError):
        TIMEOUTS[TimeoutCategory.KV_GET].deadline_s = 9.0  # type: ignore[misc]


def test_nested_budgets_are_consistent() -> None:
    # One effector attempt fits in containment, which fits in the whole intent.
    assert deadline_s(TimeoutCategory.EFFECTOR_CALL) < deadline_s(
        TimeoutCategory.EXECUTION_CONTAINMENT
    )
    assert deadline_s(TimeoutCategory.EXECUTION_CONTAINMENT) < deadline_s(
        TimeoutCategory.EXECUTION_INTENT
    )


def test_policy_rejects_non_positive_deadline() -> None:
    with pytest.raises(ValueError):
        TimeoutPolicy(TimeoutCategory.KV_GET, 0.0, ReasonCode.TIMEOUT_KV_GET, "x")


def test_policy_table_is_json_and_complete() -> None:
    rows = timeouts.policy_table()
    assert json.loads(json.dumps(rows)) == rows
    assert len(rows) == len(TimeoutCategory)
    by_cat = {r["category"]: r for r in rows}
    assert by_cat["EFFECTOR_CALL"] == {
        "category": "EFFECTOR_CALL",
        "deadline_s": 0.5,
        "reason_code": "TIMEOUT_EFFECTOR_CALL",
        "covers": TIMEOUTS[TimeoutCategory.EFFECTOR_CALL].covers,
    }


async def test_with_deadline_returns_result_in_time() -> None:
    async def quick() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await with_deadline(TimeoutCategory.KV_GET, quick()) == "done"


async def test_with_deadline_raises_deadline_exceeded_with_category_reason() -> None:
    with pytest.raises(DeadlineExceeded) as info:
        await with_deadline(TimeoutCategory.KV_PUT, asyncio.sleep(5), deadline_s=0.02)
    assert info.value.reason_code is ReasonCode.TIMEOUT_KV_PUT
    assert isinstance(info.value, ExoError)
    assert "KV_PUT" in str(info.value)
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_with_deadline_uses_table_deadline_by_default(monkeypatch) -> None:
    short = TimeoutPolicy(
        TimeoutCategory.EFFECTOR_CALL, 0.02, ReasonCode.TIMEOUT_EFFECTOR_CALL, "one attempt"
    )
    patched = dict(TIMEOUTS)
    patched[TimeoutCategory.EFFECTOR_CALL] = short
    monkeypatch.setattr(timeouts, "TIMEOUTS", patched)
    with pytest.raises(DeadlineExceeded) as info:
        await with_deadline(TimeoutCategory.EFFECTOR_CALL, asyncio.sleep(5))
    assert info.value.reason_code is ReasonCode.TIMEOUT_EFFECTOR_CALL


async def test_spent_budget_expires_without_starting_the_work() -> None:
    started = False

    async def work() -> None:
        nonlocal started
        started = True

    with pytest.raises(DeadlineExceeded) as info:
        await with_deadline(TimeoutCategory.APPROVAL_CHECK, work(), deadline_s=0.0)
    assert info.value.reason_code is ReasonCode.TIMEOUT_APPROVAL_CHECK
    assert started is False


async def test_inner_timeout_error_is_not_relabelled() -> None:
    async def raises_own_timeout() -> None:
        raise TimeoutError("the library's own timeout")

    with pytest.raises(TimeoutError) as info:
        await with_deadline(TimeoutCategory.NATS_PUBLISH, raises_own_timeout())
    assert not isinstance(info.value, DeadlineExceeded)


async def test_other_errors_propagate_unchanged() -> None:
    async def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await with_deadline(TimeoutCategory.KV_GET, boom())


async def test_nested_deadline_reports_the_one_that_expired() -> None:
    async def inner() -> None:
        await with_deadline(TimeoutCategory.EFFECTOR_CALL, asyncio.sleep(5), deadline_s=0.02)

    with pytest.raises(DeadlineExceeded) as info:
        await with_deadline(TimeoutCategory.EXECUTION_CONTAINMENT, inner(), deadline_s=1.0)
    assert info.value.reason_code is ReasonCode.TIMEOUT_EFFECTOR_CALL

    async def slow_inner() -> None:
        await with_deadline(TimeoutCategory.EFFECTOR_CALL, asyncio.sleep(5), deadline_s=1.0)

    with pytest.raises(DeadlineExceeded) as info:
        await with_deadline(TimeoutCategory.EXECUTION_CONTAINMENT, slow_inner(), deadline_s=0.02)
    assert info.value.reason_code is ReasonCode.TIMEOUT_EXECUTION_CONTAINMENT
