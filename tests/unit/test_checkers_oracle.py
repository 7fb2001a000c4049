"""The harness's decision table (checkers/oracle.py): complete, unambiguous, equal to the clean
``decide()`` on every combination, and able to disagree with a wrong one."""

from __future__ import annotations

import pytest
from builders import T0_WALL_MS, Hist, approval, audit_row, intent, intent_row, record, snapshot

from exoarmur.contracts import Decision, IntentV1, Outcome, ReasonCode, SafetySnapshot
from exoarmur.decision import decide
from exoarmur_cli.checkers.oracle import (
    COLUMNS, DOMAIN, EXECUTE, TABLE, TableError, all_facts, decision_oracle, expected, lookup,
)
from exoarmur_cli.recorded import Recorded

NOW = T0_WALL_MS + 10_000
SUBMITTED = NOW - 1_000
WAIT_MS = 2_000
OWNERS = {"n1": "t1", "n2": "t2"}


def build(facts: dict) -> tuple[IntentV1, SafetySnapshot, str | None]:
    """An intent, a snapshot and the harness's owner of the node that realise ``facts``."""
    the_intent = intent("k1", "t1", node="n1", action_class="A2" if facts["needs_approval"] else "A1")
    owner = {"unknown": None, "own": "t1", "foreign": "t2"}[facts["node"]]
    grant = None
    submitted = NOW - (WAIT_MS if facts["waited"] else WAIT_MS - 1)
    if facts["approval"] == "present":
        grant = approval(the_intent, status=facts["status"],
                         intent_hash=None if facts["hash"] == "match" else "0" * 64,
                         expires_at_ms=NOW - (0 if facts["expired"] else -1),  # expires_at == now is expired
                         granted_at_ms=submitted + WAIT_MS - (0 if facts["late"] else 1))  # at the wait: late
    snap = SafetySnapshot(readable=facts["readable"], global_switch=facts["global_switch"],
                          tenant_switch=facts["tenant_switch"], approval=grant, node_tenant=owner, now_ms=NOW,
                          submitted_at_ms=submitted, approval_wait_ms=WAIT_MS)
    return the_intent, snap, owner


def combos():
    return list(all_facts())


def test_the_table_is_complete_and_unambiguous():
    # node x readable, 2 switches, A2/A3 x (absent x waited | present x late, hash, status, expired x waited)
    assert len(combos()) == 3 * 2 ** 4 * (2 + 2 ** 4 * 2) == 1632
    for facts in combos():
        lookup(facts)  # raises TableError on no row or two rows
    assert all(len(row) == len(COLUMNS) + 1 for row in TABLE)
    assert set(DOMAIN) == set(COLUMNS)


def test_every_row_is_reached():
    reached = {id(row) for facts in combos() for row in TABLE
               if all(w == "-" or facts[c] == w for c, w in zip(COLUMNS, row[:-1]))}
    assert reached == {id(row) for row in TABLE}


def test_table_agrees_with_the_clean_decide_on_every_combination():
    for facts in combos():
        the_intent, snap, owner = build(facts)
        want = expected(the_intent.model_dump(mode="json"), snap.model_dump(mode="json"), owner)
        got = decide(the_intent, snap)
        assert (got.outcome.value, got.reason_code.value) == want, facts
        assert got.execute == (want == EXECUTE), facts


def test_lookup_refuses_facts_outside_the_domain():
    facts = next(iter(combos()))
    with pytest.raises(TableError):
        lookup({**facts, "node": "somebody"})


def _switches_before_node(the_intent: IntentV1, snap: SafetySnapshot) -> Decision:
    """A plausible wrong decide: checks the global switch before the node's owner."""
    if snap.readable and snap.global_switch:
        return Decision(outcome=Outcome.DENIED, reason_code=ReasonCode.KILL_SWITCH_GLOBAL)
    return decide(the_intent, snap)


def _ignores_expiry(the_intent: IntentV1, snap: SafetySnapshot) -> Decision:
    """A wrong decide that treats any approved, matching approval as valid, expired or not."""
    if snap.approval is not None and snap.approval.status.value == "APPROVED":
        snap = snap.model_copy(update={"approval": snap.approval.model_copy(update={"expires_at_ms": NOW + 1})})
    return decide(the_intent, snap)


