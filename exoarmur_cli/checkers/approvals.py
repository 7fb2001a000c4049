"""Gate 5, approvals and the operator's door, judged against what the harness itself did.

The stack's record says which approval it decided on; that is evidence, not the yardstick. The
oracle is the harness's own log of grants: an A2/A3 effect is legitimate only if the operator
(the harness) granted an APPROVED approval for that tenant and key, bound to the hash of the
intent as the harness computes it from the intent stream, and the effect landed before that
approval's earliest possible expiry (grant invoked + TTL). Each approval path the scenarios
probe is judged on its own, so a broken path is named, not lumped into "expectations unmet".
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import ValidationError

from exoarmur.contracts import IntentV1
from exoarmur_cli.checkers.common import first, records_by_pair, submissions
from exoarmur_cli.history import INVOKE, OK
from exoarmur_cli.recorded import Recorded

APPROVAL_CLASSES = {"A2", "A3"}
# Paths whose intents must never execute, whatever the stack's record says.
MUST_NOT_EXECUTE = ("denied", "wrong_hash", "changed_params", "other_tenant", "expired_ttl", "late_grant", "none")
APPROVAL_PATHS = (*MUST_NOT_EXECUTE, "approved")  # the probes this checker judges


def _grants(rec: Recorded) -> dict[tuple[str, str], list[dict]]:
    """APPROVED grants the api acknowledged, by (tenant, key), with their earliest expiry."""
    invoked: dict[tuple[str, str, str], int] = {}
    grants: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for e in rec.history:
        if e.f != "approval" or "tenant_id" not in e.value:
            continue
        ident = (e.value["tenant_id"], e.value["key"], e.value["intent_hash"])
        if e.type == INVOKE:
            invoked[ident] = e.value["invoked_wall_ms"]
        elif e.type == OK and e.value["status"] == "APPROVED" and ident in invoked:
            grants[ident[:2]].append({"intent_hash": ident[2],
                                      "expires_no_earlier_than_ms": invoked[ident] + e.value["ttl_s"] * 1000})
    return grants


def _intent_hashes(rec: Recorded) -> dict[tuple[str, str], str]:
    hashes = {}
    for row in rec.intents:
        try:
            intent = IntentV1.model_validate(row["intent"])
        except ValidationError:
            continue
        hashes.setdefault((intent.tenant_id, intent.idempotency_key), intent.intent_hash())
    return hashes


def _effect_times(rec: Recorded) -> dict[str, int]:
    return {row["intent_ref"]: row["first_applied_at_ms"] for row in rec.ledger}


def approvals(rec: Recorded) -> tuple[dict, dict]:
    grants, hashes, applied = _grants(rec), _intent_hashes(rec), _effect_times(rec)
    executed = [r for rs in records_by_pair(rec).values() for r in rs
                if r["action_class"] in APPROVAL_CLASSES and r["outcome"] == "EXECUTED"]
    unmatched = []
    for r in executed:
        pair = (r["tenant_id"], r["idempotency_key"])
        effect_ms = applied.get(f"{pair[0]}:{pair[1]}")
        ok = hashes.get(pair) is not None and effect_ms is not None and any(
            g["intent_hash"] == hashes[pair] and effect_ms < g["expires_no_earlier_than_ms"] for g in grants.get(pair, []))
        if not ok:
            unmatched.append(r["idempotency_key"])
    metrics, evidence = _paths(rec)
    metrics["a2a3_executed_checked"] = len(executed)
    metrics["a2a3_executed_without_harness_grant"] = len(unmatched)
    evidence["without_harness_grant"] = first(unmatched)
    return metrics, evidence


def _paths(rec: Recorded) -> tuple[dict, dict]:
    """Per probed approval path: how many were accepted, and how many executed that must not."""
    by_pair = records_by_pair(rec)
    probed: dict[str, int] = defaultdict(int)
    wrongly: dict[str, list[str]] = defaultdict(list)
    for sub in submissions(rec.history):
        path = sub.invoke.value.get("probe")
        if path not in APPROVAL_PATHS or not sub.accepted:  # other scenarios tag their probes too
            continue
        probed[path] += 1
        if path in MUST_NOT_EXECUTE and any(r["outcome"] == "EXECUTED" for r in by_pair.get(sub.pair, [])):
            wrongly[path].append(sub.key)
    metrics = {"approval_paths_probed": sum(1 for p in APPROVAL_PATHS if probed.get(p))}
    for path in MUST_NOT_EXECUTE:
        metrics[f"approval_{path}_executed"] = len(wrongly[path]) if probed.get(path) else None
    approved_ran = [s for s in submissions(rec.history) if s.invoke.value.get("probe") == "approved" and s.accepted
                    and any(r["outcome"] == "EXECUTED" for r in by_pair.get(s.pair, []))]
    metrics["approval_approved_executed"] = len(approved_ran)
    # Not vacuous: a late grant the deciding cell never saw (it recorded the intent expired first)
    # tests nothing; at least one decision must have been made with the late approval in hand.
    late_seen = [s for s in submissions(rec.history) if s.invoke.value.get("probe") == "late_grant" and s.accepted
                 and any((r.get("snapshot") or {}).get("approval") for r in by_pair.get(s.pair, []))]
    metrics["approval_late_grants_seen"] = len(late_seen) if probed.get("late_grant") else None
    return metrics, {"executed_on_path": {p: first(keys) for p, keys in wrongly.items()}, "probed": dict(probed)}


def operator_door(rec: Recorded) -> tuple[dict, dict]:
    """Operator-only endpoints called with every other kind of token: refused, and nothing written."""
    answers = [e for e in rec.history if e.f == "operator_probe" and e.type != INVOKE]
    accepted = [e.value for e in answers if e.type == OK or not 400 <= e.value["status"] < 500]
    writes = [e.value for e in rec.history if e.f == "safety_kv_writes"]
    moved = sum(after - writes[-1]["before"][bucket] for bucket, after in writes[-1]["after"].items()) if writes else None
    return {
        "operator_probes": len(answers),
        "operator_probes_not_refused": len(accepted),
        "operator_probe_kv_writes": moved,
    }, {"not_refused": first(accepted), "kv": writes[-1] if writes else None}
