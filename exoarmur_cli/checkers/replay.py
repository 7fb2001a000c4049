"""Decision replay: re-derive every recorded decision with the pure decision function.

Used by gate 3 and by ``replay-verify`` alike — there is one implementation of replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from exoarmur.contracts import AuditRecordV1, IntentV1
from exoarmur.decision import decide


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    mismatches: list[dict] = field(default_factory=list)  # intent, recorded, replayed
    intent_hash_mismatches: list[str] = field(default_factory=list)
    seal_failures: list[str] = field(default_factory=list)
    missing_intents: list[str] = field(default_factory=list)
    unreadable_records: int = 0
    reasons_covered: tuple[str, ...] = ()


def replay_decisions(audit_rows: list[dict], intent_rows: list[dict]) -> ReplayResult:
    intents: dict[tuple[str, str], dict] = {}
    for row in intent_rows:
        intent = row["intent"]
        intents.setdefault((intent.get("tenant_id"), intent.get("idempotency_key")), intent)
    replayed = 0
    mismatches, hash_bad, seal_bad, missing = [], [], [], []
    unreadable = 0
    reasons: set[str] = set()
    for row in audit_rows:
        try:
            record = AuditRecordV1.model_validate(row["record"])
        except (ValidationError, KeyError, TypeError):
            unreadable += 1
            continue
        if not record.seal_is_valid():
            seal_bad.append(record.audit_id)
        raw_intent = intents.get((record.tenant_id, record.idempotency_key))
        if raw_intent is None:
            missing.append(record.audit_id)
            continue
        try:
            intent = IntentV1.model_validate(raw_intent)
        except ValidationError:
            missing.append(record.audit_id)
            continue
        if intent.intent_hash() != record.intent_hash:
            hash_bad.append(record.audit_id)
        again = decide(intent, record.snapshot)
        replayed += 1
        reasons.add(again.reason_code.value)
        consistent = again == record.decision and (
            _execution_consistent(record) if again.execute
            else (record.outcome, record.reason_code) == (again.outcome, again.reason_code))
        if not consistent:
            mismatches.append({
                "intent": f"{record.tenant_id}:{record.idempotency_key}",
                "recorded": {"decision": record.decision.model_dump(mode="json"),
                             "outcome": record.outcome.value, "reason_code": record.reason_code.value},
                "replayed": again.model_dump(mode="json"),
            })
    return ReplayResult(replayed, mismatches, hash_bad, seal_bad, missing, unreadable, tuple(sorted(reasons)))


def _execution_consistent(record: AuditRecordV1) -> bool:
    """An allowed intent ends EXECUTED with OK, or FAILED with the reason it failed."""
    if record.outcome.value == "EXECUTED":
        return record.reason_code.value == "OK"
    return record.outcome.value == "FAILED" and record.reason_code.value != "OK"
