"""Bounds table and BoundedQueue: refuses when full, never drops, tracks depth."""

from __future__ import annotations

import asyncio
import json

import pytest

from exoarmur.contracts import ReasonCode
from exoarmur.errors import QueueFull
from exoarmur.reliability import bounded_queue
from exoarmur.reliability.bounded_queue import BOUNDS, BoundedQueue, BoundPolicy


def test_bounds_table_has_agreed_rows() -> None:
    expected = {
        "pending_intents": (2000, "intents", "refuse with QUEUE_FULL"),
        "cell_inflight": (64, "messages", "stop fetching until acked"),
        "audit_list_page": (500, "records", "truncate with next cursor"),
        "refusal_flush_interval_ms": (500, "ms", "counters flushed at least this often"),
        "approval_wait_ms": (30000, "ms", "A2/A3 intent without approval expires"),
        "http_body_bytes": (16384, "bytes", "refuse with INVALID_INTENT"),
    }
    assert {n: (b.limit, b.unit, b.on_full) for n, b in BOUNDS.items()} == expected
    assert all(b.name == n for n, b in BOUNDS.items())
    rows = bounded_queue.policy_table()
    assert json.loads(json.dumps(rows)) == rows and len(rows) == len(expected)


def test_bound_policy_and_queue_reject_non_positive_limits() -> None:
    with pytest.raises(ValueError):
        BoundPolicy("x", 0, "items", "")
    with pytest.raises(ValueError):
        BoundedQueue(0)  # asyncio would read 0 as unbounded


def test_refuses_when_full_and_never_drops() -> None:
    q: BoundedQueue[int] = BoundedQueue(3)
    for i in range(3):
        q.put_nowait(i)
    assert q.full() and q.depth == 3
    for i in range(3, 8):
        with pytest.raises(QueueFull) as info:
            q.put_nowait(i)
        assert info.value.reason_code is ReasonCode.QUEUE_FULL
    assert q.refused == 5
    assert q.depth == 3
    assert [q.get_nowait() for _ in range(3)] == [0, 1, 2]  # originals kept, FIFO
    assert q.empty()
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


def test_high_watermark_and_depth() -> None:
    q: BoundedQueue[str] = BoundedQueue(10)
    assert (q.depth, q.high_watermark, q.refused) == (0, 0, 0)
    for s in "abcd":
        q.put_nowait(s)
    q.get_nowait()
    q.get_nowait()
    q.put_nowait("e")
    assert q.depth == 3
    assert q.high_watermark == 4


def test_space_frees_after_get() -> None:
    q: BoundedQueue[int] = BoundedQueue(1)
    q.put_nowait(1)
    with pytest.raises(QueueFull):
        q.put_nowait(2)
    assert q.get_nowait() == 1
    q.put_nowait(3)
    assert q.get_nowait() == 3 and q.refused == 1


def test_for_bound_sizes_from_table() -> None:
    q: BoundedQueue[int] = BoundedQueue.for_bound(BOUNDS["cell_inflight"])
    for i in range(64):
        q.put_nowait(i)
    with pytest.raises(QueueFull):
        q.put_nowait(64)
    assert q.maxsize == 64 and q.depth == 64


async def test_async_get_waits_for_an_item() -> None:
    q: BoundedQueue[str] = BoundedQueue(2)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.put_nowait("x")
    assert await asyncio.wait_for(getter, 1.0) == "x"
    assert q.depth == 0
