"""Gate 7 at the far end: attempts, retry spacing, deadlines and the breaker, counted on the wire.

Rows come from the harness's wiretap on the cells -> effector proxy (raw/effector_wire.jsonl):
``request`` (an attempt arrived, with its Idempotency-Key), ``response`` (its status) and
``unanswered`` (its connection closed first: the caller gave up). The numbers judged against
are the run's declared policy, never the attempt counts the cells wrote in their own records.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from exoarmur.contracts import DEADLINE_PASSED_STATUS
from exoarmur_cli.checkers.common import audit_rows, first, intent_ref, quantile, scenario_of_key, submissions
from exoarmur_cli.history import Tag
from exoarmur_cli.recorded import Recorded

EFFECTS = "/v1/effects"
# Scenarios with no process faults: there every intent has one delivery, so its attempts on the
# wire are bounded by the retry policy alone (a redelivered intent may legitimately try again).
SINGLE_DELIVERY = ("timeout", "retry", "breaker")
DEADLINE_SLACK_S = 0.25  # event-loop lag on a loaded 2-core machine; a missing deadline overshoots by seconds
# A call's deadline is set before it is sent, so the wiretap sees it arrive later, never earlier;
# this covers the order of stamps taken a few ms apart by the proxy and the effector (one host's clock).
CARRIED_DEADLINE_SLACK_MS = 50
GAP_SLACK_S = 0.1
EFFECTOR_DOWN = "breaker"  # the scenario whose effector refuses every call at once
TRIPS_ON_WIRE = ("retry", "breaker")  # no overload there: every failure a breaker counts went out


def _calls(rec: Recorded) -> dict[str, list[list]]:
    """[arrival, end, status, connection, deadline] of every POST /v1/effects, per Idempotency-Key,
    in arrival order (end and status None while unanswered; status None when the caller gave up
    first; deadline None when the call carried none or the wiretap did not record it)."""
    started: dict[int, list[tuple[str, list]]] = defaultdict(list)
    calls: dict[str, list[list]] = defaultdict(list)
    for row in rec.wire:
        if row["event"] == "request" and row["path"].startswith(EFFECTS) and row["method"] == "POST":
            slot = [row["wall_ms"], None, None, row["conn"], row.get("deadline_ms")]
            calls[row["key"]].append(slot)
            started[row["conn"]].append((row["key"], slot))
        elif row["event"] in ("response", "unanswered") and started[row["conn"]]:
            _, slot = started[row["conn"]].pop(0)
            slot[1], slot[2] = row["wall_ms"], row.get("status")
    return calls


def _attempts(calls: dict[str, list[list]]) -> dict[str, list[tuple[float, float | None]]]:
    """(arrival, end) of every call, per Idempotency-Key, in arrival order."""
    return {key: [(start, end) for start, end, *_ in slots] for key, slots in calls.items()}


def _cell_of_connection(rec: Recorded, calls: dict[str, list[list]]) -> dict[int, str | None]:
    """The cell behind each wiretapped connection: the one that recorded most of the intents whose
    calls it carried (a connection is one cell's; a call on it for an intent the other cell
    recorded was an earlier delivery's). None when no recorded intent or a tie says which."""
    cell_of_key = {intent_ref(r["tenant_id"], r["idempotency_key"]): r["cell_id"]
                   for r in (row["record"] for row in audit_rows(rec))}
    votes: dict[int, Counter] = defaultdict(Counter)
    for key, slots in calls.items():
        if (cell := cell_of_key.get(key)) is not None:
            for slot in slots:
                votes[slot[3]][cell] += 1
    cells = {}
    for conn, counted in votes.items():
        top = counted.most_common(2)
        cells[conn] = top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else None
    return cells


def _scenario(ref: str) -> str:
    return scenario_of_key(ref.split(":", 1)[-1])


def wire(rec: Recorded) -> tuple[dict, dict]:
    policy = rec.params.get("policy", {})
    allowed = policy.get("retry_attempts", {}).get("effector_call")
    deadline_s = policy.get("timeouts_s", {}).get("EFFECTOR_CALL")
    cap_s = policy.get("effector_retry_cap_s")
    if not rec.wire or None in (allowed, deadline_s, cap_s):
        return {"wire_requests": len(rec.wire)}, {"note": "no wiretap rows or no declared retry/deadline policy"}
    calls = _calls(rec)
    attempts = _attempts(calls)
    judged = {k: a for k, a in attempts.items() if _scenario(k) in SINGLE_DELIVERY}
    over = sorted(k for k, a in judged.items() if len(a) > allowed)
    gaps = [(nxt[0] - prev[1]) / 1000 for a in judged.values() for prev, nxt in zip(a, a[1:]) if prev[1] is not None]
    late = [k for k, a in attempts.items() for start, end in a
            if end is not None and (end - start) / 1000 > deadline_s + DEADLINE_SLACK_S]
    spread = quantile(gaps, 0.9) - quantile(gaps, 0.1) if len(gaps) >= 5 else None
    carried = _carried_deadlines(rec, deadline_s)
    # With the effector down a failed attempt answers at once, so the gap before the next one is
    # the backoff alone: its median is ~10 ms with full jitter, ~1 ms with none, even under load
    # (where other scenarios' gaps carry tens of ms of connection and event-loop latency). Kept
    # with its retry index i: the backoff after failed attempt i is drawn below its own ceiling.
    down_gaps = [(i, (nxt[0] - prev[1]) / 1000) for k, a in judged.items() if _scenario(k) == EFFECTOR_DOWN
                 for i, (prev, nxt) in enumerate(zip(a, a[1:])) if prev[1] is not None]
    down = [gap for _, gap in down_gaps]
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
        "retry_gaps_below_ceiling_share_effector_down": _below_ceiling_share(down_gaps, policy),
        "call_deadlines_over_declared": len(carried) if carried is not None else None,
        "late_effector_calls_abandoned": _abandoned_at_deadline(rec, calls),
        "calls_refused_4xx": sum(1 for k, slots in calls.items() if _scenario(k) in SINGLE_DELIVERY
                                 for slot in slots if _refused_for_good(slot[2])),
        "retries_after_4xx": sum(1 for k, slots in calls.items() if _scenario(k) in SINGLE_DELIVERY
                                 and any(_refused_for_good(slot[2]) for slot in slots[:-1])),
    }
    fence_metrics, fence_evidence = _applied_within_carried_deadline(rec, calls)
    metrics.update(fence_metrics)
    breaker_metrics, breaker_evidence = _breaker_open(rec, attempts, policy)
    trip_metrics, trip_evidence = _trips_seen(rec, calls, policy)
    metrics.update(breaker_metrics | trip_metrics)
    return metrics, {"over_policy": first(over), "past_deadline": first(late), "deadline_carried_over": first(carried or []),
                     "applied_past_carried_deadline": fence_evidence,
                     "breaker": breaker_evidence,
                     "trips": trip_evidence, "attempts_histogram": _histogram(judged)}


