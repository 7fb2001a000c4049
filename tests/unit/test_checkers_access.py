"""checkers.access: refusals as the server recorded them, forgeries searched in the exports."""

from __future__ import annotations

import pytest
from builders import Hist, audit_row, intent, intent_row, record, recorded

from exoarmur.contracts import key_digest
from exoarmur_cli.checkers.access import access
from exoarmur_cli.history import INFO

REFUSED_BUS = 'nats: permissions violation for publish to "$kv.safety.global"'


def attempt(hist: Hist, surface: str, identity: str, action: str, *, refused: bool = True, **value) -> None:
    refusal = (REFUSED_BUS if surface == "nats" else "401 UNAUTHENTICATED") if refused else None
    hist.add(INFO, "access_attempt", identity, "tenancy", surface=surface, identity=identity, action=action,
             refused=refused, refusal=refusal, **value)


def clean_history() -> Hist:
    hist = Hist()
    attempt(hist, "nats", "outsider-anonymous", "connect")
    attempt(hist, "nats", "outsider-wrong-password", "connect")
    attempt(hist, "nats", "cell", "switch_write", marker="forged-s1")
    attempt(hist, "nats", "cell", "intent_publish", marker="forged-i1")
    attempt(hist, "nats", "harness", "approval_put", marker="forged-a1")
    attempt(hist, "nats", "api", "audit_forgery", marker="forged-f1", ahead_of={"tenant_id": "t1", "key": "k1"})
    attempt(hist, "effector", "no-credential", "effect_apply", marker="forged-e1", effect_key="t1:forged-e1",
            status=401)
    attempt(hist, "effector", "cell-credential", "faults_set", marker="forged-x1", status=403, faults_changed=False)
    return hist


def real_k1() -> dict:
    return record(intent("k1"))


def test_everything_refused_and_nothing_landed_is_clean() -> None:
    metrics, evidence = access(recorded(clean_history(), records=[real_k1()]))
    assert metrics == {
        "access_attempts": 8, "nats_forgery_attempts": 4, "forged_ahead_attempts": 1,
        "nats_outsider_connections_accepted": 0, "nats_forgeries_not_refused": 0,
        "effector_unauthorized_accepted": 0, "forgeries_landed": 0, "forged_ahead_real_records_missing": 0,
    }
    assert evidence["refusals_seen"]


def test_no_attempts_is_zero_attempts_so_the_non_vacuity_criterion_fails() -> None:
    metrics, _ = access(recorded(Hist()))
    assert metrics["access_attempts"] == 0 and metrics["nats_forgery_attempts"] == 0


@pytest.mark.parametrize("surface,identity,action,metric", [
    ("nats", "outsider-anonymous", "connect", "nats_outsider_connections_accepted"),
    ("nats", "api", "consumer_ack", "nats_forgeries_not_refused"),
    ("effector", "wrong-credential", "ledger_read", "effector_unauthorized_accepted"),
])
def test_an_attempt_the_server_did_not_refuse_counts(surface, identity, action, metric) -> None:
    hist = clean_history()
    attempt(hist, surface, identity, action, refused=False, marker="forged-zz")
    metrics, evidence = access(recorded(hist, records=[real_k1()]))
    assert metrics[metric] == 1
    assert metrics["forgeries_landed"] == 0  # nothing of it is in the exports


def test_a_forged_intent_in_the_intent_stream_landed() -> None:
    forged = intent("forged-i1").model_dump(mode="json")
    metrics, evidence = access(recorded(clean_history(), records=[real_k1()], intents=[intent_row(forged)]))
    assert metrics["forgeries_landed"] == 1 and evidence["landed"][0].startswith("intent ")


def test_a_forged_switch_or_approval_value_in_a_bucket_landed() -> None:
    kv = [{"bucket": "safety", "seq": 3, "subject": "$KV.safety.global", "operation": "PUT",
           "data": '{"engaged":false,"reason":"forged-s1"}'},
          {"bucket": "approvals", "seq": 1, "subject": "$KV.approvals.t1.abc", "operation": "PUT",
           "data": '{"idempotency_key":"forged-a1"}'},
          {"bucket": "safety", "seq": 4, "subject": "$KV.safety.global", "operation": "PUT",
           "data": '{"engaged":true,"reason":"drill"}'}]  # an operator's value is no forgery
    metrics, _ = access(recorded(clean_history(), records=[real_k1()], kv=kv))
    assert metrics["forgeries_landed"] == 2


def test_an_effect_or_fault_setting_by_a_forger_landed() -> None:
    hist = clean_history()
    attempt(hist, "effector", "wrong-credential", "faults_set", refused=False, marker="forged-x2",
            faults_changed=True)
    ledger = [{"idempotency_key": "t1:forged-e1", "tenant_id": "t1", "node_id": "n1", "calls": 1}]
    metrics, evidence = access(recorded(hist, records=[real_k1()], ledger=ledger))
    assert metrics["forgeries_landed"] == 2
    assert metrics["effector_unauthorized_accepted"] == 1


def test_a_forged_audit_record_in_place_of_the_real_one() -> None:
    subject = f"exo.audit.t1.{key_digest('t1', 'k1')}"
    forged = {"seq": 1, "subject": subject, "timestamp_ms": 1,
              "record": {"tenant_id": "t1", "idempotency_key": "k1", "outcome": "EXECUTED", "forged": "forged-f1"}}
    metrics, evidence = access(recorded(clean_history(), audit=[forged]))
    assert metrics["forgeries_landed"] == 1
    assert metrics["forged_ahead_real_records_missing"] == 1 and evidence["real_records_missing"] == ["t1:k1"]


def test_the_real_record_missing_after_a_forgery_attempt() -> None:
    metrics, _ = access(recorded(clean_history()))
    assert metrics["forged_ahead_real_records_missing"] == 1 and metrics["forgeries_landed"] == 0


def test_the_real_record_present_beside_other_records() -> None:
    other = record(intent("k2"))
    metrics, _ = access(recorded(clean_history(), audit=[audit_row(other, seq=2)], records=[real_k1()]))
    assert metrics["forged_ahead_real_records_missing"] == 0
