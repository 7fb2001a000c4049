"""The deadline fence and the decision journal, against a real stack (nothing mocked).

- Fence: the effector never applies a call whose deadline (``Exo-Deadline-Ms``) has passed when
  it writes its ledger, so an effect the cell gave up on cannot land after the cell recorded
  FAILED: every key in the ledger belongs to an EXECUTED record, and every EXECUTED record to a key.
- Journal: a cell journals its EXECUTE decision before calling the effector; a redelivery reuses
  it, so a kill switch engaged between the effect and the (lost) record does not turn the record
  into DENIED over an applied effect, and the record still replays.
"""

from __future__ import annotations

import time
import uuid

import httpx
import orjson
import pytest

from exoarmur import natsio
from exoarmur.contracts import DecisionJournalV1, IntentV1, SafetySnapshot, key_digest
from exoarmur.decision import decide
from exoarmur.reliability.timeouts import TimeoutCategory, deadline_s
from exoarmur_cli.faults import ProcessFaults

pytestmark = pytest.mark.integration

CALL_MS = int(deadline_s(TimeoutCategory.EFFECTOR_CALL) * 1000)
REDELIVERY_S = deadline_s(TimeoutCategory.EXECUTION_INTENT) + 1.0  # the consumer's ack_wait


def cell_client(exo) -> httpx.Client:
    return httpx.Client(base_url=exo.cfg.effector_url, timeout=10.0,
                        headers={"authorization": f"Bearer {exo.cfg.effector_tokens['cell']}"})


def effect(exo, cell: httpx.Client, deadline_ms: int | None) -> tuple[str, httpx.Response]:
    key = f"{exo.tenants[0]}:fence-{uuid.uuid4().hex[:10]}"
    headers = {"Idempotency-Key": key}
    if deadline_ms is not None:
        headers["Exo-Deadline-Ms"] = str(deadline_ms)
    body = {"intent_ref": key, "tenant_id": exo.tenants[0], "node_id": exo.node(exo.tenants[0]),
            "action": "block_ip", "parameters": {}}
    return key, cell.post("/v1/effects", json=body, headers=headers)


def test_the_effector_refuses_a_call_whose_deadline_passed_during_its_latency(exo):
    exo.faults(latency_ms=300)
    try:
        with cell_client(exo) as cell:
            late_key, late = effect(exo, cell, int(time.time() * 1000) + 100)
            ok_key, ok = effect(exo, cell, int(time.time() * 1000) + 2000)
            _, garbled = effect(exo, cell, None)
            bad = cell.post("/v1/effects", json={"tenant_id": "t", "node_id": "n", "action": "a"},
                            headers={"Idempotency-Key": "x", "Exo-Deadline-Ms": "soon"})
            assert late.status_code == 412, late.text
            assert late.json()["reason_code"] == "TIMEOUT_EFFECTOR_CALL"
            assert "not applied" in late.json()["detail"]
            assert cell.get(f"/v1/effects/{late_key}").status_code == 404
            assert ok.status_code == 200 and cell.get(f"/v1/effects/{ok_key}").status_code == 200
            assert garbled.status_code == 200  # no deadline sent: no fence (callers that predate it)
            assert bad.status_code == 400
    finally:
        exo.faults()
    ledger = exo.ledger()
    assert late_key not in ledger and ok_key in ledger
    assert exo.effector.get("/v1/stats").json()["late"] >= 1


def test_effects_straddling_the_call_deadline_are_recorded_as_they_were_applied(exo):
    """Effector latency around the cells' per-call deadline: some calls answer in time, some
    time out at the cell. Whatever happened, no effect lands after its intent's record says
    FAILED, and every EXECUTED record has its effect."""
    peer = exo.peer(1)
    tag = uuid.uuid4().hex[:6]
    late_before = exo.effector.get("/v1/stats").json()["late"]
    exo.faults(latency_ms=CALL_MS - 100, jitter_ms=250, seed=20260101)
    keys = [f"straddle-{tag}-{i:02d}" for i in range(16)]
    try:
        for key in keys:
            exo.accept(peer, exo.intent(peer, key=key))
        records = {key: exo.wait_terminal(peer, key, timeout_s=30) for key in keys}
    finally:
        exo.faults()
    time.sleep(1.0)  # a call the fence failed to stop would have landed by now
    ledger = exo.ledger()
    outcomes = {key: record["outcome"] for key, record in records.items()}
    applied = {key for key in keys if f"{peer.tenant_id}:{key}" in ledger}
    executed = {key for key, outcome in outcomes.items() if outcome == "EXECUTED"}
    assert set(outcomes.values()) <= {"EXECUTED", "FAILED"}, outcomes
    assert applied == executed, {k: outcomes[k] for k in applied ^ executed}
    for key in executed:
        assert records[key]["receipt"]["receipt_id"] == ledger[f"{peer.tenant_id}:{key}"]["receipt_id"]
    late = exo.effector.get("/v1/stats").json()["late"] - late_before
    assert late >= 1, "no call outlived its deadline: the fault did not exercise the fence"
    print(f"outcomes={sorted(outcomes.values())} refused_late={late}")


