"""Gate 7 at the far end: attempts, retry spacing, deadlines and the breaker, counted on the wire.

Rows come from the harness's wiretap on the cells -> effector proxy (raw/effector_wire.jsonl):
``request`` (an attempt arrived, with its Idempotency-Key), ``response`` (its status) and
``unanswered`` (its connection closed first: the caller gave up). The numbers judged against
are the run's declared policy, never the attempt counts the cells wrote in their own records.
"""

from __future__ import annotations

from collections import defaultdict

from exoarmur_cli.checkers.common import first, quantile, scenario_of_key
from exoarmur_cli.recorded import Recorded

EFFECTS = "/v1/effects"
# Scenarios with no process faults: there every intent has one delivery, so its attempts on the
# wire are bounded by the retry policy alone (a redelivered intent may legitimately try again).
SINGLE_DELIVERY = ("timeout", "retry", "breaker")
DEADLINE_SLACK_S = 0.25  # event-loop lag on a loaded 2-core machine; a missing deadline overshoots by seconds
GAP_SLACK_S = 0.1
EFFECTOR_DOWN = "breaker"  # the scenario whose effector refuses every call at once


def _attempts(rec: Recorded) -> dict[str, list[tuple[float, float | None]]]:
    """(arrival, end) of every POST /v1/effects, per Idempotency-Key, in arrival order."""
    started: dict[int, list[tuple[str, float]]] = defaultdict(list)
    attempts: dict[str, list[list]] = defaultdict(list)
    for row in rec.wire:
        if row["event"] == "request" and row["path"].startswith(EFFECTS) and row["method"] == "POST":
            slot = [row["wall_ms"], None]
            attempts[row["key"]].append(slot)
            started[row["conn"]].append((row["key"], slot))
        elif row["event"] in ("response", "unanswered") and started[row["conn"]]:
            _, slot = started[row["conn"]].pop(0)
            slot[1] = row["wall_ms"]
    return {key: [tuple(s) for s in slots] for key, slots in attempts.items()}


def _scenario(ref: str) -> str:
    return scenario_of_key(ref.split(":", 1)[-1])


def wire(rec: Recorded) -> tuple[dict, dict]:
    policy = rec.params.get("policy", {})
    allowed = policy.get("retry_attempts", {}).get("effector_call")
    deadline_s = policy.get("timeouts_s", {}).get("EFFECTOR_CALL")
    cap_s = policy.get("effector_retry_cap_s")
    if not rec.wire or None in (allowed, deadline_s, cap_s):
        return {"wire_requests": len(rec.wire)}, {"note": "no wiretap rows or no declared retry/deadline policy"}
    attempts = _attempts(rec)
    judged = {k: a for k, a in attempts.items() if _scenario(k) in SINGLE_DELIVERY}
    over = sorted(k for k, a in judged.items() if len(a) > allowed)
    gaps = [(nxt[0] - prev[1]) / 1000 for a in judged.values() for prev, nxt in zip(a, a[1:]) if prev[1] is not None]
    late = [k for k, a in attempts.items() for start, end in a
            if end is not None and (end - start) / 1000 > deadline_s + DEADLINE_SLACK_S]
    spread = quantile(gaps, 0.9) - quantile(gaps, 0.1) if len(gaps) >= 5 else None
    # With the effector down a failed attempt answers at once, so the gap before the next one is
    # the backoff alone: its median is ~10 ms with full jitter, ~1 ms with none, even under load
    # (where other scenarios' gaps carry tens of ms of connection and event-loop latency).
    down = [(nxt[0] - prev[1]) / 1000 for k, a in judged.items() if _scenario(k) == EFFECTOR_DOWN
            for prev, nxt in zip(a, a[1:]) if prev[1] is not None]
    metrics = {
        "wire_requests": sum(len(a) for a in attempts.values()),
        "wire_keys_judged": len(judged),
        "attempts_over_policy_observed": len(over),
        "attempts_past_deadline": len(late),
        "retry_gaps_observed": len(gaps),
        "retry_gaps_over_cap": sum(1 for g in gaps if g > cap_s + GAP_SLACK_S),
        "retry_gap_spread_ms": spread * 1000 if spread is not None else None,
        "retry_gaps_effector_down": len(down),
        "retry_gap_median_ms_effector_down": quantile(down, 0.5) * 1000 if len(down) >= 5 else None,
    }
    breaker_metrics, breaker_evidence = _breaker_open(rec, attempts, policy)
    metrics.update(breaker_metrics)
    return metrics, {"over_policy": first(over), "past_deadline": first(late), "breaker": breaker_evidence,
                     "attempts_histogram": _histogram(judged)}


def _histogram(attempts: dict[str, list]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for a in attempts.values():
        counts[len(a)] += 1
    return dict(counts)


def _breaker_open(rec: Recorded, attempts: dict, policy: dict) -> tuple[dict, dict]:
    """Calls that reached the effector while every breaker said OPEN, against what half-open allows:
    each cell may probe ``half_open_max_probes`` times per ``open_s`` elapsed (plus the first)."""
    opened = [e.value["wall_ms"] for e in rec.history if e.f == "breakers_open"]
    recovered = [e.value["wall_ms"] for e in rec.history if e.f == "effector_recovered"]
    probes, open_s = policy.get("breaker_half_open_max_probes"), policy.get("breaker_open_s")
    cells = rec.params.get("stack", {}).get("cells")
    if not opened or not recovered or None in (probes, open_s, cells):
        return {"breaker_open_calls_observed": None}, {"note": "no open phase observed"}
    begin, end = opened[-1], recovered[-1]
    calls = [start for a in attempts.values() for start, _ in a if begin <= start < end]
    allowance = cells * probes * (1 + int((end - begin) / 1000 / open_s))
    return {"breaker_open_calls_observed": len(calls), "breaker_open_calls_over_allowance": max(0, len(calls) - allowance)}, \
        {"phase_ms": end - begin, "calls": len(calls), "allowance": allowance}
