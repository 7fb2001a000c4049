"""node_faults checker: the plan (from the recorded parameters) against the recorded faults, their
recovery, the largest election and unavailability window, and refusals without a reason."""

from __future__ import annotations

from builders import Hist, recorded

from exoarmur_cli.checkers.node_faults import node_faults

KINDS = ["kill_leader", "kill_follower", "pause_leader"]
CLUSTER = {"nats_cluster": {"name": "exoarmur", "replicas": 3, "nodes": []}}


def params(cycles: int = 1, cluster: bool = True, kinds: list[str] = KINDS) -> dict:
    return {"scenario_params": {"persistence": {"node_faults": kinds, "node_fault_cycles": cycles}},
            "stack": CLUSTER if cluster else {"nats_cluster": None}}


def fault(hist: Hist, kind: str, cycle: int = 0, **over) -> None:
    """One fault as the scenario records it: its probes (a refusal then an acceptance), then the
    ``node_fault`` observation."""
    hist.submit(f"persistence-{len(hist.events):05d}", answer="fail", status=503, reason="STACK_UNAVAILABLE",
                probe="node_fault")
    hist.submit(f"persistence-{len(hist.events):05d}", probe="node_fault")
    value = {"kind": kind, "cycle": cycle, "target": "nats-1", "election_s": None if kind == "kill_follower" else 4.2,
             "unavailable_s": 0.0 if kind == "kill_follower" else 5.5, "recovered": True, "refused": 1,
             "reasons": {"STACK_UNAVAILABLE": 1}, "rejoined_s": 0.8, "rejoin_unavailable_s": 0.0, "rejoin_refused": 0,
             "rejoin_reasons": {}, **over}
    hist.observe("node_fault", "persistence", **value)


def all_faults(cycles: int = 1) -> Hist:
    hist = Hist()
    for cycle in range(cycles):
        for kind in KINDS:
            fault(hist, kind, cycle)
    return hist


def test_every_planned_fault_recovered_within_its_numbers():
    metrics, evidence = node_faults(recorded(all_faults(2), params=params(cycles=2)))
    assert metrics == {"node_faults_planned": 6, "node_faults_missing": 0, "node_faults_unrecovered": 0,
                       "node_fault_election_max_s": 4.2, "node_fault_unavailable_max_s": 5.5,
                       "node_fault_unavailable_beyond_hold_max_s": 5.5, "node_fault_refusals_unreasoned": 0}
    assert evidence["probes"] == 12 and evidence["probes_refused"] == 6
    assert [f["kind"] for f in evidence["faults"]] == KINDS * 2


def test_a_planned_fault_that_was_not_recorded_is_missing():
    hist = Hist()
    fault(hist, "kill_leader")
    fault(hist, "kill_follower")  # the pause never happened
    metrics, evidence = node_faults(recorded(hist, params=params()))
    assert metrics["node_faults_missing"] == 1
    assert evidence["missing"] == [{"cycle": 0, "kind": "pause_leader"}]


def test_the_second_cycle_counts_on_its_own():
    metrics, evidence = node_faults(recorded(all_faults(1), params=params(cycles=2)))
    assert metrics["node_faults_planned"] == 6
    assert metrics["node_faults_missing"] == 3
    assert {m["cycle"] for m in evidence["missing"]} == {1}


def test_a_skipped_fault_is_missing_not_applied():
    hist = all_faults()
    hist.events = [e for e in hist.events if not (e.f == "node_fault" and e.value["kind"] == "kill_follower")]
    hist.observe("node_fault", "persistence", kind="kill_follower", cycle=0, skipped="no stream leader reported")
    metrics, _ = node_faults(recorded(hist, params=params()))
    assert metrics["node_faults_missing"] == 1
    assert metrics["node_faults_unrecovered"] == 0