def kill_cell_mid_call(exo, latency_ms: int) -> tuple:
    """Submit one intent with the effector ``latency_ms`` slow, and SIGKILL the only cell while
    its call is in flight; then wait out the call and clear the fault. Returns (peer, intent,
    key, ledger_key)."""
    peer = exo.peer(0)
    intent = exo.intent(peer)
    key = intent["idempotency_key"]
    exo.faults(latency_ms=latency_ms)
    requests_before = exo.effector.get("/v1/stats").json()["requests"]
    exo.accept(peer, intent)
    deadline = time.monotonic() + 10
    while exo.effector.get("/v1/stats").json()["requests"] == requests_before:
        assert time.monotonic() < deadline, "the cell never called the effector"
        time.sleep(0.01)
    ProcessFaults(exo.stack).kill("cell-0")
    time.sleep(latency_ms / 1000 + 0.3)
    exo.faults()
    return peer, intent, key, f"{peer.tenant_id}:{key}"


def engage_global_switch_and_restart_the_cell(exo) -> None:
    response = exo.api.put("/v1/killswitches/global", json={"engaged": True, "reason": "test"}, headers=exo.operator)
    assert response.status_code == 200, response.text
    exo.stack.start_component("cell-0")


def test_a_redelivered_intent_keeps_its_journaled_execute_over_a_switch_engaged_since(make_stack):
    """The cell is SIGKILLed while its effector call is in flight (the effect lands, no record);
    the global switch is engaged; the redelivery must record EXECUTED with the applied receipt."""
    with make_stack(cells=1, seed=11) as exo:
        # Inside the call deadline: killed mid-call, the effector still applies it.
        peer, intent, key, ledger_key = kill_cell_mid_call(exo, CALL_MS - 150)
        assert ledger_key in exo.ledger(), "the effect was not applied before the record"
        assert exo.audit_raw(peer.tenant_id, key) is None

        subject = natsio.journal_subject(peer.tenant_id, key_digest(peer.tenant_id, key))
        journaled = exo.stream_messages(natsio.JOURNAL_STREAM, subject)
        assert len(journaled) == 1
        entry = DecisionJournalV1.model_validate_json(journaled[0][1])
        assert entry.decision.execute and not entry.snapshot.global_switch

        engage_global_switch_and_restart_the_cell(exo)
        record = exo.wait_terminal(peer, key, timeout_s=REDELIVERY_S + 15)
        assert (record["outcome"], record["reason_code"]) == ("EXECUTED", "OK"), record
        assert record["receipt"]["receipt_id"] == exo.ledger()[ledger_key]["receipt_id"]
        assert record["decision"] == entry.decision.model_dump(mode="json")
        assert record["snapshot"] == entry.snapshot.model_dump(mode="json")
        # It replays: the pure decision on the recorded snapshot is the recorded decision.
        replayed = decide(IntentV1.model_validate(intent), SafetySnapshot.model_validate(record["snapshot"]))
        assert replayed.model_dump(mode="json") == record["decision"]

        # A new intent is decided afresh (nothing journaled for it): the switch denies it, and
        # that refusal is journaled as it is recorded (a later delivery would keep it).
        denied = exo.run_one(peer)
        assert (denied["outcome"], denied["reason_code"]) == ("DENIED", "KILL_SWITCH_GLOBAL")
        other = natsio.journal_subject(peer.tenant_id, key_digest(peer.tenant_id, denied["idempotency_key"]))
        [(_, journaled_denial)] = exo.stream_messages(natsio.JOURNAL_STREAM, other)
        assert DecisionJournalV1.model_validate_json(journaled_denial).decision.model_dump(mode="json") \
            == denied["decision"]
        assert orjson.loads(exo.audit_raw(peer.tenant_id, key))["outcome"] == "EXECUTED"


