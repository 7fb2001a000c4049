"""checkers.measure: a crashing checker is unknown (its criteria fail as missing), never a pass."""

from __future__ import annotations

from pathlib import Path

from builders import Hist, quick_record, recorded

from exoarmur_cli import checkers
from exoarmur_cli.gates import MISSING, Verdict, evaluate_gate, load_gate_text, load_gates

GATES_DIR = Path(__file__).resolve().parents[2] / "gates"

GATE = """\
id = 5
slug = "kill_switches"
name = "Kill switches"
scenarios = ["killswitch"]
summary = "switches hold"

[[criteria]]
expr = "executions_while_global_engaged == 0"
why = "nothing executes while the switch is engaged"

[[criteria]]
expr = "duplicate_effects == 0"
why = "measured by another checker, which still ran"
"""


def boom(_rec):
    raise RuntimeError("checker bug")


def test_a_raising_checker_yields_no_metrics_and_its_error_as_evidence(monkeypatch):
    monkeypatch.setitem(checkers.CHECKERS, "killswitch", boom)
    metrics, evidence, _ = checkers.measure(recorded())
    assert "executions_while_global_engaged" not in metrics
    assert evidence["killswitch"] == {"error": "RuntimeError: checker bug"}
    assert metrics["duplicate_effects"] == 0  # the other checkers still measured

    result = evaluate_gate(load_gate_text("g5.toml", GATE), metrics, {"killswitch"})
    assert result.verdict is Verdict.RED
    failed = {c.metric: c for c in result.failed}
    assert set(failed) == {"executions_while_global_engaged"}
    assert failed["executions_while_global_engaged"].value is None
    assert failed["executions_while_global_engaged"].note == MISSING


def test_a_checker_crashing_on_real_data_is_caught_too():
    hist = Hist()  # a killswitch OK event without the fields the checker reads
    hist.add("ok", "killswitch", "operator", "killswitch", scope="global")
    metrics, evidence, _ = checkers.measure(recorded(hist))
    assert "error" in evidence["killswitch"]
    assert "executions_while_global_engaged" not in metrics


def test_no_checker_crashes_on_empty_or_small_data():
    hist = Hist()
    hist.submit("load-p1-1")
    for rec in (recorded(), recorded(hist, records=[quick_record("load-p1-1")])):
        _, evidence, _ = checkers.measure(rec)
        assert set(evidence) == set(checkers.CHECKERS)
        assert not [name for name, shown in evidence.items() if "error" in shown]


def test_no_gate_is_green_on_a_run_that_recorded_nothing():
    """Every gate needs positive evidence: with all its scenarios 'run' but nothing recorded,
    some criterion must fail — vacuous zeros alone never make a gate green."""
    metrics, _, _ = checkers.measure(recorded())
    gates = load_gates(GATES_DIR)
    assert len(gates) == 8
    for gate in gates.values():
        result = evaluate_gate(gate, metrics, gate.scenarios)
        assert result.verdict is Verdict.RED, gate.slug


def test_every_metric_names_the_checker_that_measured_it():
    measured = checkers.measure(recorded())
    assert set(measured.source) == set(measured.metrics)
    assert measured.source["duplicate_effects"] == "exactly_once"
    assert set(measured.source.values()) <= set(checkers.CHECKERS)