def _refused_for_good(status: int | None) -> bool:
    """A 4xx answer that another attempt cannot change (not 412, a deadline passed, nor 429)."""
    return status is not None and 400 <= status < 500 and status not in (DEADLINE_PASSED_STATUS, 429)


def _below_ceiling_share(gaps: list[tuple[int, float]], policy: dict) -> float | None:
    """The share of effector-down gaps shorter than their backoff's ceiling, min(cap, base x 2^i)
    after failed attempt i. Full jitter draws the backoff below it, so the answer and the next
    request's trip only lift some gaps over it (0.55-0.83 clean); a backoff without jitter waits
    the ceiling itself, so no gap is ever shorter, however loaded the machine. None under 5 gaps."""
    base_s, cap_s = policy.get("effector_retry_base_s"), policy.get("effector_retry_cap_s")
    if base_s is None or cap_s is None or len(gaps) < 5:
        return None
    return sum(1 for i, gap in gaps if gap < min(cap_s, base_s * 2 ** i)) / len(gaps)


def _carried_deadlines(rec: Recorded, deadline_s: float) -> list[dict] | None:
    """The calls whose deadline (the Exo-Deadline-Ms the effector fences them by) lay further from
    their arrival than EFFECTOR_CALL, or that carried none: each an attempt the effector could
    still apply after its caller gave up on it. None when the wiretap did not record deadlines."""
    posts = [row for row in rec.wire if row["event"] == "request" and row["path"].startswith(EFFECTS)
             and row["method"] == "POST"]
    if not posts or "deadline_ms" not in posts[0]:
        return None
    bound_ms = deadline_s * 1000 + CARRIED_DEADLINE_SLACK_MS
    return [{"key": row["key"], "deadline_after_arrival_ms": None if row["deadline_ms"] is None
             else row["deadline_ms"] - row["wall_ms"]}
            for row in posts if row["deadline_ms"] is None or row["deadline_ms"] - row["wall_ms"] > bound_ms]


def _injected_latency(rec: Recorded) -> list[tuple[float, float]]:
    """(from wall ms, ms) of the latency the harness had the effector add before writing each
    effect, from its own fault events: no call can write sooner after it arrives."""
    steps = [(0.0, 0.0)]
    for e in rec.history:
        if e.f == "effector_faults" and e.value.get("applied") and "wall_ms" in e.value:
            steps.append((e.value["wall_ms"], float(e.value.get("latency_ms") or 0.0)))
    return sorted(steps)


