"""A hung effector is contained by deadlines; a down one opens the breaker, which recovers.

The breaker numbers come from ``BREAKER_POLICIES`` and the deadlines from ``TIMEOUTS``. The tests
run in file order on one stack: the hang leaves failures in a cell's breaker window, which the
down test only adds to.
"""

from __future__ import annotations

import time

import orjson
import pytest

from exoarmur import natsio
from exoarmur.reliability.breaker import BREAKER_POLICIES
from exoarmur.reliability.retry import RETRY_POLICIES
from exoarmur.reliability.timeouts import TimeoutCategory, deadline_s

pytestmark = pytest.mark.integration

POLICY = BREAKER_POLICIES["effector"]
CONTAINMENT_S = deadline_s(TimeoutCategory.EXECUTION_CONTAINMENT)
PICKUP_SLACK_S = 1.5  # a cell fetching the intent and writing its record, on a busy machine


def breaker_events(exo) -> list[dict]:
    return [orjson.loads(data) | {"subject": subject}
            for subject, data in exo.stream_messages(natsio.EVENTS_STREAM, "exo.events.breaker.>")]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s}s: {what}")


def test_a_hung_effector_fails_the_intent_within_the_containment_deadline(exo):
    peer = exo.peer(0)
    exo.faults(hang=True)
    try:
        intent = exo.intent(peer)
        started = time.monotonic()
        exo.accept(peer, intent)
        record = exo.wait_terminal(peer, intent["idempotency_key"], timeout_s=CONTAINMENT_S + 10)
        elapsed = time.monotonic() - started
    finally:
        exo.faults()
    assert record["outcome"] == "FAILED", record
    assert record["reason_code"].startswith("TIMEOUT_"), record
    assert 1 <= record["attempts"] <= RETRY_POLICIES["effector_call"].attempts
    assert elapsed < CONTAINMENT_S + PICKUP_SLACK_S, elapsed
    assert elapsed >= deadline_s(TimeoutCategory.EFFECTOR_CALL), "it cannot have waited for the effector"
    assert f"{peer.tenant_id}:{intent['idempotency_key']}" not in exo.ledger()


def test_a_down_effector_opens_the_breaker_and_half_open_probes_close_it(exo):
    peer = exo.peer(1)
    exo.faults(down=True)
    records, fast = [], None
    try:
        for _ in range(30):  # each cell has its own breaker; intents land on either cell
            requests_before = exo.effector.get("/v1/stats").json()["requests"]
            started = time.monotonic()
            record = exo.run_one(peer)
            elapsed = time.monotonic() - started
            records.append(record)
            assert record["outcome"] == "FAILED", record
            if record["reason_code"] == "BREAKER_OPEN" and record["attempts"] == 0:
                # Refused without a call: the effector saw nothing, and nothing was waited for.
                assert exo.effector.get("/v1/stats").json()["requests"] == requests_before
                fast = (record, elapsed)
                break
        assert fast is not None, [(r["cell_id"], r["reason_code"], r["attempts"]) for r in records]
    finally:
        exo.faults()

    opened_cell = fast[0]["cell_id"]
    assert fast[0]["breaker_state"] == "OPEN"
    assert fast[1] < 1.0, fast[1]
    reasons = {r["reason_code"] for r in records}
    assert reasons <= {"RETRY_EXHAUSTED", "BREAKER_OPEN"}, reasons
    assert not any(row_key.endswith(r["idempotency_key"]) for r in records for row_key in exo.ledger())

    opened = wait_for(lambda: [e for e in breaker_events(exo)
                               if e["cell_id"] == opened_cell and e["to"] == "OPEN"],
                      5, f"a transition to OPEN on exo.events.breaker.{opened_cell}")
    assert opened[0]["subject"] == f"exo.events.breaker.{opened_cell}"
    assert opened[0]["from"] == "CLOSED" and opened[0]["breaker"] == POLICY.name
    assert opened[0]["calls_in_window"] >= POLICY.min_calls
    assert opened[0]["failures_in_window"] >= POLICY.failure_ratio * opened[0]["calls_in_window"]

    # Recovered effector: once open_s has passed, probes go through and close the breaker.
    time.sleep(POLICY.open_s)
    opened_cells = {e["cell_id"] for e in breaker_events(exo) if e["to"] == "OPEN"}

    def closed_cells() -> set[str]:
        return {e["cell_id"] for e in breaker_events(exo) if e["from"] == "HALF_OPEN" and e["to"] == "CLOSED"}

    after = []
    deadline = time.monotonic() + 20
    while not opened_cells <= closed_cells():
        assert time.monotonic() < deadline, (opened_cells, closed_cells(), after)
        record = exo.run_one(peer)
        after.append(record)
        assert (record["outcome"], record["reason_code"]) == ("EXECUTED", "OK"), record
    ledger = exo.ledger()
    assert all(ledger[f"{peer.tenant_id}:{r['idempotency_key']}"]["calls"] == 1 for r in after)
    sequence = [(e["from"], e["to"]) for e in breaker_events(exo) if e["cell_id"] == opened_cell]
    assert ("OPEN", "HALF_OPEN") in sequence and sequence[-1] == ("HALF_OPEN", "CLOSED"), sequence
    # Closed again: intents keep executing with the breaker CLOSED in the record.
    assert exo.run_one(peer)["breaker_state"] == "CLOSED"
