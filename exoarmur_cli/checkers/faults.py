"""Gate 7: timeouts end calls, retries stay bounded, the breaker cycles, chaos converges."""

from __future__ import annotations

from collections import Counter

from exoarmur_cli.checkers.common import (
    audit_rows, audit_time_by_pair, first, intent_time_by_pair, records_by_pair, scenario_of_key, submissions,
)
from exoarmur_cli.history import Tag
from exoarmur_cli.recorded import Recorded

VALID_TRANSITIONS = {("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED"), ("HALF_OPEN", "OPEN")}
BOUNDED_FAILURES = ("TIMEOUT_", "BREAKER_OPEN", "RETRY_EXHAUSTED")


def timeouts(rec: Recorded) -> tuple[dict, dict]:
    records = records_by_pair(rec)
    stored = intent_time_by_pair(rec)
    arrived = audit_time_by_pair(rec)
    hung = [s for s in submissions(rec.history, "timeout") if s.tag == Tag.HANG and s.accepted]
    outcomes = [records.get(s.pair, [{}])[0] for s in hung]
    unbounded = [s.key for s, r in zip(hung, outcomes)
                 if r.get("outcome") != "FAILED" or not str(r.get("reason_code")).startswith(BOUNDED_FAILURES)]
    resolution = [arrived[s.pair] - stored[s.pair] for s in hung if s.pair in arrived and s.pair in stored]
    deadline_ms = rec.run.policy.timeouts_s.get("EXECUTION_INTENT", 0) * 1000
    return {
        "hang_intents": len(hung),
        "hang_not_bounded": len(unbounded) if hung else None,
        "hang_timeouts_reported": sum(1 for r in outcomes if str(r.get("reason_code")).startswith("TIMEOUT_")),
        "hang_resolution_vs_intent_deadline": max(resolution) / deadline_ms if resolution and deadline_ms else None,
    }, {"unbounded": first(unbounded), "resolution_ms": resolution,
        "reasons": dict(Counter(r.get("reason_code") for r in outcomes))}


def retries(rec: Recorded) -> tuple[dict, dict]:
    attempts_allowed = rec.run.policy.retry_attempts.get("effector_call")
    all_records = [row["record"] for row in audit_rows(rec)]
    over = [r["idempotency_key"] for r in all_records if attempts_allowed is not None and r["attempts"] > attempts_allowed]
    flaky = [r for r in all_records if scenario_of_key(r["idempotency_key"]) == "retry"]
    odd = [r["idempotency_key"] for r in flaky if not (
        r["outcome"] == "EXECUTED" or (r["outcome"] == "FAILED" and r["reason_code"].startswith(BOUNDED_FAILURES)))]
    return {
        "attempts_over_policy": len(over) if attempts_allowed is not None else None,
        "retry_intents_retried": sum(1 for r in flaky if r["attempts"] > 1),
        "retry_intents_executed": sum(1 for r in flaky if r["outcome"] == "EXECUTED"),
        "retry_unexpected_outcomes": len(odd),
    }, {"over_policy": first(over), "unexpected": first(odd),
        "attempts_histogram": dict(Counter(r["attempts"] for r in flaky))}


