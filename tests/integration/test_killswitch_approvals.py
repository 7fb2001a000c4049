"""Kill switches and unreadable safety state deny; A2/A3 intents wait for a matching approval."""

from __future__ import annotations

import time
from contextlib import contextmanager

import orjson
import pytest

from exoarmur import natsio
from exoarmur.contracts import KillSwitchState

pytestmark = pytest.mark.integration


@contextmanager
def switch(exo, path: str):
    """Engage a kill switch for the block; always disengage it, and check it is off again."""
    response = exo.api.put(path, json={"engaged": True, "reason": "test"}, headers=exo.operator)
    assert response.status_code == 200, response.text
    try:
        yield
    finally:
        response = exo.api.put(path, json={"engaged": False}, headers=exo.operator)
        assert response.status_code == 200, response.text


def test_global_kill_switch_denies_everything_and_effects_nothing(exo):
    peer_a, peer_b = exo.peer(0), exo.peer(1)
    refused = exo.api.put("/v1/killswitches/global", json={"engaged": True}, headers=exo.auth(peer_a))
    assert refused.status_code == 403 and refused.json()["reason_code"] == "FORBIDDEN"

    with switch(exo, "/v1/killswitches/global"):
        rows_before = exo.ledger()
        records = [exo.run_one(peer) for peer in (peer_a, peer_b, peer_a)]
        assert [(r["outcome"], r["reason_code"]) for r in records] == [("DENIED", "KILL_SWITCH_GLOBAL")] * 3
        assert all(r["snapshot"]["global_switch"] and r["receipt"] is None for r in records)
        assert exo.ledger() == rows_before
    # Disengaged: the same kind of intent executes again.
    assert exo.run_one(peer_a)["outcome"] == "EXECUTED"


def test_tenant_kill_switch_denies_only_that_tenant(exo):
    tenant_a = exo.tenants[0]
    peer_a, peer_b = exo.peer(0), exo.peer(1)
    with switch(exo, f"/v1/killswitches/tenants/{tenant_a}"):
        switches = exo.api.get("/v1/killswitches", headers=exo.operator).json()
        assert switches[natsio.tenant_switch_key(tenant_a)]["engaged"] is True
        rows_before = exo.ledger()
        denied = exo.run_one(peer_a)
        allowed = exo.run_one(peer_b)
        assert (denied["outcome"], denied["reason_code"]) == ("DENIED", "KILL_SWITCH_TENANT")
        assert (allowed["outcome"], allowed["reason_code"]) == ("EXECUTED", "OK")
        new_rows = set(exo.ledger()) - set(rows_before)
        assert new_rows == {f"{peer_b.tenant_id}:{allowed['idempotency_key']}"}
    assert exo.run_one(peer_a)["outcome"] == "EXECUTED"


def test_garbage_in_the_safety_bucket_fails_closed(exo):
    peer = exo.peer(0)

    async def put_global(js, value: bytes):
        kv = await js.key_value(natsio.SAFETY_BUCKET)
        return await kv.put(natsio.GLOBAL_SWITCH_KEY, value)

    exo.nats(lambda js: put_global(js, b"{not json at all"), role="nemesis")
    try:
        rows_before = exo.ledger()
        records = [exo.run_one(peer, action_class=cls) for cls in ("A0", "A1")]
        for record in records:
            assert (record["outcome"], record["reason_code"]) == ("DENIED", "SAFETY_STATE_UNAVAILABLE"), record
            assert record["snapshot"]["readable"] is False
        assert exo.ledger() == rows_before
        # The operator's view must not report an unreadable switch as "off".
        view = exo.api.get("/v1/killswitches", headers=exo.operator).json()[natsio.GLOBAL_SWITCH_KEY]
        assert view["readable"] is False and view["reason_code"] == "SAFETY_STATE_UNAVAILABLE"
    finally:
        exo.nats(lambda js: put_global(js, KillSwitchState(engaged=False).canonical()), role="nemesis")
    assert exo.run_one(peer)["outcome"] == "EXECUTED"


def test_a_deleted_safety_bucket_fails_closed(exo):
    peer = exo.peer(2)

    async def delete(js):
        return await js.delete_stream(f"KV_{natsio.SAFETY_BUCKET}")

    assert exo.nats(delete, role="provisioner") is True
    try:
        rows_before = exo.ledger()
        record = exo.run_one(peer)
        assert (record["outcome"], record["reason_code"]) == ("DENIED", "SAFETY_STATE_UNAVAILABLE"), record
        assert exo.ledger() == rows_before
    finally:
        exo.nats(natsio.provision, role="provisioner")  # the provisioning step: the bucket is back, empty
    assert exo.run_one(peer)["outcome"] == "EXECUTED"


def pending_events(exo, tenant_id: str, key: str) -> list[dict]:
    events = [orjson.loads(data) for _, data in exo.stream_messages(natsio.EVENTS_STREAM, f"exo.events.pending.{tenant_id}")]
    return [e for e in events if e["idempotency_key"] == key]


def approve(exo, intent: dict, status: str = "APPROVED", intent_hash: str | None = None) -> None:
    body = {"tenant_id": intent["tenant_id"], "idempotency_key": intent["idempotency_key"],
            "intent_hash": intent_hash or exo.intent_hash(intent), "status": status}
    response = exo.api.post("/v1/approvals", json=body, headers=exo.operator)
    assert response.status_code == 200, response.text