def test_a_fault_never_recovered_fails_each_way():
    never = [{"recovered": False, "unavailable_s": None},  # the api never accepted again
             {"election_s": None},  # no new leader was elected
             {"rejoined_s": None},  # the faulted server never became a current replica again
             {"rejoin_unavailable_s": None}]  # after it came back, the api never accepted again
    for over in never:
        hist = Hist()
        fault(hist, "kill_leader", **over)
        fault(hist, "kill_follower")
        fault(hist, "pause_leader")
        metrics, evidence = node_faults(recorded(hist, params=params()))
        assert metrics["node_faults_unrecovered"] == 1, over
        assert evidence["unrecovered"] == [{"cycle": 0, "kind": "kill_leader"}]


def test_an_unknown_election_or_window_makes_the_max_unknown_not_smaller():
    hist = Hist()
    fault(hist, "kill_leader", election_s=None, unavailable_s=None, recovered=False)
    fault(hist, "kill_follower")
    fault(hist, "pause_leader", election_s=9.0, unavailable_s=12.5)
    metrics, _ = node_faults(recorded(hist, params=params()))
    assert metrics["node_fault_election_max_s"] is None
    assert metrics["node_fault_unavailable_max_s"] is None
    assert metrics["node_fault_unavailable_beyond_hold_max_s"] is None


def test_the_window_after_the_server_came_back_counts_too():
    hist = Hist()
    fault(hist, "kill_leader")
    fault(hist, "kill_follower")
    fault(hist, "pause_leader", unavailable_s=6.0, rejoin_unavailable_s=8.5, rejoin_refused=4,
          rejoin_reasons={"STACK_UNAVAILABLE": 4})
    metrics, evidence = node_faults(recorded(hist, params=params()))
    assert metrics["node_fault_unavailable_max_s"] == 8.5
    assert evidence["faults"][2]["rejoin_reasons"] == {"STACK_UNAVAILABLE": 4}


def test_a_follower_kill_expects_no_election():
    hist = Hist()
    fault(hist, "kill_leader")
    fault(hist, "kill_follower")  # election_s None: not a failure
    fault(hist, "pause_leader", election_s=7.25, unavailable_s=11.0)
    metrics, _ = node_faults(recorded(hist, params=params()))
    assert metrics["node_faults_unrecovered"] == 0
    assert metrics["node_fault_election_max_s"] == 7.25
    assert metrics["node_fault_unavailable_max_s"] == 11.0


def test_refusals_without_a_reason_or_without_an_answer_are_counted():
    hist = all_faults()
    hist.submit("persistence-90001", answer="fail", status=503, reason=None, probe="node_fault")
    hist.submit("persistence-90002", answer="info", probe="node_fault")  # no answer at all
    hist.submit("persistence-90003", answer="fail", status=503, reason=None)  # not a node-fault probe
    metrics, evidence = node_faults(recorded(hist, params=params()))
    assert metrics["node_fault_refusals_unreasoned"] == 2
    assert [r["key"] for r in evidence["refused_without_reason"]] == ["persistence-90001", "persistence-90002"]


def test_a_single_server_plans_none_and_bounds_nothing():
    metrics, evidence = node_faults(recorded(Hist(), params=params(cluster=False)))
    assert metrics == {"node_faults_planned": 0, "node_faults_missing": 0, "node_faults_unrecovered": 0,
                       "node_fault_election_max_s": 0.0, "node_fault_unavailable_max_s": 0.0,
                       "node_fault_unavailable_beyond_hold_max_s": 0.0, "node_fault_refusals_unreasoned": 0}
    assert evidence["plan"] == "single nats-server: no node faults planned"


def test_a_cluster_with_nothing_recorded_is_missing_everything_and_unknown():
    metrics, _ = node_faults(recorded(Hist(), params=params(cycles=2)))
    assert metrics["node_faults_missing"] == 6
    assert metrics["node_fault_election_max_s"] is None
    assert metrics["node_fault_unavailable_max_s"] is None
    assert metrics["node_fault_unavailable_beyond_hold_max_s"] is None


def test_no_recorded_plan_yields_no_metrics():
    metrics, evidence = node_faults(recorded(Hist()))
    assert metrics == {}
    assert "not recorded" in evidence["note"]
    older = {"scenario_params": {"persistence": {"intents": 60}}, "stack": CLUSTER}  # a bundle from before
    metrics, evidence = node_faults(recorded(Hist(), params=older))
    assert metrics == {}
    assert "node_fault_cycles" in evidence["note"]


