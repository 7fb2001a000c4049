"""Reports are rendered from the data given: change a number in, the document changes."""

from __future__ import annotations

import copy
import io
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

from exoarmur.reliability import all_policy_tables
from exoarmur_cli import report
from exoarmur_cli.gates import Verdict, evaluate_gate, load_gate_text

TABLES = {
    "timeouts": [
        {"category": "EXECUTION_INTENT", "deadline_s": 4.0, "reason_code": "TIMEOUT_EXECUTION_INTENT",
         "covers": "one intent end to end"},
        {"category": "EXECUTION_CONTAINMENT", "deadline_s": 3.0,
         "reason_code": "TIMEOUT_EXECUTION_CONTAINMENT", "covers": "all effector attempts"},
        {"category": "EFFECTOR_CALL", "deadline_s": 0.5, "reason_code": "TIMEOUT_EFFECTOR_CALL",
         "covers": "one attempt | one call"},
    ],
    "retry": [{"name": "effector_call", "attempts": 4, "base_s": 0.02, "cap_s": 0.25, "retry_on": "5xx"}],
    "rate_limits": [{"name": "tenant", "rate_per_s": 200.0, "burst": 400}],
    "breakers": [{"name": "effector", "window_s": 5.0, "min_calls": 5, "failure_ratio": 0.5, "open_s": 1.0,
                  "half_open_max_probes": 2, "half_open_successes_to_close": 2}],
    "bounds": [{"name": "pending_intents", "limit": 2000, "unit": "intents", "on_full": "refuse with QUEUE_FULL"}],
}

G5 = load_gate_text("g5_kill_switches.toml", """
id = 5
slug = "kill_switches"
name = "Kill switches"
scenarios = ["killswitch"]
summary = "s"
[[criteria]]
expr = "killswitch_propagation_p99_ms < 100"
why = "a switch must bite fast"
report = "timeout"
[[criteria]]
expr = "executed_after_switch == 0"
why = "nothing runs after the switch"
""")
G7 = load_gate_text("g7_failure_survival.toml", """
id = 7
slug = "failure_survival"
name = "Failure survival"
scenarios = ["chaos", "timeout"]
summary = "s"
[[criteria]]
expr = "duplicate_effects == 0"
why = "exactly once"
report = "chaos"
[[criteria]]
expr = "hung_intents_unresolved == 0"
why = "a hang ends in a terminal state"
report = "timeout"
[[criteria]]
expr = "breaker_opened >= 1"
why = "the breaker must open"
report = "breaker"
""")
GATES = {5: G5, 7: G7}


def results(p99_ms=40.0, duplicates=0, ran=("killswitch", "chaos", "timeout")):
    metrics = {"killswitch_propagation_p99_ms": p99_ms, "executed_after_switch": 0,
               "duplicate_effects": duplicates, "hung_intents_unresolved": 0, "breaker_opened": 2}
    return [evaluate_gate(G5, metrics, set(ran)), evaluate_gate(G7, metrics, set(ran))]


def test_surface_lists_every_policy_of_the_live_tables() -> None:
    tables = all_policy_tables()
    text = report.reliability_surface_md(tables)
    for family, rows in tables.items():
        for row in rows:
            assert str(row.get("category") or row["name"]) in text
    assert "| EFFECTOR_CALL | 0.5 | TIMEOUT_EFFECTOR_CALL |" in text


def test_surface_follows_the_numbers_given_and_names_missing_tables() -> None:
    changed = copy.deepcopy(TABLES)
    changed["timeouts"][0]["deadline_s"] = 7.25
    del changed["breakers"]
    before, after = report.reliability_surface_md(TABLES), report.reliability_surface_md(changed)
    assert "| EXECUTION_INTENT | 4 |" in before and "| EXECUTION_INTENT | 7.25 |" in after
    assert "**Not captured**" in after and "`breakers`" in after
    assert "one attempt \\| one call" in before  # a pipe in a cell does not break the table


@pytest.mark.parametrize("topic", report.TOPICS)
def test_design_docs_state_the_parameters_and_the_judging_criteria(topic: str) -> None:
    params = {"timeout": {"hang_intents": 3, "effector": {"hang_s": 9.5}}}
    text = report.design_md(topic, TABLES, params, GATES)
    assert "| hang_intents | 3 |" in text and "| effector.hang_s | 9.5 |" in text
    judged = [c.expr for g in GATES.values() for c in g.criteria if c.report == topic]
    for expr in judged:
        assert f"`{expr}`" in text
    if not judged:
        assert f'no gate criterion has `report = "{topic}"`' in text