def wait_pending(exo, peer, intent: dict, hold_s: float = 1.0) -> None:
    """The cell announced the intent as pending, and it stays without a terminal record."""
    key = intent["idempotency_key"]
    deadline = time.monotonic() + 10
    while not pending_events(exo, peer.tenant_id, key):
        assert time.monotonic() < deadline, "no cell announced the A2 intent as pending"
        time.sleep(0.05)
    assert pending_events(exo, peer.tenant_id, key)[0]["intent_hash"] == exo.intent_hash(intent)
    until = time.monotonic() + hold_s
    while time.monotonic() < until:
        response = exo.status(peer, key)
        assert response.status_code == 200 and response.json()["state"] == "ACCEPTED", response.text
        time.sleep(0.1)


def test_a2_waits_for_approval_then_executes(exo):
    peer = exo.peer(1)
    intent = exo.intent(peer, action_class="A2", action="isolate_host")
    exo.accept(peer, intent)
    wait_pending(exo, peer, intent)
    assert f"{peer.tenant_id}:{intent['idempotency_key']}" not in exo.ledger()

    refused = exo.api.post("/v1/approvals", json={}, headers=exo.auth(peer))
    assert refused.status_code == 403 and refused.json()["reason_code"] == "FORBIDDEN"
    approve(exo, intent)
    record = exo.wait_terminal(peer, intent["idempotency_key"])
    assert (record["outcome"], record["reason_code"]) == ("EXECUTED", "OK"), record
    assert record["snapshot"]["approval"]["intent_hash"] == exo.intent_hash(intent) == record["intent_hash"]
    assert exo.ledger()[f"{peer.tenant_id}:{intent['idempotency_key']}"]["calls"] == 1


@pytest.mark.parametrize("status, wrong_hash, reason", [
    ("DENIED", False, "APPROVAL_DENIED"),
    ("APPROVED", True, "APPROVAL_MISMATCH"),
])
def test_a2_with_a_refusing_approval_is_denied(exo, status, wrong_hash, reason):
    peer = exo.peer(2)
    intent = exo.intent(peer, action_class="A2", action="isolate_host")
    exo.accept(peer, intent)
    wait_pending(exo, peer, intent, hold_s=0.3)
    # A hash of another intent (same key, other parameters) is not an approval of this one.
    other = exo.intent_hash({**intent, "parameters": {"ip": "10.9.9.9"}}) if wrong_hash else None
    approve(exo, intent, status=status, intent_hash=other)
    record = exo.wait_terminal(peer, intent["idempotency_key"])
    assert (record["outcome"], record["reason_code"]) == ("DENIED", reason), record
    assert record["receipt"] is None
    assert f"{peer.tenant_id}:{intent['idempotency_key']}" not in exo.ledger()


def test_an_unapproved_a2_expires(make_stack):
    wait_ms = 1500
    with make_stack(overrides={"approval_wait_ms": wait_ms}) as exo:
        peer = exo.peer(0)
        intent = exo.intent(peer, action_class="A2", action="isolate_host")
        exo.accept(peer, intent)
        started = time.monotonic()
        record = exo.wait_terminal(peer, intent["idempotency_key"], timeout_s=wait_ms / 1000 + 10)
        waited = time.monotonic() - started
        assert (record["outcome"], record["reason_code"]) == ("EXPIRED", "APPROVAL_EXPIRED"), record
        snapshot = record["snapshot"]
        assert snapshot["approval_wait_ms"] == wait_ms
        assert snapshot["now_ms"] - snapshot["submitted_at_ms"] >= wait_ms
        assert waited < wait_ms / 1000 + 3, waited
        assert exo.ledger() == {}
        # An A1 intent on the same stack is not held up by the wait.
        assert exo.run_one(peer)["outcome"] == "EXECUTED"


def test_an_intent_delivered_again_as_if_for_the_first_time_keeps_its_refusal(exo):
    """A consumer that fails over may deliver an intent again without marking it redelivered (a
    clustered full run recorded DENIED for one while the effector applied it 5 s later). Here
    the global switch refuses an intent; the switch is released; the very same intent message is
    then delivered again as a first delivery (published once more under another message id). The
    decision journal's first writer wins: the refusal stands, one record, no effect."""
    peer = exo.peer(0)
    with switch(exo, "/v1/killswitches/global"):
        denied = exo.run_one(peer)
    assert (denied["outcome"], denied["reason_code"]) == ("DENIED", "KILL_SWITCH_GLOBAL")
    key = denied["idempotency_key"]
    [(subject, data)] = exo.stream_messages(natsio.INTENTS_STREAM, exo.intent_subject(peer.tenant_id, key))

    async def deliver_again(js) -> None:
        await js.publish(subject, data, headers={"Nats-Msg-Id": f"again:{peer.tenant_id}:{key}"})

    def cells_busy() -> int:
        info = exo.nats(lambda js: js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER))
        return info.num_pending + info.num_ack_pending

    exo.nats(deliver_again, role="api")
    deadline = time.monotonic() + 15
    while cells_busy():
        assert time.monotonic() < deadline, "the second delivery was never acked"
        time.sleep(0.1)
    assert exo.run_one(peer)["outcome"] == "EXECUTED"  # the cells are working, the switch is off
    assert f"{peer.tenant_id}:{key}" not in exo.ledger()
    records = [r for r in exo.audit(peer.tenant_id) if r["idempotency_key"] == key]
    assert [(r["outcome"], r["reason_code"]) for r in records] == [("DENIED", "KILL_SWITCH_GLOBAL")]
