"""Gate 1 on a cluster: every node fault the plan called for happened, the cluster recovered from
each, within bounds, and every submission refused meanwhile was told why.

The plan comes from the run's recorded parameters: the persistence scenario's ``node_faults``
(the kinds, in order) times its ``node_fault_cycles``, on a stack recorded as a cluster
(``stack.nats_cluster``); on a single server it calls for none. A fault is recorded by the
scenario as a ``node_fault`` observation; the submissions made during it carry
``probe="node_fault"`` in the history.
"""

from __future__ import annotations

from exoarmur_cli.checkers.common import first, submissions
from exoarmur_cli.recorded import Recorded

# Faults after which another server must lead the stream (an election is measured).
ELECTING = frozenset({"kill_leader", "pause_leader", "partition_leader"})
# Faults that hold one server out for a set time (the scenario's node_pause_s / node_partition_s),
# by the record's field for how long it was held: an api whose own connection is on that server
# cannot write until it is back, whatever it does, so that hold is the fault's, not the stack's.
HOLDS = {"pause_leader": "paused_s", "partition_leader": "partitioned_s"}
PROBE = "node_fault"  # the probe name of the scenario's submissions during a fault
SCENARIO = "persistence"


def _planned(rec: Recorded) -> tuple[list[tuple[int, str]] | None, str]:
    """(cycle, kind) for each fault the plan called for, and why; None when the plan is unknown."""
    params = rec.run.scenario_params.get(SCENARIO)
    if params is None:
        return None, "the persistence scenario's parameters were not recorded"
    if not rec.run.stack.get("nats_cluster"):
        return [], "single nats-server: no node faults planned"
    kinds, cycles = params.get("node_faults"), params.get("node_fault_cycles")
    if not isinstance(kinds, list) or not isinstance(cycles, int):
        return None, "node_faults / node_fault_cycles not recorded in the persistence parameters"
    return [(c, k) for c in range(cycles) for k in kinds], f"cluster: {cycles} cycle(s) of {kinds}"


def _recovered(fault: dict) -> bool:
    """The api accepted again, a new leader was elected where one had to be, the faulted server
    was back as a current replica (with every server agreeing on the meta leader), and the api
    accepted again after its return, each within the scenario's recovery bound."""
    elected = fault.get("kind") not in ELECTING or fault.get("election_s") is not None
    back = fault.get("rejoined_s") is not None and fault.get("rejoin_unavailable_s") is not None
    return bool(fault.get("recovered")) and elected and back


def _unavailable_s(fault: dict) -> float | None:
    """The longer of the fault's two windows: while the server was down (or stopped), and after it
    came back; None (unknown) when either is missing."""
    windows = (fault.get("unavailable_s"), fault.get("rejoin_unavailable_s"))
    return None if None in windows else max(windows)


def _beyond_hold_s(fault: dict) -> float | None:
    """The unavailability the stack added beyond the fault's own hold: while the fault lasted, the
    window less the hold when the api's server was the one held out (at least 0), else the whole
    window; after the server came back, the whole window. None (unknown) when any is missing."""
    during, after = fault.get("unavailable_s"), fault.get("rejoin_unavailable_s")
    hold_field = HOLDS.get(fault.get("kind"))
    if hold_field is not None and fault.get("api_server") is not None and fault.get("api_server") == fault.get("target"):
        hold = fault.get(hold_field)
        during = None if during is None or hold is None else max(0.0, during - hold)
    return None if during is None or after is None else max(during, after)


def _max(values: list) -> float | None:
    """The largest, or None (unknown) when any is missing."""
    return None if any(v is None for v in values) else max(values, default=0.0)


def node_faults(rec: Recorded) -> tuple[dict, dict]:
    planned, plan_note = _planned(rec)
    if planned is None:
        return {}, {"note": plan_note}
    faults = [e.value for e in rec.history if e.scenario == SCENARIO and e.f == "node_fault"]
    applied = [f for f in faults if "skipped" not in f]
    done = {(f.get("cycle"), f.get("kind")) for f in applied}
    missing = [{"cycle": c, "kind": k} for c, k in planned if (c, k) not in done]
    unrecovered = [f for f in applied if not _recovered(f)]
    probes = [s for s in submissions(rec.history, SCENARIO) if s.invoke.value.get("probe") == PROBE]
    unreasoned = [s for s in probes if not s.accepted and not s.reason]
    elections = [f.get("election_s") for f in applied if f.get("kind") in ELECTING]
    windows = [_unavailable_s(f) for f in applied]
    beyond = [_beyond_hold_s(f) for f in applied]
    metrics = {
        "node_faults_planned": len(planned),
        "node_faults_missing": len(missing),
        "node_faults_unrecovered": len(unrecovered),
        # none applied: 0 on a single server (none planned); unknown if some were planned
        "node_fault_election_max_s": _max(elections) if elections or not planned else None,
        "node_fault_unavailable_max_s": _max(windows) if windows or not planned else None,
        "node_fault_unavailable_beyond_hold_max_s": _max(beyond) if beyond or not planned else None,
        "node_fault_refusals_unreasoned": len(unreasoned),
    }
    per_fault = [{k: f.get(k) for k in ("cycle", "kind", "target", "api_server", "election_s", "unavailable_s",
                                        "refused", "reasons", "paused_s", "partitioned_s", "rejoined_s",
                                        "rejoin_unavailable_s", "rejoin_refused", "rejoin_reasons", "skipped")}
                 for f in faults]
    return metrics, {
        "plan": plan_note, "faults": per_fault, "missing": missing,
        "unrecovered": [{"cycle": f.get("cycle"), "kind": f.get("kind")} for f in unrecovered],
        "probes": len(probes), "probes_refused": sum(1 for s in probes if not s.accepted),
        "refused_without_reason": first([{"key": s.key, "status": s.done.value.get("status") if s.done else None}
                                         for s in unreasoned]),
    }
