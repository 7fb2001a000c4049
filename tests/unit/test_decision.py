"""decide(intent, snapshot): every branch, their order, and purity (no clock, no randomness)."""

from __future__ import annotations

import pytest

from exoarmur.contracts import (
    ActionClass,
    ApprovalStatus,
    ApprovalV1,
    Decision,
    IntentV1,
    Outcome,
    ReasonCode,
    SafetySnapshot,
)
from exoarmur.decision import decide

NOW_MS = 1_700_000_010_000
SUBMITTED_MS = 1_700_000_000_000
WAIT_MS = 30_000


def intent(action_class: ActionClass = ActionClass.A1, **changes) -> IntentV1:
    fields = dict(intent_id="i-1", tenant_id="t1", peer_id="p1", node_id="n1", action="isolate_host",
                  action_class=action_class, idempotency_key="k-1", parameters={"reason": "test"})
    return IntentV1(**{**fields, **changes})


def approval(for_intent: IntentV1, status: ApprovalStatus = ApprovalStatus.APPROVED, **changes) -> ApprovalV1:
    fields = dict(tenant_id=for_intent.tenant_id, idempotency_key=for_intent.idempotency_key,
                  intent_hash=for_intent.intent_hash(), status=status, expires_at_ms=NOW_MS + 60_000)
    return ApprovalV1(**{**fields, **changes})


def snapshot(**changes) -> SafetySnapshot:
    fields = dict(readable=True, node_tenant="t1", now_ms=NOW_MS, submitted_at_ms=SUBMITTED_MS,
                  approval_wait_ms=WAIT_MS)
    return SafetySnapshot(**{**fields, **changes})


def denied(reason: ReasonCode) -> Decision:
    return Decision(outcome=Outcome.DENIED, reason_code=reason, execute=False)


EXECUTE = Decision(outcome=Outcome.EXECUTED, reason_code=ReasonCode.OK, execute=True)


@pytest.mark.parametrize("action_class", [ActionClass.A0, ActionClass.A1])
def test_clear_state_executes_classes_without_approval(action_class) -> None:
    assert decide(intent(action_class), snapshot()) == EXECUTE


def test_unknown_node_is_denied() -> None:
    assert decide(intent(), snapshot(node_tenant=None)) == denied(ReasonCode.UNKNOWN_NODE)


def test_node_of_another_tenant_is_denied() -> None:
    assert decide(intent(), snapshot(node_tenant="t2")) == denied(ReasonCode.TENANT_MISMATCH)


def test_unreadable_safety_state_fails_closed() -> None:
    assert decide(intent(), snapshot(readable=False)) == denied(ReasonCode.SAFETY_STATE_UNAVAILABLE)


def test_global_switch_denies() -> None:
    assert decide(intent(), snapshot(global_switch=True)) == denied(ReasonCode.KILL_SWITCH_GLOBAL)


def test_tenant_switch_denies() -> None:
    assert decide(intent(), snapshot(tenant_switch=True)) == denied(ReasonCode.KILL_SWITCH_TENANT)


def test_broadest_refusal_wins() -> None:
    everything = dict(node_tenant="t2", readable=False, global_switch=True, tenant_switch=True)
    assert decide(intent(), snapshot(**everything)).reason_code is ReasonCode.TENANT_MISMATCH
    everything.pop("node_tenant")
    assert decide(intent(), snapshot(**everything)).reason_code is ReasonCode.SAFETY_STATE_UNAVAILABLE
    everything.pop("readable")
    assert decide(intent(), snapshot(**everything)).reason_code is ReasonCode.KILL_SWITCH_GLOBAL
    # A switch is checked before an approval is looked at: an approved A2 intent is still denied.
    a2 = intent(ActionClass.A2)
    assert decide(a2, snapshot(tenant_switch=True, approval=approval(a2))) == denied(ReasonCode.KILL_SWITCH_TENANT)


@pytest.mark.parametrize("action_class", [ActionClass.A2, ActionClass.A3])
def test_approval_required_classes_wait_for_an_approval(action_class) -> None:
    got = decide(intent(action_class), snapshot())
    assert got == Decision(outcome=Outcome.PENDING_APPROVAL, reason_code=ReasonCode.APPROVAL_REQUIRED)
    assert not got.execute


