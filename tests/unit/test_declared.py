"""The declared policy: merged across gates, the stack's live numbers under the same names, drift."""

from __future__ import annotations

import pytest
from builders import recorded

from exoarmur_cli.checkers.policy import policy_drift
from exoarmur_cli.declared import (
    DeclaredConflict, declared_tables, drift, live_values, merged, stack_overrides,
)

TABLES = {
    "retry": [{"name": "effector_call", "attempts": 4, "base_s": 0.02, "cap_s": 0.25}],
    "timeouts": [{"category": "EFFECTOR_CALL", "deadline_s": 0.5}],
    "breakers": [{"name": "effector", "open_s": 1.0, "half_open_max_probes": 2}],
    "rate_limits": [{"name": "tenant", "rate_per_s": 200.0, "burst": 400}],
    "bounds": [{"name": "pending_intents", "limit": 2000}],
}


def test_live_values_read_tables_then_overrides():
    live = live_values(TABLES, {"rate_tenant_per_s": 50})
    assert live["retry_effector_call_attempts"] == 4 and live["timeout_EFFECTOR_CALL_s"] == 0.5
    assert live["breaker_half_open_max_probes"] == 2 and live["pending_intents"] == 2000
    assert (live["rate_tenant_per_s"], live["rate_tenant_burst"]) == (50, 400)


def test_drift_names_every_number_the_stack_does_not_run():
    live = live_values(TABLES, {})
    assert drift({"retry_effector_call_attempts": 4, "timeout_EFFECTOR_CALL_s": 0.5}, live) == []
    raised = live_values({**TABLES, "retry": [{"name": "effector_call", "attempts": 50}]}, {})
    assert drift({"retry_effector_call_attempts": 4}, raised) == [
        {"name": "retry_effector_call_attempts", "declared": 4, "live": 50}]
    assert drift({"breaker_no_such_field": 1}, live)[0]["live"] is None  # unknown to the stack: drift


def test_merge_refuses_a_conflict_and_overrides_are_the_overridable_names():
    assert merged({6: {"rate_tenant_per_s": 50}, 7: {"retry_effector_call_attempts": 4}}) == {
        "rate_tenant_per_s": 50, "retry_effector_call_attempts": 4}
    with pytest.raises(DeclaredConflict):
        merged({6: {"rate_tenant_per_s": 50}, 8: {"rate_tenant_per_s": 60}})
    assert stack_overrides({"rate_tenant_per_s": 50, "retry_effector_call_attempts": 4}) == {"rate_tenant_per_s": 50}


def test_declared_tables_put_the_harness_numbers_in_place():
    tables = declared_tables(TABLES, {"retry_effector_call_attempts": 3, "timeout_EFFECTOR_CALL_s": 0.25,
                                      "breaker_open_s": 2.0, "rate_tenant_burst": 100, "pending_intents": 300})
    assert tables["retry"][0]["attempts"] == 3 and tables["timeouts"][0]["deadline_s"] == 0.25
    assert tables["breakers"][0]["open_s"] == 2.0 and tables["rate_limits"][0]["burst"] == 100
    assert tables["bounds"][0]["limit"] == 300
    assert TABLES["retry"][0]["attempts"] == 4  # the live tables are left as recorded


def test_policy_drift_per_gate_and_missing_tables():
    params = {"policy_tables": TABLES, "overrides": {"rate_tenant_per_s": 50},
              "declared": {"6": {"rate_tenant_per_s": 50, "rate_tenant_burst": 100},
                           "7": {"retry_effector_call_attempts": 4}}}
    metrics, evidence = policy_drift(recorded(params=params))
    assert metrics == {"policy_drift_g6": 1, "policy_declared_g6": 2, "policy_drift_g7": 0, "policy_declared_g7": 1}
    assert evidence["g6"] == [{"name": "rate_tenant_burst", "declared": 100, "live": 400}]
    metrics, _ = policy_drift(recorded(params={"declared": params["declared"]}))
    assert metrics == {}  # no live tables recorded: every drift criterion is a missing measurement