def _status_before_hash(the_intent: IntentV1, snap: SafetySnapshot) -> Decision:
    """A wrong decide that reads the approval's status before checking it is bound to this intent."""
    if snap.approval is not None and snap.approval.status.value == "DENIED" and snap.readable \
            and snap.node_tenant == the_intent.tenant_id and not (snap.global_switch or snap.tenant_switch) \
            and the_intent.action_class.value in ("A2", "A3"):
        return Decision(outcome=Outcome.DENIED, reason_code=ReasonCode.APPROVAL_DENIED)
    return decide(the_intent, snap)


@pytest.mark.parametrize("wrong", [_switches_before_node, _ignores_expiry, _status_before_hash])
def test_a_wrong_decide_disagrees_with_the_table(wrong):
    disagreements = 0
    for facts in combos():
        the_intent, snap, owner = build(facts)
        got = wrong(the_intent, snap)
        disagreements += (got.outcome.value, got.reason_code.value) != \
            expected(the_intent.model_dump(mode="json"), snap.model_dump(mode="json"), owner)
    assert disagreements > 0


# --- the checker over recorded data -------------------------------------------------------------

def rec_of(cases: list[tuple[IntentV1, SafetySnapshot, dict]], *, owners=None, wait_ms=WAIT_MS) -> Recorded:
    """Recorded data: each case's record (with overrides) and its intent stored at SUBMITTED."""
    params = {"node_owners": OWNERS if owners is None else owners, "policy": {"approval_wait_s": wait_ms / 1000}}
    audit = [audit_row(record(i, s, **o), seq=n) for n, (i, s, o) in enumerate(cases, 1)]
    intents = [intent_row(i, timestamp_ms=SUBMITTED, seq=n) for n, (i, _, _) in enumerate(cases, 1)]
    return Recorded(audit=audit, intents=intents, params=params)


def snap_for(the_intent: IntentV1, now_ms: int = NOW, **fields) -> SafetySnapshot:
    return snapshot(the_intent, now_ms, **{"submitted_at_ms": SUBMITTED, "approval_wait_ms": WAIT_MS, **fields})


def clean_cases():
    ok, glob, a2_ok, a2_wait, foreign = (intent(f"k{i}", action_class=c)
                                         for i, c in enumerate(("A1", "A1", "A2", "A2", "A1")))
    other = intent("k9", node="n2")
    return [(ok, snap_for(ok), {}), (glob, snap_for(glob, global_switch=True, global_revision=2), {}),
            (a2_ok, snap_for(a2_ok, approval=approval(a2_ok)), {}),
            (a2_wait, snap_for(a2_wait, now_ms=SUBMITTED + WAIT_MS), {}),
            (foreign, snap_for(foreign), {"outcome": Outcome.FAILED, "reason_code": ReasonCode.RETRY_EXHAUSTED}),
            (other, snap_for(other, node_tenant="t2"), {})]


def test_clean_records_agree_with_the_table():
    metrics, evidence = decision_oracle(rec_of(clean_cases()))
    assert metrics == {"oracle_decisions_checked": 6, "oracle_mismatches": 0, "oracle_records_unjudged": 0,
                       "oracle_reasons_covered": 4, "snapshot_node_owner_mismatches": 0,
                       "snapshot_input_mismatches": 0}, evidence


def test_a_decision_the_table_forbids_is_a_mismatch():
    cases = clean_cases()
    wrong = intent("k20", action_class="A2")  # approval expired at decision time, yet executed
    snap = snap_for(wrong, approval=approval(wrong, expires_at_ms=NOW))
    cases.append((wrong, snap, {"decision": Decision(outcome=Outcome.EXECUTED, reason_code=ReasonCode.OK,
                                                     execute=True),
                                "outcome": Outcome.EXECUTED, "reason_code": ReasonCode.OK}))
    metrics, evidence = decision_oracle(rec_of(cases))
    assert metrics["oracle_mismatches"] == 1
    assert evidence["mismatches"][0]["expected"] == ["EXPIRED", "APPROVAL_EXPIRED"]


