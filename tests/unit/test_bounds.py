"""The bounds table: the agreed rows, JSON-able, and no bound below 1."""

from __future__ import annotations

import json

import pytest

from exoarmur.reliability import bounds
from exoarmur.reliability.bounds import BOUNDS, BoundPolicy


def test_bounds_table_has_agreed_rows() -> None:
    expected = {
        "pending_intents": (2000, "intents", "refuse with QUEUE_FULL"),
        "cell_inflight": (64, "messages", "stop fetching until acked"),
        "audit_list_page": (500, "records", "truncate with next cursor"),
        "refusal_flush_interval_ms": (500, "ms", "counters flushed at least this often"),
        "approval_wait_ms": (30000, "ms", "A2/A3 intent without approval expires"),
        "http_body_bytes": (16384, "bytes", "refuse with INVALID_INTENT"),
        "effect_deadline_skew_ms": (100, "ms",
                                    "an unanswered effector call is final (applied or never) this long after its deadline"),
    }
    assert {n: (b.limit, b.unit, b.on_full) for n, b in BOUNDS.items()} == expected
    assert all(b.name == n for n, b in BOUNDS.items())
    rows = bounds.policy_table()
    assert json.loads(json.dumps(rows)) == rows and len(rows) == len(expected)


def test_bound_policy_rejects_non_positive_limits() -> None:
    with pytest.raises(ValueError):
        BoundPolicy("x", 0, "items", "")