def test_a_journaled_execute_whose_effect_never_landed_is_decided_afresh(make_stack):
    """The cell journals EXECUTE and is SIGKILLed while its call hangs past its deadline, so the
    effector refuses it (not applied). The global switch is engaged before the redelivery: the
    stale journaled EXECUTE must not be acted on after the switch; the record is DENIED and no
    effect lands."""
    with make_stack(cells=1, seed=12) as exo:
        # Past the call's deadline: the effector refuses it.
        peer, intent, key, ledger_key = kill_cell_mid_call(exo, CALL_MS + 300)
        subject = natsio.journal_subject(peer.tenant_id, key_digest(peer.tenant_id, key))
        assert len(exo.stream_messages(natsio.JOURNAL_STREAM, subject)) == 1  # EXECUTE was journaled
        assert ledger_key not in exo.ledger(), "the fence let a late call apply"

        engage_global_switch_and_restart_the_cell(exo)
        record = exo.wait_terminal(peer, key, timeout_s=REDELIVERY_S + 15)
        assert (record["outcome"], record["reason_code"]) == ("DENIED", "KILL_SWITCH_GLOBAL"), record
        assert ledger_key not in exo.ledger()
        replayed = decide(IntentV1.model_validate(intent), SafetySnapshot.model_validate(record["snapshot"]))
        assert replayed.model_dump(mode="json") == record["decision"]


def test_a_delivery_that_loses_the_journal_race_leaves_the_effect_to_the_winner_until_its_fence(exo):
    """Two deliveries of one intent at once (a redelivery while the first is still at work): the
    one that journaled EXECUTE first acts; the other must not call the effector beside it (the
    winner could record FAILED, its breaker open and the effector saying "not applied", while the
    loser's call lands: a clustered full run recorded four such intents). Here the winner is
    another cell, journaled by hand and never acting: the cell leaves the intent until that
    entry's fence has passed, then decides it afresh and executes it."""
    peer = exo.peer(0)
    template = exo.run_one(peer)  # an EXECUTE decision and its snapshot, as a cell writes them
    intent = exo.intent(peer)
    key = intent["idempotency_key"]
    fence_ms = int(time.time() * 1000) + 4000
    entry = DecisionJournalV1(
        tenant_id=peer.tenant_id, idempotency_key=key, intent_hash=exo.intent_hash(intent),
        decision=template["decision"], snapshot=template["snapshot"], cell_id="cell-elsewhere", not_after_ms=fence_ms)
    subject = natsio.journal_subject(peer.tenant_id, key_digest(peer.tenant_id, key))

    async def journal_first(js) -> None:
        await js.publish(subject, entry.canonical(), headers={"Nats-Expected-Last-Subject-Sequence": "0"})

    exo.nats(journal_first, role="cell")
    exo.accept(peer, intent)
    while time.time() * 1000 < fence_ms - 500:
        assert f"{peer.tenant_id}:{key}" not in exo.ledger(), "called the effector beside the journal's winner"
        time.sleep(0.2)
    record = exo.wait_terminal(peer, key, timeout_s=20)
    assert (record["outcome"], record["reason_code"]) == ("EXECUTED", "OK"), record
    assert record["decided_at_ms"] >= fence_ms  # decided afresh once the winner's calls were fenced off
    assert exo.ledger()[f"{peer.tenant_id}:{key}"]["first_applied_at_ms"] >= fence_ms


def test_an_execute_closed_as_failed_in_the_journal_is_recorded_failed_and_never_called_again(exo):
    """A delivery whose calls failed closes its journaled EXECUTE as failed before it records
    FAILED, so a delivery that comes after its fence (a clustered full run had one still at work
    past it, recording FAILED BREAKER_OPEN while the next applied the effect) records the same
    and calls nothing. Here the closed entry is written by hand, its fence long past."""
    peer = exo.peer(0)
    template = exo.run_one(peer)
    intent = exo.intent(peer)
    key = intent["idempotency_key"]
    entry = DecisionJournalV1(
        tenant_id=peer.tenant_id, idempotency_key=key, intent_hash=exo.intent_hash(intent),
        decision=template["decision"], snapshot=template["snapshot"], cell_id="cell-elsewhere",
        not_after_ms=int(time.time() * 1000) - 60_000, failed="BREAKER_OPEN")
    subject = natsio.journal_subject(peer.tenant_id, key_digest(peer.tenant_id, key))

    async def journal_first(js) -> None:
        await js.publish(subject, entry.canonical(), headers={"Nats-Expected-Last-Subject-Sequence": "0"})

    exo.nats(journal_first, role="cell")
    exo.accept(peer, intent)
    record = exo.wait_terminal(peer, key, timeout_s=20)
    assert (record["outcome"], record["reason_code"], record["attempts"]) == ("FAILED", "BREAKER_OPEN", 0), record
    assert record["decision"] == template["decision"]  # the decision it replays to, not a second one
    time.sleep(0.5)
    assert f"{peer.tenant_id}:{key}" not in exo.ledger()