def breaker(rec: Recorded) -> tuple[dict, dict]:
    transitions = [row["data"] for row in rec.events if row["subject"].startswith("exo.events.breaker.")]
    by_cell: dict[str, list[dict]] = {}
    for t in sorted(transitions, key=lambda t: t["at_ms"]):
        by_cell.setdefault(t["cell_id"], []).append(t)
    invalid = []
    for cell, chain in by_cell.items():
        state = "CLOSED"
        for t in chain:
            if t["from"] == "START":  # the cell (re)started: its breaker begins CLOSED again
                state = "CLOSED"
                continue
            if t["from"] != state or (t["from"], t["to"]) not in VALID_TRANSITIONS:
                invalid.append({"cell": cell, "from": t["from"], "to": t["to"], "expected_from": state})
            state = t["to"]
    recovered = [e.value["wall_ms"] for e in rec.history if e.f == "effector_recovered"]
    down_began = [e.value["wall_ms"] for e in rec.history if e.scenario == "breaker" and e.f == "effector_faults"
                  and e.value.get("down")]
    in_scenario = [t for t in transitions if down_began and t["at_ms"] >= down_began[0] and t["from"] != "START"]
    rows = audit_rows(rec)
    records = [row["record"] for row in rows]
    stored_at = {row["record"]["audit_id"]: row["timestamp_ms"] for row in rows}
    open_records = [r for r in records if r["reason_code"] == "BREAKER_OPEN"]
    # Refused at the door: the breaker was already open when the decision began.
    fast_fails = [r for r in open_records if r["breaker_state"] == "OPEN"]
    opened_at: dict[str, list[int]] = {}
    for t in transitions:
        if t["to"] == "OPEN":
            opened_at.setdefault(t["cell_id"], []).append(t["at_ms"])
    unannounced = [r["idempotency_key"] for r in open_records
                   if not any(at <= stored_at[r["audit_id"]] for at in opened_at.get(r["cell_id"], []))]
    trips = [t for t in transitions if (t["from"], t["to"]) == ("CLOSED", "OPEN")]
    early = [t for t in trips if not _tripped_within_policy(t, rec.run.policy)]
    executed_after = sum(1 for r in records if scenario_of_key(r["idempotency_key"]) == "breaker"
                         and r["outcome"] == "EXECUTED" and recovered and r["decided_at_ms"] > recovered[0])
    return {
        "breaker_opened": sum(1 for t in in_scenario if t["to"] == "OPEN"),
        "breaker_half_opened": sum(1 for t in in_scenario if t["to"] == "HALF_OPEN"),
        "breaker_closed_after_recovery": sum(1 for t in in_scenario if t["to"] == "CLOSED"
                                             and recovered and t["at_ms"] >= recovered[0]),
        "breaker_invalid_transitions": len(invalid),
        "breaker_fast_fails": sum(1 for r in fast_fails if scenario_of_key(r["idempotency_key"]) == "breaker"),
        "breaker_open_calls_attempted": sum(1 for r in fast_fails if r["attempts"] > 0),
        "breaker_open_without_transition": len(unannounced),
        "breaker_executed_after_recovery": executed_after,
        "breaker_trips_judged": len(trips),
        "breaker_trips_below_policy": len(early) if _trip_policy_known(rec.run.policy) else None,
    }, {"invalid": first(invalid), "transitions": len(transitions), "unannounced": first(unannounced),
        "tripped_below_policy": first(early)}


def _trip_policy_known(policy) -> bool:
    return None not in (policy.breaker_min_calls, policy.breaker_failure_ratio)


def _tripped_within_policy(trip: dict, policy) -> bool:
    """A CLOSED -> OPEN trip the declared policy allows: at least ``min_calls`` calls in the window
    and a failed share at or above ``failure_ratio``, as the breaker reported its window."""
    if not _trip_policy_known(policy):
        return False
    calls, failures = trip.get("calls_in_window") or 0, trip.get("failures_in_window") or 0
    return calls > 0 and calls >= policy.breaker_min_calls and failures / calls >= policy.breaker_failure_ratio


def chaos(rec: Recorded) -> tuple[dict, dict]:
    faults = [e for e in rec.history if e.scenario == "chaos" and e.process == "nemesis"
              and e.f in ("kill", "pause", "proxy_toxics")]
    kinds = {e.f if e.f != "proxy_toxics" else ("latency" if "latency_ms" in e.value else "reset_peer") for e in faults}
    subs = submissions(rec.history, "chaos")
    keys = Counter(s.key for s in subs)
    # A resubmission inside the duplicate window must be answered "duplicate", never a new intent.
    fresh = Counter(s.key for s in subs if s.accepted and not s.done.value.get("duplicate"))
    return {
        "chaos_faults_injected": len(faults),
        "chaos_fault_kinds": len(kinds),
        "chaos_duplicate_submissions": sum(n - 1 for n in keys.values() if n > 1),
        "chaos_duplicates_accepted_as_new": sum(max(0, n - 1) for n in fresh.values()),
    }, {"faults": [{"t_ms": e.time_ms, "kind": e.f, **e.value} for e in faults]}
