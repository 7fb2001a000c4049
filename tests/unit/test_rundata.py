"""Typed run data: written once as frozen types, read back from the same JSON the bundle keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from exoarmur.contracts import Outcome, ReasonCode
from exoarmur_cli.history import EXECUTED_OK, Expect, Tag, tag_text
from exoarmur_cli.recorded import Recorded
from exoarmur_cli.rundata import Policy, RunMeta, RunParams
from exoarmur_cli.definitions import PROFILES
from exoarmur_cli.scenarios import ORDER, load_scenario
from exoarmur_cli.scenarios.params import PersistenceParams, ScenarioFileError, TimeoutParams, as_, expected_s, parse

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
TABLES = {
    "timeouts": [{"category": "EXECUTION_INTENT", "deadline_s": 3.5}, {"category": "KV_GET", "deadline_s": 1.0}],
    "retry": [{"name": "effector_call", "attempts": 4, "base_s": 0.02, "cap_s": 0.25}],
    "breakers": [{"name": "effector", "open_s": 1.0, "half_open_max_probes": 2, "window_s": 5.0, "min_calls": 5,
                  "failure_ratio": 0.5}],
    "bounds": [{"name": "pending_intents", "limit": 1000}, {"name": "approval_wait_ms", "limit": 30000},
               {"name": "effect_deadline_skew_ms", "limit": 100}],
    "rate_limits": [{"name": "tenant", "rate_per_s": 100, "burst": 200}, {"name": "global", "rate_per_s": 1000,
                                                                          "burst": 2000}],
}


def test_policy_from_tables_with_overrides_and_back_through_json() -> None:
    policy = Policy.from_tables(TABLES, {"pending_intents": 300, "approval_wait_ms": 2000})
    assert policy.timeout_s("redelivery") == 4.5 and policy.timeout_s("KV_GET") == 1.0
    assert (policy.pending_bound, policy.approval_wait_s, policy.rate_tenant_per_s) == (300, 2.0, 100)
    assert policy.retry_attempts == {"effector_call": 4}
    assert Policy.from_json(policy.to_json()) == policy
    assert (policy.rate_tenant_burst, policy.effector_retry_cap_s, policy.breaker_half_open_max_probes) == (200, 0.25, 2)
    assert (policy.breaker_window_s, policy.breaker_min_calls, policy.breaker_failure_ratio) == (5.0, 5, 0.5)
    assert (policy.effector_retry_base_s, policy.effect_deadline_skew_ms) == (0.02, 100)
    assert sorted(policy.to_json()) == ["approval_wait_s", "breaker_failure_ratio", "breaker_half_open_max_probes",
                                        "breaker_min_calls", "breaker_open_s", "breaker_window_s",
                                        "effect_deadline_skew_ms", "effector_retry_base_s",
                                        "effector_retry_cap_s", "pending_bound", "rate_global_burst",
                                        "rate_global_per_s", "rate_tenant_burst", "rate_tenant_per_s",
                                        "retry_attempts", "timeouts_s"]


def test_run_params_round_trip_and_a_partial_file_loads_as_missing() -> None:
    params = RunParams(t0_wall_ms=5, seed=1, profile="quick", policy=Policy(pending_bound=7),
                       node_owners={"n1": "t1"}, stack={"peers": 2})
    assert RunParams.from_json(params.to_json()) == params
    partial = Recorded(params={"policy": {"pending_bound": 100}})
    assert partial.run.policy.pending_bound == 100 and partial.run.policy.breaker_open_s is None
    assert partial.run.t0_wall_ms is None and partial.run.node_owners == {}
    assert Recorded().run == RunParams()


def test_run_meta_leaves_out_what_is_not_known_yet() -> None:
    meta = RunMeta(seed=3, profile="quick", defects_injected=("no-timeout",))
    assert meta.to_json() == {"seed": 3, "profile": "quick", "defects_injected": ["no-timeout"],
                              "started_wall_ms": None}
    later = RunMeta(seed=3, profile="quick", started_wall_ms=9, external_stack=False, gates_selected=(1, 2))
    assert later.to_json()["external_stack"] is False and later.to_json()["gates_selected"] == [1, 2]
    assert "stack_ready_s" not in later.to_json()


def test_expectations_are_typed_and_keep_their_recorded_tag() -> None:
    expect = Expect(Outcome.DENIED, ReasonCode.KILL_SWITCH_GLOBAL)
    assert expect.tag == "expect:DENIED/KILL_SWITCH_GLOBAL" and Expect.parse(expect.tag) == expect
    assert EXECUTED_OK.tag == "expect:EXECUTED/OK"
    assert Expect.parse("hang") is None and Expect.parse("expect:NOPE/OK") is None
    assert tag_text(Tag.QUIET_BASELINE) == "quiet:baseline" and tag_text(expect) == expect.tag
    assert tag_text(Tag.NONE) == ""


def test_scenario_files_give_typed_parameters() -> None:
    loaded = load_scenario(SCENARIOS, "timeout", "quick")
    timeout = as_(loaded.params, TimeoutParams)
    assert timeout.hang_intents >= 1 and "hang_intents" in loaded.text
    assert parse("timeout", loaded.params.to_json(), "x") == loaded.params
    assert loaded.expected_s > 0 and "expected_s" not in loaded.params.to_json()  # for the display, not the driver


def test_every_scenario_file_says_how_long_each_profile_takes() -> None:
    for name in ORDER:
        for profile in PROFILES:
            assert load_scenario(SCENARIOS, name, profile).expected_s > 0, (name, profile)


LATE = {"late_intents": 1, "late_latency_ms": 450, "late_jitter_ms": 300, "late_hold_s": 1, "rejected_intents": 1}


@pytest.mark.parametrize(("table", "says"), [
    ({}, "missing expected_s"), ({"expected_s": 0}, "not a positive number"), ({"expected_s": "1m"}, "not a positive"),
])
def test_a_bad_expected_duration_is_refused(table, says) -> None:
    with pytest.raises(ScenarioFileError, match=says):
        expected_s(dict(table), "x.toml [quick]")


@pytest.mark.parametrize(("table", "says"), [
    ({"hang_intents": 3, "slow_intents": 1, "slow_latency_ms": 1, **LATE}, "missing ['slow_jitter_ms']"),
    ({"hang_intents": 3, "slow_intents": 1, "slow_latency_ms": 1, "slow_jitter_ms": 1, **LATE, "extra": 1},
     "unknown ['extra']"),
    ({"hang_intents": 2.5, "slow_intents": 1, "slow_latency_ms": 1, "slow_jitter_ms": 1, **LATE}, "not an integer"),
    ({"hang_intents": 3, "slow_intents": 1, "slow_latency_ms": "fast", "slow_jitter_ms": 1, **LATE}, "not a number"),
])
def test_bad_scenario_parameters_are_refused_with_why(table, says) -> None:
    with pytest.raises(ScenarioFileError, match=says.replace("[", r"\[").replace("]", r"\]")):
        parse("timeout", table, "timeout.toml")


PERSISTENCE = {"intents": 60, "rate_during_restart": 40, "per_check": 5, "node_fault_cycles": 1, "node_pause_s": 12,
               "node_partition_s": 12}


def test_the_persistence_file_plans_node_faults_per_profile() -> None:
    quick = as_(load_scenario(SCENARIOS, "persistence", "quick").params, PersistenceParams)
    full = as_(load_scenario(SCENARIOS, "persistence", "full").params, PersistenceParams)
    assert quick.node_faults == full.node_faults == ["kill_leader", "kill_follower", "pause_leader",
                                                     "partition_leader"]
    assert (quick.node_fault_cycles, full.node_fault_cycles) == (1, 2)
    assert quick.node_pause_s > 9  # past nats-server's largest Raft election timeout
    assert quick.node_partition_s > 9  # likewise


@pytest.mark.parametrize(("faults", "says"), [
    (["kill_leader", "reboot"], "node_faults holds 'reboot': Input should be 'kill_leader'"),
    ("kill_leader", "node_faults holds 'kill_leader': Input should be a valid list"),
])
def test_an_unknown_node_fault_is_refused_with_the_choices(faults, says) -> None:
    with pytest.raises(ScenarioFileError, match=says):
        parse("persistence", {**PERSISTENCE, "node_faults": faults}, "persistence.toml")
