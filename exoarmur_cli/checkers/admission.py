"""Gates 6 and 8: what the stack admitted, measured from its own intent stream.

A token bucket of ``rate`` per second and ``burst`` can admit at most ``burst + rate * (t2 - t1)``
intents in any window [t1, t2]. The intent stream's timestamps (one server clock) say when each
admitted intent landed, so the bound is checked over every window, for each tenant and overall,
against the rates the run declared — not against what the api says it enforced.
"""

from __future__ import annotations

from collections import defaultdict

from exoarmur_cli.checkers.common import first
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