def _applied_within_carried_deadline(rec: Recorded, calls: dict[str, list[list]]) -> tuple[dict, list]:
    """The effector's fence, from its ledger and the wire: an effect is written no later than the
    deadline of a call that could have written it: one that had arrived, plus the latency the
    harness had the effector add, by then (the latest such deadline counts). An effect stamped
    later was applied after every caller could have given up on it, which makes a "not applied"
    answer to them untrue."""
    latency = _injected_latency(rec)

    def earliest_write(arrival_ms: float) -> float:
        return arrival_ms + next(ms for since, ms in reversed(latency) if since <= arrival_ms)

    late, judged = [], 0
    for row in rec.ledger:
        applied_at = row["first_applied_at_ms"]
        # The wiretap stamps a request as it passes, the effector its effect as it writes: the
        # applying call can bear the later stamp by a few ms.
        deadlines = [slot[4] for slot in calls.get(row["idempotency_key"], [])
                     if earliest_write(slot[0]) <= applied_at + CARRIED_DEADLINE_SLACK_MS]
        if not deadlines or None in deadlines:
            continue  # no call seen before it, or one without a deadline (call_deadlines_over_declared)
        judged += 1
        if applied_at > max(deadlines) + CARRIED_DEADLINE_SLACK_MS:
            late.append({"key": row["idempotency_key"], "applied_after_deadline_ms": applied_at - max(deadlines)})
    if not judged:
        return {"effects_applied_past_carried_deadline": None, "effects_deadline_judged": 0}, []
    return {"effects_applied_past_carried_deadline": len(late), "effects_deadline_judged": judged}, first(late)


def _abandoned_at_deadline(rec: Recorded, calls: dict[str, list[list]]) -> int:
    """Calls of the intents sent to a too-slow effector (Tag.LATE_EFFECTOR) that their caller gave up
    on at their deadline while the effector still held them: each one a buggy fence would apply late."""
    refs = {intent_ref(*s.pair) for s in submissions(rec.history, "timeout") if s.tag == Tag.LATE_EFFECTOR}
    return sum(1 for ref in refs for _, end, status, _, deadline in calls.get(ref, [])
               if end is not None and status is None and deadline is not None
               and end >= deadline - CARRIED_DEADLINE_SLACK_MS)


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


def _trips_seen(rec: Recorded, calls: dict[str, list[list]], policy: dict) -> tuple[dict, dict]:
    """Each breaker trip (CLOSED -> OPEN) of the retry and breaker scenarios against the wire: the
    calls it reported in its window, and the failures among them, must not outnumber the calls the
    wiretap saw end in that window (a failure: any answer but 2xx, or none) on that cell's
    connections, give or take DEADLINE_SLACK_S (a connection no record places counts for every
    cell). The window runs from the cell's last close (or start), when the breaker empties it, and
    is at most window_s: a breaker whose window is longer than declared reports calls older than
    that, and is caught where the cell had such calls (``breaker_trips_window_tested``).
    Only there: no overload, under which a call can time out before it is sent, a failure no wire
    sees."""
    window_s, t0 = policy.get("breaker_window_s"), rec.params.get("t0_wall_ms")
    if window_s is None or t0 is None:
        return {"breaker_trip_failures_unseen": None, "breaker_trip_calls_unseen": None}, \
            {"note": "no declared breaker window or run start"}
    spans = [(t0 + min(times), t0 + max(times)) for times in (
        [e.time_ms for e in rec.history if e.scenario == name] for name in TRIPS_ON_WIRE) if times]
    cell_of = _cell_of_connection(rec, calls)
    ended = sorted((end, cell_of.get(conn), not (status is not None and 200 <= status < 300))
                   for slots in calls.values() for _, end, status, conn, _ in slots if end is not None)
    transitions = sorted((row["data"] for row in rec.events if row["subject"].startswith("exo.events.breaker.")),
                         key=lambda t: t["at_ms"])
    trips = [t for t in transitions if (t["from"], t["to"]) == ("CLOSED", "OPEN")
             and any(lo <= t["at_ms"] <= hi for lo, hi in spans)]
    slack_ms = DEADLINE_SLACK_S * 1000
    unseen_failures, unseen_calls, window_tested = [], [], 0
    for trip in trips:
        # The window a breaker reports starts empty when it closes (or its cell starts), and holds
        # at most the declared window_s before the trip.
        closed_at = max((t["at_ms"] for t in transitions if t["cell_id"] == trip["cell_id"] and t["to"] == "CLOSED"
                         and t["at_ms"] <= trip["at_ms"]), default=0)
        window_from = trip["at_ms"] - window_s * 1000
        lo, hi = max(window_from, closed_at) - slack_ms, trip["at_ms"] + slack_ms
        mine = [(end, failed) for end, cell, failed in ended if cell in (trip["cell_id"], None)]
        seen = [failed for end, failed in mine if lo <= end <= hi]
        evidence = {"cell": trip["cell_id"], "at_ms": trip["at_ms"],
                    "reported_failures": trip.get("failures_in_window"), "wire_failures": sum(seen),
                    "reported_calls": trip.get("calls_in_window"), "wire_calls": len(seen)}
        if trip.get("failures_in_window", 0) > sum(seen):
            unseen_failures.append(evidence)
        if trip.get("calls_in_window", 0) > len(seen):
            unseen_calls.append(evidence)
        # Calls of this cell after its last close but older than the window: one counting them
        # (a longer window than declared) would report more calls than the wire saw above.
        if any(closed_at <= end < window_from - slack_ms for end, _ in mine):
            window_tested += 1
    return {"breaker_trips_checked_on_wire": len(trips), "breaker_trip_failures_unseen": len(unseen_failures),
            "breaker_trip_calls_unseen": len(unseen_calls), "breaker_trips_window_tested": window_tested}, \
        {"trips": len(trips), "unseen_failures": first(unseen_failures), "unseen_calls": first(unseen_calls)}