def test_design_docs_change_when_a_table_changes() -> None:
    changed = copy.deepcopy(TABLES)
    changed["timeouts"][1]["deadline_s"] = 1.5  # containment now shorter than 4 x 0.5 s of attempts
    changed["breakers"][0]["open_s"] = 12.0
    changed["rate_limits"][0]["burst"] = 999
    assert "EXECUTION_CONTAINMENT 3 s" in report.design_md("timeout", TABLES, {})
    assert "EXECUTION_CONTAINMENT 1.5 s" in report.design_md("timeout", changed, {})
    assert "2.14 s, which fits within EXECUTION_CONTAINMENT (3 s)" in report.design_md("retry", TABLES, {})
    assert "**exceeds** EXECUTION_CONTAINMENT (1.5 s)" in report.design_md("retry", changed, {})
    assert "for 12 s" in report.design_md("breaker", changed, {})
    assert "bursts up to 999" in report.design_md("backpressure", changed, {})
    assert "**None given**" in report.design_md("timeout", TABLES, {})
    with pytest.raises(ValueError):
        report.design_md("vibes", TABLES, {})


def test_test_outputs_list_each_tagged_criterion_with_its_measurement() -> None:
    text = report.test_outputs_txt("timeout", results(p99_ms=180.5), GATES)
    assert "FAIL  killswitch_propagation_p99_ms < 100  measured 180.5, needs < 100  (gate G5)" in text
    assert "PASS  hung_intents_unresolved == 0  measured 0, needs == 0  (gate G7)" in text
    assert "===" not in text
    assert "executed_after_switch == 0  measured" not in text  # untagged criterion
    assert "criteria: 2  passed: 1  failed: 1" in text
    assert "killswitch_propagation_p99_ms = 180.5" in text  # related metrics of the gate


def test_test_outputs_say_when_nothing_was_judged_and_name_unrun_gates() -> None:
    text = report.test_outputs_txt("backpressure", results(), GATES)
    assert "NO CRITERIA" in text and "not a pass" in text
    partial = report.test_outputs_txt("breaker", results()[:1], GATES)
    assert "NO CRITERIA" in partial and "NOT RUN  gate G7" in partial


def test_load_results_reports_phases_and_coverage_exactly_as_measured() -> None:
    stats = [
        {"Name": "ramp", "Request Count": "1200", "Failure Count": "3", "Requests/s": "40.5",
         "50%": "12", "95%": "40", "99%": "88"},
        {"phase": "steady", "requests": 5000, "failures": 0, "rps": 250.0, "p50_ms": 10, "p95_ms": 30},
        {"Name": "Aggregated", "Request Count": "6200", "Failure Count": "3"},
    ]
    metrics = {"nodes_covered": 998, "nodes_expected": 1000, "peers_covered": 500, "peers_expected": 500,
               "tenants_covered": 10}
    data, text = report.load_results(metrics, stats)
    assert data["totals"] == {"requests": 6200, "failures": 3}
    assert data["phases"][0] == {"phase": "ramp", "requests": 1200.0, "failures": 3.0, "rps": 40.5,
                                 "p50_ms": 12.0, "p95_ms": 40.0, "p99_ms": 88.0}
    assert data["phases"][1]["p99_ms"] is None
    assert data["coverage"] == {"nodes": "998/1000", "peers": "500/500", "tenants": "10/missing"}
    assert "| ramp | 1200 | 3 | 40.5 | 12 | 40 | 88 |" in text and "| steady | 5000 | 0 | 250 | 10 | 30 | missing |" in text
    assert "| nodes | 998/1000 |" in text and "No load criteria were evaluated" in text
    empty_data, empty_text = report.load_results({}, [])
    assert empty_data["totals"]["requests"] is None and "No Locust statistics" in empty_text


def test_chaos_results_list_every_fault_and_the_chaos_criteria() -> None:
    faults = [
        {"time_ms": 1500.0, "kind": "sigkill", "target": "cell-2"},
        {"time_s": 3.25, "kind": "latency", "target": "effector", "latency_ms": 300},
    ]
    data, text = report.chaos_results({"duplicate_effects": 1}, faults, results(duplicates=1))
    assert data["fault_count"] == 2 and data["fault_kinds"] == {"latency": 1, "sigkill": 1}
    assert data["criteria"] == [{"gate": "G7", "expr": "duplicate_effects == 0", "value": 1.0,
                                 "passed": False, "note": "measured 1 violates == 0"}]
    assert "| 1500 | sigkill | cell-2 |" in text and "| 3250 | latency | effector | latency_ms=300 |" in text
    assert "| G7 | duplicate_effects == 0 | 1 | FAIL |" in text
    _, none_text = report.chaos_results({}, [], [])
    assert "No faults were injected" in none_text and "No chaos criteria were evaluated" in none_text