def test_executed_outcome_without_an_execute_decision_is_a_mismatch():
    cases = clean_cases()
    ten = intent("k21")
    cases.append((ten, snap_for(ten, tenant_switch=True), {"outcome": Outcome.EXECUTED,
                                                           "reason_code": ReasonCode.OK}))
    assert decision_oracle(rec_of(cases))[0]["oracle_mismatches"] == 1


def test_the_harness_owner_decides_not_the_snapshot():
    """The stack believed the node was the tenant's and executed; the harness configured it for t2."""
    cases = clean_cases()
    metrics, evidence = decision_oracle(rec_of(cases, owners={"n1": "t2", "n2": "t2"}))
    assert metrics["oracle_mismatches"] == 5  # every n1 record decided as if t1 owned it
    assert metrics["snapshot_node_owner_mismatches"] == 5
    assert evidence["node_owner_mismatches"][0]["harness_owner"] == "t2"


def test_the_harness_submission_time_and_wait_decide_not_the_snapshot():
    """A snapshot that moved its submission time later makes an expired intent look pending."""
    waiting = intent("k30", action_class="A2")
    snap = snap_for(waiting, now_ms=SUBMITTED + WAIT_MS, submitted_at_ms=SUBMITTED + 5)
    metrics, evidence = decision_oracle(rec_of([(waiting, snap, {})]))
    assert metrics["snapshot_input_mismatches"] == 1
    assert metrics["oracle_mismatches"] == 1
    assert evidence["mismatches"][0]["expected"] == ["EXPIRED", "APPROVAL_EXPIRED"]
    longer = decision_oracle(rec_of([(waiting, snap_for(waiting, now_ms=SUBMITTED + WAIT_MS), {})],
                                    wait_ms=WAIT_MS + 1))[0]
    assert (longer["snapshot_input_mismatches"], longer["oracle_mismatches"]) == (1, 1)


def test_a_late_grant_is_judged_by_when_the_harness_asked_for_it_not_by_the_snapshot_alone():
    """A snapshot that lost its approval's grant time makes a late approval look in time; the
    harness's own log of when it asked for the grant says otherwise."""
    late = intent("k40", action_class="A2")
    snap = snap_for(late, now_ms=SUBMITTED + WAIT_MS + 100, approval=approval(late))  # no granted_at_ms
    executed = {"decision": Decision(outcome=Outcome.EXECUTED, reason_code=ReasonCode.OK, execute=True),
                "outcome": Outcome.EXECUTED, "reason_code": ReasonCode.OK}
    data = rec_of([(late, snap, executed)])
    assert decision_oracle(data)[0]["oracle_mismatches"] == 0  # no harness grant on record: nothing says late
    for asked_ms, mismatches in ((SUBMITTED + WAIT_MS + 30, 1), (SUBMITTED + WAIT_MS - 30, 0)):
        hist = Hist()
        hist.add("invoke", "approval", "operator", "killswitch", key="k40", tenant_id=late.tenant_id,
                 status="APPROVED", intent_hash=late.intent_hash(), invoked_wall_ms=asked_ms)
        metrics, evidence = decision_oracle(Recorded(audit=data.audit, intents=data.intents, params=data.params,
                                                     history=hist.events))
        assert metrics["oracle_mismatches"] == mismatches, asked_ms
    assert evidence["mismatches"] == [] and metrics["oracle_decisions_checked"] == 1


def test_a_record_without_its_intent_is_unjudged_and_no_owners_is_no_measurement():
    cases = clean_cases()
    data = rec_of(cases)
    data = Recorded(audit=data.audit, intents=data.intents[1:], params=data.params)
    metrics, _ = decision_oracle(data)
    assert (metrics["oracle_records_unjudged"], metrics["oracle_decisions_checked"]) == (1, 5)
    metrics, evidence = decision_oracle(Recorded(audit=data.audit, intents=data.intents, params={}))
    assert metrics == {} and "node_owners" in evidence["missing"]
