"""The safety decision: a pure function of the intent and a recorded safety snapshot.

No clock, no randomness, no I/O: the time a decision is made at is an input (``now_ms``),
so every decision recorded in the audit log can be re-derived bit for bit (replay).
Checks run from the broadest refusal to the narrowest, and the first that applies wins.
"""

from __future__ import annotations

from exoarmur.contracts import (
    APPROVAL_REQUIRED_CLASSES,
    ApprovalStatus,
    Decision,
    IntentV1,
    Outcome,
    ReasonCode,
    SafetySnapshot,
)


def _deny(reason: ReasonCode) -> Decision:
    return Decision(outcome=Outcome.DENIED, reason_code=reason)


def decide(intent: IntentV1, snapshot: SafetySnapshot) -> Decision:
    if snapshot.node_tenant is None:
        return _deny(ReasonCode.UNKNOWN_NODE)
    if snapshot.node_tenant != intent.tenant_id:
        return _deny(ReasonCode.TENANT_MISMATCH)
    if not snapshot.readable:  # fail closed: a switch we cannot read may be engaged
        return _deny(ReasonCode.SAFETY_STATE_UNAVAILABLE)
    if snapshot.global_switch:
        return _deny(ReasonCode.KILL_SWITCH_GLOBAL)
    if snapshot.tenant_switch:
        return _deny(ReasonCode.KILL_SWITCH_TENANT)
    if intent.action_class in APPROVAL_REQUIRED_CLASSES:
        refusal = _approval_refusal(intent, snapshot)
        if refusal is not None:
            return refusal
    return Decision(outcome=Outcome.EXECUTED, reason_code=ReasonCode.OK, execute=True)


def _approval_refusal(intent: IntentV1, snapshot: SafetySnapshot) -> Decision | None:
    approval = snapshot.approval
    if approval is None:
        waited_ms = snapshot.now_ms - snapshot.submitted_at_ms
        if waited_ms >= snapshot.approval_wait_ms:
            return Decision(outcome=Outcome.EXPIRED, reason_code=ReasonCode.APPROVAL_EXPIRED)
        return Decision(outcome=Outcome.PENDING_APPROVAL, reason_code=ReasonCode.APPROVAL_REQUIRED)
    granted_after_ms = None if approval.granted_at_ms is None else approval.granted_at_ms - snapshot.submitted_at_ms
    if granted_after_ms is not None and granted_after_ms >= snapshot.approval_wait_ms:
        # The intent had waited out its approval wait before this was granted: it had expired
        # then, whether or not a cell had recorded it yet, and whatever the approval says.
        return Decision(outcome=Outcome.EXPIRED, reason_code=ReasonCode.APPROVAL_EXPIRED)
    if approval.intent_hash != intent.intent_hash():
        return _deny(ReasonCode.APPROVAL_MISMATCH)
    if approval.status is ApprovalStatus.DENIED:
        return _deny(ReasonCode.APPROVAL_DENIED)
    if approval.expires_at_ms <= snapshot.now_ms:
        return Decision(outcome=Outcome.EXPIRED, reason_code=ReasonCode.APPROVAL_EXPIRED)
    return None