def test_a_partition_must_elect_another_leader_and_its_hold_is_shown():
    hist = Hist()
    fault(hist, "partition_leader", election_s=None, partitioned_s=12.4)  # the majority never elected one
    metrics, evidence = node_faults(recorded(hist, params=params(kinds=["partition_leader"])))
    assert metrics["node_faults_planned"] == 1 and metrics["node_faults_missing"] == 0
    assert metrics["node_faults_unrecovered"] == 1 and metrics["node_fault_election_max_s"] is None
    assert evidence["faults"][0]["partitioned_s"] == 12.4
    hist = Hist()
    fault(hist, "partition_leader", election_s=6.5, unavailable_s=16.0, partitioned_s=12.4)
    metrics, _ = node_faults(recorded(hist, params=params(kinds=["partition_leader"])))
    assert metrics["node_faults_unrecovered"] == 0
    assert (metrics["node_fault_election_max_s"], metrics["node_fault_unavailable_max_s"]) == (6.5, 16.0)


def test_the_hold_of_the_api_own_server_is_the_fault_s_and_the_rest_is_the_stack_s():
    """A 12 s partition of the server the api is connected on: the api cannot write until the heal,
    so only what it took beyond the hold counts; the same window with the api elsewhere counts whole."""
    hist = Hist()
    fault(hist, "kill_leader", unavailable_s=4.0)
    fault(hist, "pause_leader", target="nats-2", api_server="nats-2", paused_s=12.0, unavailable_s=6.3)
    fault(hist, "partition_leader", target="nats-0", api_server="nats-0", partitioned_s=12.0, unavailable_s=14.5)
    kinds = ["kill_leader", "pause_leader", "partition_leader"]
    metrics, _ = node_faults(recorded(hist, params=params(kinds=kinds)))
    assert metrics["node_fault_unavailable_max_s"] == 14.5
    assert metrics["node_fault_unavailable_beyond_hold_max_s"] == 4.0  # the kill's; the partition's is 2.5

    slow = Hist()  # an api that took 25 s past the heal hides in no total bound
    fault(slow, "partition_leader", target="nats-0", api_server="nats-0", partitioned_s=12.0, unavailable_s=37.0)
    metrics, _ = node_faults(recorded(slow, params=params(kinds=["partition_leader"])))
    assert metrics["node_fault_unavailable_beyond_hold_max_s"] == 25.0

    elsewhere = Hist()  # the api on a server of the majority: nothing of the window is the hold's
    fault(elsewhere, "partition_leader", target="nats-0", api_server="nats-1", partitioned_s=12.0, unavailable_s=14.5)
    metrics, _ = node_faults(recorded(elsewhere, params=params(kinds=["partition_leader"])))
    assert metrics["node_fault_unavailable_beyond_hold_max_s"] == 14.5


def test_an_unknown_hold_or_api_server_never_shrinks_the_window():
    unknown_hold = Hist()
    fault(unknown_hold, "pause_leader", target="nats-2", api_server="nats-2", paused_s=None, unavailable_s=6.3)
    metrics, _ = node_faults(recorded(unknown_hold, params=params(kinds=["pause_leader"])))
    assert metrics["node_fault_unavailable_beyond_hold_max_s"] is None

    unknown_api = Hist()  # not known to be on the held server: counted whole
    fault(unknown_api, "pause_leader", target="nats-2", api_server=None, paused_s=12.0, unavailable_s=13.0)
    metrics, _ = node_faults(recorded(unknown_api, params=params(kinds=["pause_leader"])))
    assert metrics["node_fault_unavailable_beyond_hold_max_s"] == 13.0

    after = Hist()  # the window after the server came back is never the hold's
    fault(after, "pause_leader", target="nats-2", api_server="nats-2", paused_s=12.0, unavailable_s=6.3,
          rejoin_unavailable_s=21.0)
    metrics, _ = node_faults(recorded(after, params=params(kinds=["pause_leader"])))
    assert metrics["node_fault_unavailable_beyond_hold_max_s"] == 21.0
