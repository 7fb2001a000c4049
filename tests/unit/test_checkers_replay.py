"""Decision replay (replay.replay_decisions and safety.decision_replay) over real sealed records."""

from __future__ import annotations

from builders import T0_WALL_MS, approval, audit_row, intent, intent_row, record, recorded, snapshot

from exoarmur.contracts import Decision, Outcome, ReasonCode
from exoarmur_cli.checkers.replay import replay_decisions
from exoarmur_cli.checkers.safety import decision_replay


def paths() -> tuple[list[dict], list[dict]]:
    """One record per decision path, each with its intent: (audit rows, intent rows)."""
    ok, glob, ten, blind, foreign = (intent(f"replay-0000{i}") for i in range(1, 6))
    a2_ok, a2_bad, a3_late = (intent(f"replay-0001{i}", action_class=c) for i, c in enumerate(("A2", "A2", "A3")))
    other_node = intent("replay-00020", node="n2")
    now = T0_WALL_MS + 1_000
    cases = [
        (ok, snapshot(ok)),
        (glob, snapshot(glob, global_switch=True, global_revision=3)),
        (ten, snapshot(ten, tenant_switch=True)),
        (blind, snapshot(blind, readable=False)),
        (foreign, snapshot(foreign, node_tenant=None)),
        (a2_ok, snapshot(a2_ok, approval=approval(a2_ok))),
        (a2_bad, snapshot(a2_bad, approval=approval(a2_bad, intent_hash="0" * 64))),
        (a3_late, snapshot(a3_late, approval=approval(a3_late, expires_at_ms=now - 1))),
        (other_node, snapshot(other_node)),
    ]
    return ([audit_row(record(i, s), seq=n) for n, (i, s) in enumerate(cases, 1)],
            [intent_row(i, seq=n) for n, (i, _) in enumerate(cases, 1)])


def test_consistent_records_replay_without_mismatch():
    audit, intents = paths()
    result = replay_decisions(audit, intents)
    assert result.replayed == 9
    assert (result.mismatches, result.intent_hash_mismatches, result.seal_failures, result.missing_intents) == \
        ([], [], [], [])
    assert set(result.reasons_covered) == {"OK", "KILL_SWITCH_GLOBAL", "KILL_SWITCH_TENANT",
                                           "SAFETY_STATE_UNAVAILABLE", "UNKNOWN_NODE", "APPROVAL_MISMATCH",
                                           "APPROVAL_EXPIRED", "TENANT_MISMATCH"}
    metrics, _ = decision_replay(recorded(audit=audit, intents=intents))
    assert metrics == {"decisions_replayed": 9, "decision_mismatches": 0, "intent_hash_mismatches": 0,
                       "audit_seal_failures": 0, "records_without_intent": 0, "decision_reasons_covered": 8}


def test_execution_that_failed_after_an_execute_decision_is_consistent():
    the_intent = intent("timeout-00001")
    rec = record(the_intent, outcome="FAILED", reason_code="TIMEOUT_EFFECTOR_CALL", attempts=3)
    result = replay_decisions([audit_row(rec)], [intent_row(the_intent)])
    assert result.replayed == 1 and result.mismatches == []


def test_tampered_decision_is_a_mismatch_with_both_sides_shown():
    the_intent = intent("replay-00001")
    snap = snapshot(the_intent, global_switch=True, global_revision=3)
    executed = Decision(outcome=Outcome.EXECUTED, reason_code=ReasonCode.OK, execute=True)
    rec = record(the_intent, snap, decision=executed, outcome="EXECUTED", reason_code="OK")  # sealed: only replay sees it
    result = replay_decisions([audit_row(rec)], [intent_row(the_intent)])
    assert result.seal_failures == []
    assert result.mismatches == [{
        "intent": "t1:replay-00001",
        "recorded": {"decision": executed.model_dump(mode="json"), "outcome": "EXECUTED", "reason_code": "OK"},
        "replayed": {"outcome": "DENIED", "reason_code": "KILL_SWITCH_GLOBAL", "execute": False},
    }]
    metrics, evidence = decision_replay(recorded(audit=[audit_row(rec)], intents=[intent_row(the_intent)]))
    assert metrics["decision_mismatches"] == 1
    assert evidence["mismatches"][0]["intent"] == "t1:replay-00001"


def test_outcome_that_contradicts_a_correct_decision_is_a_mismatch():
    the_intent = intent("replay-00001")
    rec = record(the_intent, snapshot(the_intent, tenant_switch=True), outcome="EXECUTED", reason_code="OK")
    result = replay_decisions([audit_row(rec)], [intent_row(the_intent)])
    assert len(result.mismatches) == 1
    assert result.mismatches[0]["recorded"]["outcome"] == "EXECUTED"
    assert result.mismatches[0]["replayed"]["reason_code"] == "KILL_SWITCH_TENANT"


def test_denial_under_another_reason_is_a_mismatch():
    the_intent = intent("replay-00001")
    rec = record(the_intent, snapshot(the_intent, tenant_switch=True), reason_code="KILL_SWITCH_GLOBAL")
    assert len(replay_decisions([audit_row(rec)], [intent_row(the_intent)]).mismatches) == 1


def test_record_edited_without_resealing_fails_its_seal():
    audit, intents = paths()
    audit[0]["record"] = {**audit[0]["record"], "attempts": 7}
    metrics, evidence = decision_replay(recorded(audit=audit, intents=intents))
    assert metrics["audit_seal_failures"] == 1
    assert evidence["seal_failures"] == [audit[0]["record"]["audit_id"]]
    assert metrics["decision_mismatches"] == 0  # the decision itself still replays


def test_intent_that_is_not_the_one_decided():
    the_intent = intent("replay-00001")
    rec = record(the_intent)
    other = intent("replay-00001", correlation_id="edited")  # same tenant and key, another hash
    metrics, _ = decision_replay(recorded(audit=[audit_row(rec)], intents=[intent_row(other)]))
    assert metrics["intent_hash_mismatches"] == 1
    assert metrics["decisions_replayed"] == 1


def test_record_without_intent_or_unreadable():
    audit, intents = paths()
    audit.append({"seq": 99, "subject": "exo.audit.t1.x", "timestamp_ms": 0, "record": {"audit_id": "garbage"}})
    metrics, evidence = decision_replay(recorded(audit=audit, intents=intents[1:]))
    assert metrics["records_without_intent"] == 2  # one missing intent, one unreadable record
    assert evidence["missing_intents"] == [audit[0]["record"]["audit_id"]]
    assert metrics["decisions_replayed"] == 8


def test_invalid_recorded_intent_counts_as_missing():
    the_intent = intent("replay-00001")
    broken = {**the_intent.model_dump(mode="json"), "action": "NOT A VALID ACTION"}
    result = replay_decisions([audit_row(record(the_intent))], [intent_row(broken)])
    assert len(result.missing_intents) == 1 and result.replayed == 0


def test_nothing_recorded_replays_nothing():
    metrics, _ = decision_replay(recorded())
    assert metrics["decisions_replayed"] == 0 and metrics["decision_reasons_covered"] == 0
