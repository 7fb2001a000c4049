"""Gate 8: a full queue refuses, load covers every node and peer, memory and depth stay bounded."""

from __future__ import annotations

from collections import Counter

from exoarmur_cli.checkers.common import first, intent_ref, scenario_of_key, scenario_window_ms, submissions
from exoarmur_cli.history import INFO
from exoarmur_cli.recorded import Recorded


def backpressure(rec: Recorded) -> tuple[dict, dict]:
    subs = submissions(rec.history, "backpressure")
    bound = rec.run.policy.pending_bound
    window = scenario_window_ms(rec, "backpressure")
    pending = [s["value"] for s in rec.samples if s["kind"] == "pending"
               and window and window[0] <= s["time_ms"] <= window[1]]
    accepted = {s.pair for s in subs if s.accepted}
    return {
        "queue_full_refusals": sum(1 for s in subs if s.reason == "QUEUE_FULL"),
        # the queue was filled by accepted intents, whatever size the run's admission gave it
        "backpressure_accepted_vs_bound": len(accepted) / bound if bound else None,
        "backpressure_pending_peak": max(pending) if pending else None,
        "pending_peak_vs_bound": max(pending) / bound if pending and bound else None,
        "backpressure_refused_without_reason": sum(1 for s in subs if s.refused and not s.reason),
    }, {"refusals_by_reason": dict(Counter(s.reason for s in subs if s.refused)), "bound": bound,
        "pending_samples": len(pending)}


def _load_coverage(rec: Recorded) -> tuple[set, set, set]:
    """(nodes, peers, tenants) the stack recorded executing load intents for: nodes and tenants
    from the effector's ledger, peers from the intent stream — never from what the client meant to send."""
    executed = {intent_ref(r["tenant_id"], r["idempotency_key"]) for row in rec.audit for r in (row["record"],)
                if r["outcome"] == "EXECUTED" and scenario_of_key(r["idempotency_key"]) == "load"}
    effects = [row for row in rec.ledger if row["intent_ref"] in executed]
    peers = {row["intent"]["peer_id"] for row in rec.intents
             if intent_ref(row["intent"]["tenant_id"], row["intent"]["idempotency_key"]) in executed}
    return {row["node_id"] for row in effects}, peers, {row["tenant_id"] for row in effects}


def _phase_duration_s(plan: dict | None, name: str) -> float | None:
    durations = [p.get("duration_s") for p in (plan or {}).get("phases", []) if p.get("name") == name]
    return float(durations[0]) if durations and durations[0] else None


def _offered_per_s(subs: list, duration_s: float | None) -> float | None:
    """Sends per second within the phase's planned window, from its first send on. Sends a
    CPU-starved client made after the window do not stretch it: they were not offered during
    the phase, so they count neither for nor against it."""
    if not subs or not duration_s:
        return None
    start = min(s.invoke.time_ms for s in subs)
    in_window = sum(1 for s in subs if s.invoke.time_ms < start + duration_s * 1000)
    return in_window / duration_s


def _uncovered(planned: set, covered: set) -> int | None:
    """How many of the stack's items were not covered; None when the run recorded none (a missing
    plan is a missing measurement). By identity, so an item outside the plan covers nothing."""
    return len(planned - covered) if planned else None


def load(rec: Recorded) -> tuple[dict, dict]:
    subs = submissions(rec.history, "load")
    nodes, peers, tenants = _load_coverage(rec)
    owners, peer_tenants = rec.run.node_owners, rec.run.peer_tenants  # the stack's, as the run recorded them
    plan = [e.value for e in rec.history if e.f == "load_plan"]
    capacity = plan[-1]["capacity_per_s"] if plan else None
    over = [s for s in subs if s.invoke.value.get("phase") == "overload"]
    offered = _offered_per_s(over, _phase_duration_s(plan[-1] if plan else None, "overload"))
    return {
        "load_submissions": len(subs),
        "nodes_covered": len(nodes),
        "peers_covered": len(peers),
        "tenants_covered": len(tenants),
        # Against the stack's own size (the seed's, or K times it with --scale), not a typed number.
        "nodes_uncovered": _uncovered(set(owners), nodes),
        "peers_uncovered": _uncovered(set(peer_tenants), peers),
        "tenants_uncovered": _uncovered(set(owners.values()), tenants),
        "load_unanswered": sum(1 for s in subs if s.done is None),
        # Timeouts and bare 4xx/5xx (no reason code) are failures, not an unread "unknown" bucket.
        "load_unknown_outcomes": sum(1 for s in subs if s.done is not None and s.done.type == INFO),
        "overload_refused": sum(1 for s in over if s.refused and s.reason),
        "overload_offered_per_s": offered,
        "overload_offered_vs_capacity": offered / capacity if offered and capacity else None,
    }, {"refusals_by_reason": dict(Counter(s.reason for s in subs if s.refused)),
        "capacity_per_s": capacity, "phases": plan[-1]["phases"] if plan else None}


def resources(rec: Recorded) -> tuple[dict, dict]:
    rss: dict[str, float] = {}
    for s in rec.samples:
        if s["kind"] == "rss_mb":
            rss[s["process"]] = max(rss.get(s["process"], 0.0), s["value"])
    pending = [s["value"] for s in rec.samples if s["kind"] == "pending"]
    bound = rec.run.policy.pending_bound
    return {
        "peak_rss_mb_max": max(rss.values()) if rss else None,
        "rss_processes_sampled": len(rss),
        "run_pending_peak_vs_bound": max(pending) / bound if pending and bound else None,
        "samples_taken": len(rec.samples),
    }, {"peak_rss_mb": rss, "samples": first(rec.samples, 3)}
