"""Admitted rates from the intent stream against declared token buckets — each can go red."""

from __future__ import annotations

import pytest
from builders import T0_WALL_MS, intent, intent_row, recorded

from exoarmur_cli.checkers.admission import PUBLISH_JITTER_S, admitted_rates, max_excess

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