def test_waiting_for_an_approval_expires_at_the_wait_bound() -> None:
    a2 = intent(ActionClass.A2)
    expired = Decision(outcome=Outcome.EXPIRED, reason_code=ReasonCode.APPROVAL_EXPIRED)
    just_before = snapshot(now_ms=SUBMITTED_MS + WAIT_MS - 1)
    assert decide(a2, just_before).outcome is Outcome.PENDING_APPROVAL
    assert decide(a2, snapshot(now_ms=SUBMITTED_MS + WAIT_MS)) == expired
    assert decide(a2, snapshot(now_ms=SUBMITTED_MS + WAIT_MS + 5_000)) == expired


@pytest.mark.parametrize("action_class", [ActionClass.A2, ActionClass.A3])
def test_a_valid_approval_executes(action_class) -> None:
    the_intent = intent(action_class)
    assert decide(the_intent, snapshot(approval=approval(the_intent))) == EXECUTE


def test_an_approval_for_other_content_is_a_mismatch() -> None:
    a2 = intent(ActionClass.A2)
    changed = intent(ActionClass.A2, parameters={"reason": "something else"})
    got = decide(changed, snapshot(approval=approval(a2)))
    assert got == denied(ReasonCode.APPROVAL_MISMATCH)


def test_a_denied_approval_denies() -> None:
    a2 = intent(ActionClass.A2)
    assert decide(a2, snapshot(approval=approval(a2, ApprovalStatus.DENIED))) == denied(ReasonCode.APPROVAL_DENIED)


def test_mismatch_is_checked_before_the_status() -> None:
    a2 = intent(ActionClass.A2)
    other = approval(a2, ApprovalStatus.DENIED, intent_hash="0" * 64)
    assert decide(a2, snapshot(approval=other)).reason_code is ReasonCode.APPROVAL_MISMATCH


def test_an_approval_expires_at_its_expiry_instant() -> None:
    a2 = intent(ActionClass.A2)
    expired = Decision(outcome=Outcome.EXPIRED, reason_code=ReasonCode.APPROVAL_EXPIRED)
    assert decide(a2, snapshot(approval=approval(a2, expires_at_ms=NOW_MS))) == expired
    assert decide(a2, snapshot(approval=approval(a2, expires_at_ms=NOW_MS - 1))) == expired
    assert decide(a2, snapshot(approval=approval(a2, expires_at_ms=NOW_MS + 1))) == EXECUTE


def test_an_approval_granted_after_the_wait_ran_out_comes_too_late_whatever_it_says() -> None:
    a2 = intent(ActionClass.A2)
    expired = Decision(outcome=Outcome.EXPIRED, reason_code=ReasonCode.APPROVAL_EXPIRED)
    in_time = approval(a2, granted_at_ms=SUBMITTED_MS + WAIT_MS - 1)
    assert decide(a2, snapshot(now_ms=SUBMITTED_MS + WAIT_MS + 100, approval=in_time)) == EXECUTE
    for status in ApprovalStatus:  # expired before it came: not denied either
        late = approval(a2, status, granted_at_ms=SUBMITTED_MS + WAIT_MS)
        assert decide(a2, snapshot(now_ms=SUBMITTED_MS + WAIT_MS + 100, approval=late)) == expired
    unknown = approval(a2)  # granted before grant times were recorded: judged as before
    assert decide(a2, snapshot(now_ms=SUBMITTED_MS + WAIT_MS + 100, approval=unknown)) == EXECUTE


def test_an_approval_without_a_grant_time_keeps_its_canonical_bytes() -> None:
    """Records sealed before ``granted_at_ms`` existed must still verify: no key when unknown."""
    a2 = intent(ActionClass.A2)
    assert b"granted_at_ms" not in approval(a2).canonical()
    timed = approval(a2, granted_at_ms=NOW_MS)
    assert b'"granted_at_ms":' in timed.canonical()
    assert ApprovalV1.model_validate_json(timed.canonical()) == timed
    assert SafetySnapshot.model_validate_json(snapshot(approval=timed).canonical()).approval == timed


def test_an_approval_on_a_class_that_needs_none_is_ignored() -> None:
    a1 = intent(ActionClass.A1)
    stale = approval(a1, ApprovalStatus.DENIED, expires_at_ms=0)
    assert decide(a1, snapshot(approval=stale)) == EXECUTE


def test_decide_is_a_pure_function_of_its_inputs() -> None:
    a2 = intent(ActionClass.A2)
    cases = [snapshot(), snapshot(now_ms=SUBMITTED_MS + WAIT_MS), snapshot(approval=approval(a2)),
             snapshot(readable=False), snapshot(global_switch=True)]
    first = [decide(a2, s).canonical() for s in cases]
    again = [decide(a2.model_copy(), s.model_copy()).canonical() for s in cases]
    assert first == again
