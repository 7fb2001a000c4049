"""One idempotency key is one intent, one effect and one terminal record — however often it is sent."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from exoarmur import natsio

pytestmark = pytest.mark.integration


def assert_exactly_once(exo, peer, key: str) -> dict:
    """One message in INTENTS for the key's subject, one ledger row applied once, one record."""
    subject = exo.intent_subject(peer.tenant_id, key)
    assert exo.stream_subject_counts(natsio.INTENTS_STREAM, subject) == {subject: 1}

    row = exo.ledger()[f"{peer.tenant_id}:{key}"]
    assert row["calls"] == 1, row

    records = [r for r in exo.audit(peer.tenant_id, peer) if r["idempotency_key"] == key]
    assert len(records) == 1, records
    record = records[0]
    assert record["outcome"] == "EXECUTED" and record["reason_code"] == "OK", record
    assert record["receipt"]["receipt_id"] == row["receipt_id"]
    assert record["receipt"]["calls"] == 1 and record["receipt"]["replayed"] is False
    return record


def test_resubmitting_a_key_is_one_intent_one_effect_one_record(exo):
    peer = exo.peer(0)
    intent = exo.intent(peer)
    key = intent["idempotency_key"]

    first = exo.accept(peer, intent)
    assert first["duplicate"] is False
    record = exo.wait_terminal(peer, key)

    again = exo.accept(peer, intent)  # after the first was executed and recorded
    assert again["duplicate"] is True
    assert again["stream_seq"] == first["stream_seq"]

    # A resubmission must not wake a cell into acting again: give it the time it would take.
    exo.run_one(peer)  # a later intent through the same cells has been fully handled
    assert_exactly_once(exo, peer, key)
    assert exo.wait_terminal(peer, key) == record


def test_twenty_concurrent_submissions_of_one_key(exo):
    peer = exo.peer(1)
    intent = exo.intent(peer)
    key = intent["idempotency_key"]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=exo.cfg.api_url, timeout=10.0) as client:
            return await asyncio.gather(*(
                client.post("/v1/intents", json=intent, headers=exo.auth(peer)) for _ in range(20)
            ))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert sum(not b["duplicate"] for b in bodies) == 1
    assert sum(b["duplicate"] for b in bodies) == 19
    assert len({b["stream_seq"] for b in bodies}) == 1

    exo.wait_terminal(peer, key)
    exo.run_one(peer)
    assert_exactly_once(exo, peer, key)
