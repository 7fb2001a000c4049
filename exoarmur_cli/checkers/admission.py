"""Gates 6 and 8: what the stack admitted, measured from its own intent stream.

A token bucket of ``rate`` per second and ``burst`` can admit at most ``burst + rate * (t2 - t1)``
intents in any window [t1, t2]. The intent stream's timestamps (one server clock) say when each
admitted intent landed, so the bound is checked over every window, for each tenant and overall,
against the rates the run declared — not against what the api says it enforced.

The converse bounds refusals: whatever the bucket held at t1, by t2 it holds at least
``min(burst, rate * (t2 - t1))`` minus what it was charged in between. Counting as charged every
submission of the harness's that may have taken a token (the intent stream does not show
duplicates or failed publishes), a global refusal at t2 with tokens left by that count was not the
global rate's doing: a bucket charged for submissions it refused, say, or for another tenant's.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict

from exoarmur_cli.checkers.common import first, submissions, wall_ms
from exoarmur_cli.history import INFO, Tag
from exoarmur_cli.recorded import Recorded

# Admission and the durable publish are not one instant: an intent admitted at t may land later
# (hundreds of ms on a loaded 2-core machine), bunching arrivals. Windows are widened by this much
# before the bound is applied: 25 intents of slack at 50/s, where a bucket that lets a 3x-noisy
# tenant through for 2.5 s overshoots by ~250 (a 10x margin).
PUBLISH_JITTER_S = 0.5


def max_excess(times_ms: list[int], rate_per_s: float, burst: float) -> float:
    """The largest ``count - (burst + rate * (span + jitter))`` over every window of arrivals.

    For windows ending at arrival j, the worst start i maximises ``rate * t_i - i``, so one pass
    with a running maximum covers all O(n^2) windows."""
    ordered = sorted(times_ms)
    worst, best_start = float("-inf"), float("-inf")
    for j, t in enumerate(ordered):
        best_start = max(best_start, rate_per_s * t / 1000 - j)
        count_minus_rate = (j + 1) - rate_per_s * t / 1000
        worst = max(worst, count_minus_rate + best_start - burst - rate_per_s * PUBLISH_JITTER_S)
    return worst


def admitted_rates(rec: Recorded) -> tuple[dict, dict]:
    policy = rec.params.get("policy", {})
    tenant_rate, tenant_burst = policy.get("rate_tenant_per_s"), policy.get("rate_tenant_burst")
    global_rate, global_burst = policy.get("rate_global_per_s"), policy.get("rate_global_burst")
    by_tenant: dict[str, list[int]] = defaultdict(list)
    for row in rec.intents:
        by_tenant[row["intent"]["tenant_id"]].append(row["timestamp_ms"])
    everything = [t for times in by_tenant.values() for t in times]
    if None in (tenant_rate, tenant_burst, global_rate, global_burst) or not everything:
        return {"admitted_intents_checked": len(everything), "tenants_admitted_over_bound": None,
                "global_admitted_over_bound": None}, {"note": "no declared rates or no admitted intents"}
    excess = {tenant: max_excess(times, tenant_rate, tenant_burst) for tenant, times in by_tenant.items()}
    over = sorted(t for t, e in excess.items() if e > 0)
    global_excess = max_excess(everything, global_rate, global_burst)
    return {
        "admitted_intents_checked": len(everything),
        "tenants_admitted_over_bound": len(over),
        "global_admitted_over_bound": int(global_excess > 0),
    }, {"tenants_over": first(over), "tenant_excess_max": max(excess.values()), "global_excess": global_excess,
        "jitter_s": PUBLISH_JITTER_S}


# A refusal is unexplained only with this many tokens to spare (of a bucket of ``burst``).
SPARE_TOKENS_SHARE = 0.1
WINDOWS = 8  # window lengths tried, up to the time the bucket takes to refill from empty


def charged(sub) -> bool:
    """Whether ``sub`` may have taken a token from the buckets: accepted (a duplicate too), refused
    after them (5xx: the pending bound, a failed publish) or never answered. Everything the api
    refuses before or at its buckets is a 4xx."""
    return not sub.refused or not 400 <= sub.done.value.get("status", 0) < 500


def tokens_at_least(refusal_ms: tuple[float, float], charged_from: list[float], charged_until: list[float],
                    rate_per_s: float, burst: float) -> float:
    """A lower bound on the tokens a ``rate``/``burst`` bucket held when it refused at some
    instant in ``refusal_ms`` (invoke, answer), charged only for the submissions whose
    (invoke, answer) spans are ``charged_from``/``charged_until`` (each sorted; an unanswered
    one until +inf): over windows w of up to burst / rate seconds, ``min(burst, rate * w)`` minus
    every charge that may fall in [invoke - w, answer]."""
    invoked, answered = refusal_ms
    begun = bisect_right(charged_from, answered)
    best = float("-inf")
    for k in range(1, WINDOWS + 1):
        w_s = burst / rate_per_s * k / WINDOWS
        over_before = bisect_left(charged_until, invoked - w_s * 1000)  # answered before the window opened
        best = max(best, min(burst, rate_per_s * w_s) - (begun - over_before))
    return best


def global_refusals(rec: Recorded) -> tuple[dict, dict]:
    """Every RATE_LIMITED_GLOBAL refusal the harness received, against a global bucket charged for
    every submission it made that may have taken a token (``charged``); and whether the scenarios
    offered enough for a bucket charged for refusals too to run dry (the global flood)."""
    policy = rec.params.get("policy", {})
    rate, burst = policy.get("rate_global_per_s"), policy.get("rate_global_burst")
    subs = submissions(rec.history)
    if rate is None or burst is None or not subs:
        return {"global_refusals_unexplained": None, "global_flood_offered_vs_drain": None}, {
            "note": "no declared global rate or no submissions"}
    spans = [(wall_ms(rec, s.invoke), float("inf") if s.done is None or s.done.type == INFO else wall_ms(rec, s.done))
             for s in subs if charged(s)]  # no answer: the api may have taken it up at any time since
    charged_from, charged_until = sorted(a for a, _ in spans), sorted(b for _, b in spans)
    spare = max(1.0, SPARE_TOKENS_SHARE * burst)
    refused = [s for s in subs if s.refused and s.reason == "RATE_LIMITED_GLOBAL"]
    unexplained = []
    for s in refused:
        left = tokens_at_least((wall_ms(rec, s.invoke), wall_ms(rec, s.done)), charged_from, charged_until, rate, burst)
        if left >= spare:
            unexplained.append({"key": s.key, "tenant": s.tenant_id, "tokens_at_least": round(left, 1)})
    flood = [s for s in subs if s.tag == Tag.GLOBAL_FLOOD]
    offered = None
    if len(flood) >= 2:
        span_s = (flood[-1].invoke.time_ms - flood[0].invoke.time_ms) / 1000
        offered = len(flood) / (burst + rate * span_s)
    return {
        "global_refusals_checked": len(refused),
        "global_refusals_unexplained": len(unexplained),
        "global_flood_offered_vs_drain": None if offered is None else round(offered, 3),
    }, {"unexplained": first(unexplained), "spare_tokens": spare, "flood_submissions": len(flood)}
