"""Each self-test defect drives only some of its gate's scenarios (``selftest.SCENARIOS``): every
subset must still hold the scenario whose checker computes the defect's expected metric, found
here from data the subset table does not read: the criterion's ``report`` in the gate file, the
metric's scenario prefix, the gate's only scenario, or the checker's own scenario constants."""

from __future__ import annotations

import inspect

import pytest

from exoarmur.defects import Defect
from exoarmur_cli import definitions, gates
from exoarmur_cli.checkers import durability, wire
from exoarmur_cli.gates import Verdict
from exoarmur_cli.selftest import EXPECTED, SCENARIOS, DefectOutcome, FailedCriterion, JudgedRun

GATES = gates.load_gates(definitions.gates_dir())

# Metrics a checker computes from scenarios it names itself (its constants, or the name it filters on),
# whatever report topic the criterion is shown under: the checker, and those scenarios.
CHECKER_SCENARIOS = {
    "acked_intents_lost": (durability.persistence, ("persistence",)),
    "attempts_over_policy_observed": (wire.wire, wire.SINGLE_DELIVERY),
    "retry_gap_median_ms_effector_down": (wire.wire, (wire.EFFECTOR_DOWN,)),
    "breaker_trip_failures_unseen": (wire._trips_seen, wire.TRIPS_ON_WIRE),
    "breaker_trip_calls_unseen": (wire._trips_seen, wire.TRIPS_ON_WIRE),
}


def computing_scenarios(gate: gates.Gate, metric: str) -> tuple[str, ...]:
    criterion = next(c for c in gate.criteria if c.metric == metric)
    if metric in CHECKER_SCENARIOS:
        checker, scenarios = CHECKER_SCENARIOS[metric]
        assert f'"{metric}"' in inspect.getsource(checker), f"{checker.__name__} does not compute {metric}"
        return tuple(scenarios)
    if criterion.report is not None:
        return (criterion.report,)
    prefixed = [s for s in gate.scenarios if metric.startswith(f"{s}_")]
    if prefixed:
        return tuple(prefixed)
    assert len(gate.scenarios) == 1, f"{metric}: which scenario computes it? (add it to CHECKER_SCENARIOS)"
    return gate.scenarios


def test_every_defect_has_a_subset():
    assert set(SCENARIOS) == set(EXPECTED) == set(Defect)


@pytest.mark.parametrize("defect", list(EXPECTED), ids=lambda d: d.value)
def test_subset_holds_the_scenario_that_computes_the_expected_metric(defect):
    gate_id, metric = EXPECTED[defect]
    gate = GATES[gate_id]
    subset = SCENARIOS[defect]
    assert subset and set(subset) <= set(gate.scenarios), f"{defect.value}: {subset} not of gate {gate_id}"
    needed = computing_scenarios(gate, metric)
    assert set(needed) <= set(subset), f"{defect.value}: {metric} is computed from {needed}, subset {subset}"


def _run(verdict: str, value: float | None, skipped: tuple[str, ...], not_run: tuple[str, ...] = ()) -> JudgedRun:
    return JudgedRun(0, verdict, {7: verdict}, (FailedCriterion(7, "breaker_opened", "breaker_opened >= 1", value),),
                     "b", skipped, not_run)


def test_a_subset_run_is_caught_only_if_its_scenarios_ran():
    outcome = DefectOutcome("no-breaker", 7, "breaker_opened", ())
    assert outcome.caught_on(_run(Verdict.INCOMPLETE.value, 0, ("timeout",)))
    assert outcome.caught_on(_run(Verdict.INCOMPLETE.value, None, ("timeout",)))  # as in a full run
    assert not outcome.caught_on(_run(Verdict.INCOMPLETE.value, 0, ()))  # a full run must be RED
    assert outcome.caught_on(_run(Verdict.RED.value, 0, ()))
    # the scenario that had to run crashed: its counts read 0, which proves nothing
    assert not outcome.caught_on(_run(Verdict.INCOMPLETE.value, 0, ("timeout",), ("breaker",)))
