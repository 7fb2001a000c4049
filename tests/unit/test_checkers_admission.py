"""Admitted rates from the intent stream against declared token buckets — each can go red."""

from __future__ import annotations

import pytest
from builders import T0_WALL_MS, Hist, intent, intent_row, recorded

from exoarmur_cli.checkers.admission import PUBLISH_JITTER_S, admitted_rates, global_refusals, max_excess

POLICY = {"params": {"policy": {"rate_tenant_per_s": 10, "rate_tenant_burst": 5,
                                "rate_global_per_s": 100, "rate_global_burst": 50}}}


def test_a_burst_then_the_rate_is_exactly_the_bound():
    slack = 10 * PUBLISH_JITTER_S
    burst_then_rate = [0] * 5 + [100 * n for n in range(1, 11)]  # 5 at once, then 10/s
    assert max_excess(burst_then_rate, 10, 5) == -slack
    assert max_excess(burst_then_rate + [1000] * (int(slack) + 1), 10, 5) > 0  # slack + 1 more, at once


def test_a_window_in_the_middle_is_found():
    quiet, crowd = [1000 * n for n in range(10)], [20_000 + n for n in range(30)]
    assert max_excess(quiet + crowd, 10, 5) == pytest.approx(30 - 5 - 10 * (0.029 + PUBLISH_JITTER_S))


def rows(tenant: str, times: list[int]) -> list[dict]:
    return [intent_row(intent(f"load-{tenant}-{n}", tenant), timestamp_ms=T0_WALL_MS + t, seq=n)
            for n, t in enumerate(times)]


def test_tenants_and_global_within_their_buckets():
    intents = rows("t1", [100 * n for n in range(20)]) + rows("t2", [100 * n for n in range(20)])
    metrics, _ = admitted_rates(recorded(intents=intents, **POLICY))
    assert metrics == {"admitted_intents_checked": 40, "tenants_admitted_over_bound": 0,
                       "global_admitted_over_bound": 0}


def test_a_tenant_admitted_past_its_bucket():
    intents = rows("t1", [10 * n for n in range(40)]) + rows("t2", [100 * n for n in range(5)])  # t1: 100/s
    metrics, evidence = admitted_rates(recorded(intents=intents, **POLICY))
    assert metrics["tenants_admitted_over_bound"] == 1
    assert evidence["tenants_over"] == ["t1"]
    assert metrics["global_admitted_over_bound"] == 0


def test_global_admitted_past_its_bucket():
    intents = [row for n in range(30) for row in rows(f"t{n}", [0, 1, 2, 3])]  # 120 at once, burst 50
    metrics, _ = admitted_rates(recorded(intents=intents, **POLICY))
    assert metrics["global_admitted_over_bound"] == 1
    assert metrics["tenants_admitted_over_bound"] == 0


def test_no_declared_rates_is_missing():
    metrics, _ = admitted_rates(recorded(intents=rows("t1", [0])))
    assert metrics["tenants_admitted_over_bound"] is None


# --- global refusals, against what the global bucket was charged --------------------------------

def flooded(accepted_at: list[float], refusals_at: list[float], flood: int = 0, **charged_extra) -> dict:
    """A run whose harness had 202s at ``accepted_at`` (ms after t0, answered 2 ms later) and a
    RATE_LIMITED_GLOBAL refusal at each of ``refusals_at`` (answered 5 ms later), then ``flood``
    submissions refused by their tenant's bucket."""
    hist = Hist()
    events = [(at, "ok", 2) for at in accepted_at] + [(at, "global", 5) for at in refusals_at]
    for n, (at, kind, lag) in enumerate(sorted(events)):
        ident = dict(key=f"tenancy-{n:05d}", tenant_id="t3", peer_id="p1", node_id="n1", action_class="A1", tag="")
        hist.add("invoke", "submit", "p1", "tenancy", at, **ident)
        if kind == "ok":
            hist.add("ok", "submit", "p1", "tenancy", at + lag, **ident, status=202, duplicate=False)
        else:
            hist.add("fail", "submit", "p1", "tenancy", at + lag, **ident, status=429, reason_code="RATE_LIMITED_GLOBAL")
    for n in range(flood):
        hist.submit(f"tenancy-f{n}", "t3", answer="fail", status=429, reason="RATE_LIMITED_TENANT",
                    tag="global_flood", time_ms=10_000 + n * 5)
    return global_refusals(recorded(hist, **POLICY))[0]


def test_a_global_refusal_after_the_bucket_was_charged_its_burst_and_rate_is_explained():
    # 100/s, burst 50: 50 at once at 1 s, then 100/s, then a refusal: the bucket was empty.
    accepted = [1000.0] * 50 + [1000.0 + 10 * n for n in range(1, 100)]
    metrics = flooded(accepted, refusals_at=[1990])
    assert (metrics["global_refusals_checked"], metrics["global_refusals_unexplained"]) == (1, 0)


def test_a_global_refusal_with_tokens_left_is_unexplained():
    # 20/s charged against a 100/s bucket: it can never run dry, whatever it held before.
    accepted = [50.0 * n for n in range(60)]
    metrics = flooded(accepted, refusals_at=[2500, 2600])
    assert (metrics["global_refusals_checked"], metrics["global_refusals_unexplained"]) == (2, 2)
    assert flooded(accepted, refusals_at=[])["global_refusals_unexplained"] == 0


def test_refusals_after_the_buckets_and_unanswered_submissions_count_as_charged():
    """A 5xx (pending bound, failed publish) or no answer may have taken a token; a 4xx did not."""
    hist = Hist()
    for n in range(60):  # 60 at 200/s: 503s and timeouts, each may have taken a token
        hist.submit(f"tenancy-c{n}", "t3", answer="fail" if n % 2 else "info", status=503,
                    reason="QUEUE_FULL", time_ms=1000 + n * 5)
    hist.submit("tenancy-r", "t3", answer="fail", status=429, reason="RATE_LIMITED_GLOBAL", time_ms=1400)
    metrics, _ = global_refusals(recorded(hist, **POLICY))
    assert (metrics["global_refusals_checked"], metrics["global_refusals_unexplained"]) == (1, 0)


def test_the_flood_is_measured_against_what_would_drain_a_bucket_charged_for_refusals():
    # 400 submissions over 2 s (200/s): the bucket (burst 50, 100/s) would have been charged 400
    # against the 250 it can give in that time.
    metrics = flooded([0.0], refusals_at=[], flood=400)
    assert metrics["global_flood_offered_vs_drain"] == pytest.approx(400 / (50 + 100 * 1.995), rel=1e-3)
    assert flooded([0.0], refusals_at=[])["global_flood_offered_vs_drain"] is None  # no flood: missing