def test_chaos_table_takes_the_time_the_checker_records_and_rounds_it() -> None:
    # The chaos checker records each fault as {"t_ms", "kind", **value}: the time belongs in time_ms.
    faults = [{"t_ms": 49664.711, "kind": "proxy_toxics", "target": "cells->effector", "reset_peer_rate": 0.3,
               "wall_ms": 1795793624725},
              {"t_ms": 51969.898, "kind": "proxy_toxics", "target": "cells->effector", "jitter_ms": 40.0,
               "latency_ms": 80, "wall_ms": 1795793627031},
              {"kind": "kill", "target": "cell-0"}]
    _, text = report.chaos_results({}, faults, [])
    lines = [line for line in text.splitlines() if line.startswith("| ") and "proxy_toxics" in line or "| kill" in line]
    assert lines[0] == "| 49665 | proxy_toxics | cells->effector | reset_peer_rate=0.3, wall_ms=1795793624725 |"
    assert lines[1] == ("| 51970 | proxy_toxics | cells->effector | jitter_ms=40, latency_ms=80, "
                        "wall_ms=1795793627031 |")
    assert lines[2] == "| missing | kill | cell-0 |  |"  # no time recorded: said, not invented
    assert "t_ms=" not in text


def test_measured_values_are_rounded_to_what_they_support_in_every_table() -> None:
    stats = [{"Name": "submit[overload]", "Request Count": "877", "Failure Count": "50",
              "Requests/s": "92.94736258", "50%": "1600", "95%": "2300", "99%": "2400"}]
    res = results(p99_ms=224.7507316)
    _, load_text = report.load_results({}, stats, res)
    assert "| submit[overload] | 877 | 50 | 92.95 | 1600 | 2300 | 2400 |" in load_text
    outputs = report.test_outputs_txt("timeout", res, GATES)
    assert "measured 224.8, needs < 100" in outputs and "killswitch_propagation_p99_ms = 224.8" in outputs
    assert "224.75" not in outputs and "224.75" not in load_text
    # Configuration is shown exactly as in force, never rounded.
    exact = copy.deepcopy(TABLES)
    exact["retry"][0]["base_s"] = 0.0123456
    assert "| 0.0123456 |" in report.reliability_surface_md(exact)


def test_summary_rows_and_plain_text_rendering() -> None:
    res = results(p99_ms=180.5, ran=("killswitch", "chaos"))
    rows = report.pass_fail_summary_rows(res, {"killswitch": 12.0, "chaos": 30.0, "timeout": 5.0})
    assert rows[0][:4] == ("G5", "Kill switches", Verdict.RED, 12.0)
    assert "killswitch_propagation_p99_ms < 100 (measured 180.5)" in rows[0][4]
    assert rows[1][2] is Verdict.INCOMPLETE and rows[1][3] == 35.0 and "scenario not run: timeout" in rows[1][4]
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    report.render_summary(console, res, {"killswitch": 12.0, "chaos": 30.0}, Verdict.RED, "artifacts/reality_run_004")
    text = out.getvalue()
    assert "\x1b[" not in text and "[bold" not in text
    assert "Kill switches" in text and "RED" in text and "INCOMPLETE" in text and "12.0" in text
    assert "FINAL: RED" in text and "artifacts/reality_run_004" in text


def test_junit_counts_failures_and_never_skips_missing_data() -> None:
    res = results(p99_ms=None, duplicates=2, ran=("killswitch", "chaos"))
    root = ET.fromstring(report.junit_xml(res))
    suite = root.find("testsuite")
    assert suite.get("name") == "exoarmur-gates"
    cases = suite.findall("testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    # 5 criteria + 1 "scenarios ran" case for G7 (timeout missing)
    assert len(cases) == 6 and int(suite.get("tests")) == 6
    assert len(failed) == int(suite.get("failures")) == 3
    assert root.find(".//skipped") is None and suite.get("skipped") == "0"
    missing = next(c for c in cases if c.get("name") == "killswitch_propagation_p99_ms < 100")
    assert missing.get("classname") == "G5_kill_switches"
    assert missing.find("failure").get("message") == "measured missing, needs < 100"
    assert next(c for c in cases if c.get("name") == "scenarios ran").find("failure").get("message") == (
        "scenarios not run: timeout")
