"""Deadlines for every I/O edge of the stack, from one table.

Why: an await without a deadline is a hang waiting to happen. Each edge that leaves the
process (NATS, KV, HTTP) or bounds a whole unit of work (an intent, a replay) has exactly one
category here; its number and its reason code come only from ``TIMEOUTS``, so a timeout seen in
the audit log names the edge that ran out of time.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import TypeVar

from exoarmur.contracts import ReasonCode
from exoarmur.errors import DeadlineExceeded

T = TypeVar("T")


class TimeoutCategory(str, Enum):
    NATS_CONNECT = "NATS_CONNECT"
    NATS_PUBLISH = "NATS_PUBLISH"
    NATS_SUBSCRIBE = "NATS_SUBSCRIBE"
    NATS_STREAM_CREATE = "NATS_STREAM_CREATE"
    KV_CREATE = "KV_CREATE"
    KV_GET = "KV_GET"
    KV_PUT = "KV_PUT"
    KV_DELETE = "KV_DELETE"
    EXECUTION_INTENT = "EXECUTION_INTENT"
    EXECUTION_CONTAINMENT = "EXECUTION_CONTAINMENT"
    APPROVAL_CHECK = "APPROVAL_CHECK"
    APPROVAL_GRANT = "APPROVAL_GRANT"
    REPLAY_PROCESSING = "REPLAY_PROCESSING"
    API_REQUEST = "API_REQUEST"
    EFFECTOR_CALL = "EFFECTOR_CALL"


@dataclass(frozen=True)
class TimeoutPolicy:
    """The deadline of one category, the reason code its expiry carries, and the edge it bounds."""

    category: TimeoutCategory
    deadline_s: float
    reason_code: ReasonCode
    covers: str

    def __post_init__(self) -> None:
        if not self.deadline_s > 0:
            raise ValueError(f"{self.category.name}: deadline_s must be > 0, got {self.deadline_s}")


# The single source of the numbers: (category, deadline_s, covers). Local-stack values: a
# healthy local nats-server answers in milliseconds, so these bound failure, not normal latency.
_TABLE: tuple[tuple[TimeoutCategory, float, str], ...] = (
    (TimeoutCategory.NATS_CONNECT, 2.0, "opening the client connection to nats-server"),
    (TimeoutCategory.NATS_PUBLISH, 2.0, "one JetStream publish until its PubAck arrives"),
    (TimeoutCategory.NATS_SUBSCRIBE, 2.0, "creating a subscription or consumer on a stream"),
    (TimeoutCategory.NATS_STREAM_CREATE, 5.0, "creating or updating a JetStream stream"),
    (TimeoutCategory.KV_CREATE, 1.0, "creating or binding a KV bucket"),
    (TimeoutCategory.KV_GET, 1.0, "one KV read (kill switch, approval, node owner)"),
    (TimeoutCategory.KV_PUT, 1.0, "one KV write"),
    (TimeoutCategory.KV_DELETE, 1.0, "one KV delete"),
    (TimeoutCategory.EXECUTION_INTENT, 3.5, "a cell handling one intent end to end, incl. retries"),
    (TimeoutCategory.EXECUTION_CONTAINMENT, 3.0, "all effector attempts and backoff, one action"),
    (TimeoutCategory.APPROVAL_CHECK, 1.0, "reading an intent's approval before deciding"),
    (TimeoutCategory.APPROVAL_GRANT, 2.0, "recording an operator's approval decision"),
    (TimeoutCategory.REPLAY_PROCESSING, 30.0, "re-deciding an audit log in one replay run"),
    (TimeoutCategory.API_REQUEST, 5.0, "one HTTP request to the API, end to end"),
    (TimeoutCategory.EFFECTOR_CALL, 0.5, "one HTTP attempt to the effector"),
)

TIMEOUTS: Mapping[TimeoutCategory, TimeoutPolicy] = MappingProxyType(
    {
        category: TimeoutPolicy(category, deadline, ReasonCode["TIMEOUT_" + category.name], covers)
        for category, deadline, covers in _TABLE
    }
)

if set(TIMEOUTS) != set(TimeoutCategory):  # pragma: no cover - a table edit that forgot a row
    raise RuntimeError("TIMEOUTS must have exactly one row per TimeoutCategory")


def deadline_s(category: TimeoutCategory) -> float:
    """The table deadline of ``category`` in seconds."""
    return TIMEOUTS[category].deadline_s


async def with_deadline(
    category: TimeoutCategory,
    awaitable: Awaitable[T],
    *,
    deadline_s: float | None = None,
) -> T:
    """Await ``awaitable`` under the deadline of ``category`` (or an explicit ``deadline_s``,
    e.g. the budget left of an enclosing deadline).

    Expiry raises ``DeadlineExceeded`` with the category's reason code. A budget that is
    already spent (``<= 0``) expires without starting the work. A ``TimeoutError`` raised by
    the work itself, not by this deadline, propagates unchanged.
    """
    policy = TIMEOUTS[category]
    budget_s = policy.deadline_s if deadline_s is None else deadline_s
    if budget_s <= 0:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never started; closing avoids a "never awaited" warning
        raise _expired(category, budget_s)
    scope = asyncio.timeout(budget_s)
    try:
        async with scope:
            return await awaitable
    except TimeoutError as exc:
        if scope.expired():
            raise _expired(category, budget_s) from exc
        raise


def _expired(category: TimeoutCategory, budget_s: float) -> DeadlineExceeded:
    # Built only on expiry: with_deadline wraps every hop of every intent.
    policy = TIMEOUTS[category]
    return DeadlineExceeded(f"{category.name} exceeded its {budget_s}s deadline ({policy.covers})",
                            reason_code=policy.reason_code)


def policy_table() -> list[dict]:
    """JSON-able rows of ``TIMEOUTS``, in table order."""
    return [
        {
            "category": p.category.value,
            "deadline_s": p.deadline_s,
            "reason_code": p.reason_code.value,
            "covers": p.covers,
        }
        for p in TIMEOUTS.values()
    ]
