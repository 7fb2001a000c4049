"""Gate 6 (access control): every outsider and wrong-role attempt refused, and none of them landed.

Judged from the recorded ``access_attempt`` events (what the server answered each one) and the
exports (what the streams, buckets and ledger hold): a forgery the server reported refusing but
whose marker is in an export still counts as landed, and a forged audit record that took the
place of the real one is caught by the real record being absent.
"""

from __future__ import annotations

from exoarmur.contracts import key_digest
from exoarmur_cli.checkers.common import first
from exoarmur_cli.recorded import Recorded


def _landed(rec: Recorded, attempts: list[dict]) -> list[str]:
    """Where a forgery's marker shows up in what the stack holds."""
    markers = {a["marker"] for a in attempts if a.get("marker")}
    found = []
    for row in rec.intents:
        intent = row.get("intent") or {}
        if intent.get("idempotency_key") in markers:
            found.append(f"intent {row.get('subject')}")
    for row in rec.audit:
        record = row.get("record") or {}
        if record.get("forged") in markers or record.get("idempotency_key") in markers:
            found.append(f"audit {row.get('subject')}")
    for row in rec.kv:
        if any(marker in str(row.get("data", "")) or marker in str(row.get("subject", "")) for marker in markers):
            found.append(f"kv {row.get('bucket')} {row.get('subject')}")
    for row in rec.ledger:
        if str(row.get("idempotency_key", "")).split(":", 1)[-1] in markers:
            found.append(f"effect {row.get('idempotency_key')}")
    found += [f"faults set by {a['identity']}" for a in attempts if a.get("faults_changed")]
    return found


def _real_records_missing(rec: Recorded, forged_ahead: list[dict]) -> list[str]:
    """Audit forgeries ahead of a real intent whose real record is not the one the stream holds."""
    by_subject = {row.get("subject"): row.get("record") or {} for row in rec.audit}
    missing = []
    for attempt in forged_ahead:
        tenant, key = attempt["ahead_of"]["tenant_id"], attempt["ahead_of"]["key"]
        record = by_subject.get(f"exo.audit.{tenant}.{key_digest(tenant, key)}")
        if record is None or "forged" in record or record.get("idempotency_key") != key or "audit_id" not in record:
            missing.append(f"{tenant}:{key}")
    return missing


def access(rec: Recorded) -> tuple[dict, dict]:
    attempts = [e.value for e in rec.history if e.f == "access_attempt"]
    bus = [a for a in attempts if a["surface"] == "nats"]
    connects = [a for a in bus if a["action"] == "connect"]
    forgeries = [a for a in bus if a["action"] != "connect"]
    effector = [a for a in attempts if a["surface"] == "effector"]
    forged_ahead = [a for a in forgeries if a.get("ahead_of")]
    landed = _landed(rec, attempts)
    missing = _real_records_missing(rec, forged_ahead)

    def not_refused(rows: list[dict]) -> list[str]:
        return [f"{a['identity']} {a['action']}" for a in rows if not a.get("refused")]

    return {
        "access_attempts": len(attempts),
        "nats_forgery_attempts": len(forgeries),
        "forged_ahead_attempts": len(forged_ahead),
        "nats_outsider_connections_accepted": len(not_refused(connects)),
        "nats_forgeries_not_refused": len(not_refused(forgeries)),
        "effector_unauthorized_accepted": len(not_refused(effector)),
        "forgeries_landed": len(landed),
        "forged_ahead_real_records_missing": len(missing),
    }, {"connections_accepted": not_refused(connects), "forgeries_not_refused": first(not_refused(forgeries)),
        "effector_accepted": not_refused(effector), "landed": first(landed), "real_records_missing": first(missing),
        "refusals_seen": sorted({str(a.get("refusal"))[:80] for a in attempts if a.get("refused")})[:10]}
