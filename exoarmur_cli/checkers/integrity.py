"""Exactly-once and no-silent-drop, over every scenario, plus the expectations drivers wrote.

- every accepted submission ends in exactly one terminal record;
- every submission has a completion (accepted, refused with a reason, or unknown);
- at most one effect per intent, and an effect for every EXECUTED record;
- no effect applied past the fence of the decision that authorised it;
- audited refusal counters equal what clients were told.
"""

from __future__ import annotations

from collections import Counter

from exoarmur_cli.checkers.common import (
    audit_rows, effects_by_intent, first, intent_ref, records_by_pair, scenario_of_key, submissions,
)
from exoarmur_cli.history import FAIL, Expect
from exoarmur_cli.recorded import Recorded



def is_admission_refusal(reason: str | None) -> bool:
    """Stack failures (NATS away, a publish deadline) are answered but are not refusals it audits."""
    return reason is not None and reason != "STACK_UNAVAILABLE" and not reason.startswith("TIMEOUT_")


def exactly_once(rec: Recorded) -> tuple[dict, dict]:
    records = records_by_pair(rec)
    effects = effects_by_intent(rec)
    subs = submissions(rec.history)
    accepted = {s.pair for s in subs if s.accepted}
    lost = sorted(p for p in accepted if p not in records)
    multi = sorted(p for p, rs in records.items() if len(rs) > 1)
    duplicate_effects = {ref: len(rows) - 1 for ref, rows in effects.items() if len(rows) > 1}
    executed = {p for p, rs in records.items() if any(r["outcome"] == "EXECUTED" for r in rs)}
    executed_without_effect = sorted(p for p in executed if intent_ref(*p) not in effects)
    refs_executed = {intent_ref(*p) for p in executed}
    effect_not_executed = sorted(ref for ref in effects if ref not in refs_executed)
    unanswered = [s.invoke.index for s in subs if s.done is None]
    by_scenario = Counter(scenario_of_key(k) for _, k in lost)
    metrics = {
        "acked_without_terminal": len(lost),
        "multi_terminal_records": len(multi),
        "duplicate_effects": sum(duplicate_effects.values()),
        "executed_without_effect": len(executed_without_effect),
        "effects_not_recorded_executed": len(effect_not_executed),
        "unanswered_submissions": len(unanswered),
        "accepted_submissions": len(accepted),
        "terminal_records": sum(len(rs) for rs in records.values()),
        "executed_records": len(executed),
        "effects_checked": len(rec.ledger),
    }
    for scenario in {e.scenario for e in rec.history}:
        metrics[f"{scenario}_acked_without_terminal"] = by_scenario.get(scenario, 0)
        metrics[f"{scenario}_accepted"] = sum(1 for p in accepted if scenario_of_key(p[1]) == scenario)
    evidence = {"lost": first(lost), "multi_terminal": first(multi), "duplicate_effects": first(duplicate_effects.items()),
                "executed_without_effect": first(executed_without_effect), "effect_not_executed": first(effect_not_executed)}
    return metrics, evidence


# The ledger stamps an effect once its write commits, after the deadline check that admitted it:
# commit latency on a loaded machine. Clocks are one host's.
FENCE_SLACK_MS = 250


def effect_fences(rec: Recorded) -> tuple[dict, dict]:
    """Every effect was applied within the fence of the decision its EXECUTED record carries: by
    ``decided_at_ms`` + EXECUTION_INTENT + effect_deadline_skew_ms. A delivery's calls carry
    deadlines within its budget, which began before it decided, and the effector refuses a call
    past its deadline; so an effect later than that was authorised by a decision that had gone
    stale (a redelivery acting on an old journaled EXECUTE, say), whatever the switches said since."""
    intent_s, skew_ms = rec.run.policy.timeouts_s.get("EXECUTION_INTENT"), rec.run.policy.effect_deadline_skew_ms
    if intent_s is None or skew_ms is None:
        return {"effects_past_decision_fence": None}, {"note": "no declared EXECUTION_INTENT or skew"}
    applied = {row["intent_ref"]: row["first_applied_at_ms"] for row in rec.ledger}
    fence_ms = intent_s * 1000 + skew_ms + FENCE_SLACK_MS
    late, checked = [], 0
    for record in (row["record"] for row in audit_rows(rec)):
        at = applied.get(intent_ref(record["tenant_id"], record["idempotency_key"]))
        if record["outcome"] != "EXECUTED" or at is None:
            continue
        checked += 1
        if at - record["decided_at_ms"] > fence_ms:
            late.append({"key": record["idempotency_key"], "applied_after_decision_ms": at - record["decided_at_ms"]})
    return {"effects_past_decision_fence": len(late), "effects_fence_checked": checked}, \
        {"fence_ms": fence_ms, "late": first(late)}


def expectations(rec: Recorded) -> tuple[dict, dict]:
    """Submissions tagged ``expect:OUTCOME/REASON`` must end exactly so (refused counts as unmet)."""
    records = records_by_pair(rec)
    unmet: Counter = Counter()
    checked: Counter = Counter()
    examples = []
    for sub in submissions(rec.history):
        expect = Expect.parse(sub.tag)
        if expect is None:
            continue
        scenario = sub.invoke.scenario
        checked[scenario] += 1
        expected = expect.pair
        got = [f"{r['outcome']}/{r['reason_code']}" for r in records.get(sub.pair, [])]
        if not sub.accepted or got != [expected]:
            unmet[scenario] += 1
            examples.append({"key": sub.key, "expected": expected, "got": got or sub.reason or "no record"})
    metrics = {}
    for scenario in {e.scenario for e in rec.history}:
        metrics[f"{scenario}_expectations_checked"] = checked.get(scenario, 0)
        metrics[f"{scenario}_expectations_unmet"] = unmet.get(scenario, 0)
    return metrics, {"unmet": first(examples, 20)}


# Every kind of call the harness makes to the api whose refusal the api counts.
API_CALLS = ("submit", "read_audit", "read_probe", "operator_probe", "approval")
# Answers to a read probe that are not refusals: nothing of the caller's by that key (404), and a
# query parameter outside the range the OpenAPI document declares (FastAPI's 422, its own body).
READ_ANSWERS = (404, 422)


def refusals(rec: Recorded) -> tuple[dict, dict]:
    """Client-observed refusals vs the counters the api audited; refusals without a reason."""
    told: Counter = Counter()
    unreasoned = 0
    server_errors = 0
    for event in rec.history:
        if event.type != FAIL or event.f not in API_CALLS:
            continue
        status = event.value.get("status") or event.value.get("status_code") or 0
        if not status:
            continue  # no answer at all: not a refusal
        if event.f == "read_probe" and status in READ_ANSWERS:
            continue
        reason = event.value.get("reason_code")
        if reason is None:
            unreasoned += 1
            server_errors += 1 if status >= 500 else 0
        elif is_admission_refusal(reason):
            told[reason] += 1
    audited: Counter = Counter()
    for row in rec.events:
        if row["subject"].startswith("exo.events.refusals."):
            audited[row["data"]["reason_code"]] += row["data"]["count"]
    reasons = sorted(set(told) | set(audited))
    mismatch = sum(abs(told[r] - audited[r]) for r in reasons)
    metrics = {
        "refusals_observed": sum(told.values()),
        "refusals_audited": sum(audited.values()),
        "refusal_counter_mismatch": mismatch,
        "unreasoned_refusals": unreasoned,
        "server_errors_without_reason": server_errors,
    }
    return metrics, {"by_reason": {r: {"clients_told": told[r], "audited": audited[r]} for r in reasons}}
