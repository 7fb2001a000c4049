"""Gate files parse strictly; criteria judge measurements; a missing measurement never passes."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest

from exoarmur.contracts import ReasonCode
from exoarmur_cli.errors import HarnessError
from exoarmur_cli.gates import (
    Gate,
    GateFileError,
    Verdict,
    evaluate_gate,
    fmt_number,
    load_gate_text,
    load_gates,
    overall,
    parse_expr,
    result_from_json,
    result_to_json,
)

GATE_TEXT = """\
id = 7
slug = "failure_survival"
name = "Failure survival & crash consistency"
scenarios = ["timeout", "chaos"]
summary = "exactly one effect per intent"

[[criteria]]
expr = "duplicate_effects == 0"
why = "an effect applied twice is the failure this gate exists for"
report = "chaos"

[[criteria]]
expr = "recovery_p99_ms < 250.5"
why = "recovery is bounded"
"""


def gate(text: str = GATE_TEXT, name: str = "g7_failure_survival.toml") -> Gate:
    return load_gate_text(name, text)


def test_load_gate_text_parses_every_field_and_keeps_the_source() -> None:
    g = gate()
    assert (g.id, g.slug, g.scenarios) == (7, "failure_survival", ("timeout", "chaos"))
    first, second = g.criteria
    assert (first.metric, first.op, first.threshold, first.report) == ("duplicate_effects", "==", 0.0, "chaos")
    assert (second.metric, second.op, second.threshold, second.report) == ("recovery_p99_ms", "<", 250.5, None)
    assert g.source_text == GATE_TEXT and g.source_name == "g7_failure_survival.toml"


@pytest.mark.parametrize("op", ["<", "<=", "==", "!=", ">=", ">"])
def test_parse_expr_accepts_every_operator(op: str) -> None:
    assert parse_expr(f"x_ms {op} -1.5e2") == ("x_ms", op, -150.0)


@pytest.mark.parametrize(
    "expr",
    ["x = 1", "x == ", "== 1", "x == 1 2", "x == one", "x => 1", "1x == 1", "x == nan", "x < inf", "a b < 1"],
)
def test_bad_expr_is_a_gate_file_error_naming_file_and_expr(expr: str) -> None:
    text = GATE_TEXT.replace("duplicate_effects == 0", expr)
    with pytest.raises(GateFileError) as info:
        gate(text, "g7_bad.toml")
    assert "g7_bad.toml" in str(info.value) and "criteria[0]" in str(info.value)
    assert isinstance(info.value, HarnessError) and info.value.reason_code is ReasonCode.CONFIG_INVALID


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.split("[[criteria]]")[0] + "criteria = []\n", "no criteria"),
        (lambda t: t.split("[[criteria]]")[0], "missing key 'criteria'"),
        (lambda t: t.replace("id = 7", "id = 9"), "outside 1..8"),
        (lambda t: t.replace("id = 7", 'id = "7"'), "'id' must be int"),
        (lambda t: t.replace('scenarios = ["timeout", "chaos"]', "scenarios = []"), "scenarios"),
        (lambda t: t.replace('report = "chaos"', 'report = "vibes"'), "report 'vibes'"),
        (lambda t: t.replace("summary", "summery"), "unknown keys"),
        (lambda t: t + "[[criteria]]\nexpr = \"a < 1\"\n", "missing key 'why'"),
        (lambda t: t + '[[criteria]]\nexpr = "duplicate_effects == 0"\nwhy = "again"\n', "duplicate"),
        (lambda t: t.replace("id = 7", "id = = 7"), "not valid TOML"),
    ],
)
def test_malformed_gate_files_are_rejected_with_the_problem(edit, problem: str) -> None:
    with pytest.raises(GateFileError, match="g7_x.toml") as info:
        gate(edit(GATE_TEXT), "g7_x.toml")
    assert problem in str(info.value)


def _write(dir_: Path, name: str, text: str) -> None:
    (dir_ / name).write_text(text)


def test_load_gates_reads_a_directory_keyed_by_id(tmp_path: Path) -> None:
    _write(tmp_path, "g7_failure_survival.toml", GATE_TEXT)
    _write(tmp_path, "g1_durable.toml", GATE_TEXT.replace("id = 7", "id = 1").replace("failure_survival", "durable"))
    gates = load_gates(tmp_path)
    assert list(gates) == [1, 7] and gates[1].slug == "durable"


def test_load_gates_rejects_duplicate_ids_and_misnamed_files(tmp_path: Path) -> None:
    _write(tmp_path, "g7_failure_survival.toml", GATE_TEXT)
    _write(tmp_path, "g7_other.toml", GATE_TEXT.replace('"failure_survival"', '"other"'))
    with pytest.raises(GateFileError, match="already used"):
        load_gates(tmp_path)
    (tmp_path / "g7_other.toml").unlink()
    _write(tmp_path, "g2_failure_survival.toml", GATE_TEXT)
    with pytest.raises(GateFileError, match="g2_failure_survival.toml: file name says"):
        load_gates(tmp_path)
    (tmp_path / "g2_failure_survival.toml").unlink()
    _write(tmp_path, "gate-seven.toml", GATE_TEXT)
    with pytest.raises(GateFileError, match="gate-seven.toml"):
        load_gates(tmp_path)


def test_load_gates_refuses_an_empty_or_absent_directory(tmp_path: Path) -> None:
    with pytest.raises(GateFileError, match="no gate files"):
        load_gates(tmp_path)
    with pytest.raises(GateFileError, match="not found"):
        load_gates(tmp_path / "nope")


def test_green_when_every_criterion_passes_and_every_scenario_ran() -> None:
    result = evaluate_gate(gate(), {"duplicate_effects": 0, "recovery_p99_ms": 100.0}, {"timeout", "chaos"})
    assert result.verdict is Verdict.GREEN
    assert [c.passed for c in result.criteria] == [True, True]
    assert result.criteria[1].value == 100.0 and result.scenarios_missing == ()


def test_red_when_a_criterion_fails_and_the_value_is_recorded() -> None:
    result = evaluate_gate(gate(), {"duplicate_effects": 3, "recovery_p99_ms": 100}, {"timeout", "chaos"})
    assert result.verdict is Verdict.RED
    failed = result.failed
    assert [(c.expr, c.value) for c in failed] == [("duplicate_effects == 0", 3.0)]
    assert "measured 3 violates == 0" == failed[0].note


@pytest.mark.parametrize("value", [None, math.nan, math.inf, "0", [0]])
def test_a_missing_measurement_fails_never_passes(value) -> None:
    metrics = {"recovery_p99_ms": 1}
    if value is not None:
        metrics["duplicate_effects"] = value
    result = evaluate_gate(gate(), metrics, {"timeout", "chaos"})
    first = result.criteria[0]
    assert first.value is None and not first.passed and first.note.startswith("missing measurement")
    assert result.verdict is Verdict.RED


def test_missing_with_a_not_equal_criterion_still_fails() -> None:
    text = GATE_TEXT.replace("duplicate_effects == 0", "duplicate_effects != 1")
    assert not evaluate_gate(gate(text), {"recovery_p99_ms": 1}, {"timeout", "chaos"}).criteria[0].passed


def test_bools_count_as_zero_and_one() -> None:
    text = GATE_TEXT.replace("duplicate_effects == 0", "fail_closed == 1")
    result = evaluate_gate(gate(text), {"fail_closed": True, "recovery_p99_ms": 1}, {"timeout", "chaos"})
    assert result.criteria[0].value == 1.0 and result.verdict is Verdict.GREEN
    result = evaluate_gate(gate(text), {"fail_closed": False, "recovery_p99_ms": 1}, {"timeout", "chaos"})
    assert result.criteria[0].value == 0.0 and result.verdict is Verdict.RED


def test_incomplete_when_a_scenario_did_not_run_even_if_criteria_pass() -> None:
    result = evaluate_gate(gate(), {"duplicate_effects": 0, "recovery_p99_ms": 1}, {"timeout"})
    assert result.verdict is Verdict.INCOMPLETE and result.scenarios_missing == ("chaos",)
    assert all(c.passed for c in result.criteria)  # still evaluated and shown
    red_too = evaluate_gate(gate(), {"duplicate_effects": 2}, set())
    assert red_too.verdict is Verdict.INCOMPLETE and len(red_too.failed) == 2


def test_overall_priority_red_then_incomplete_then_green() -> None:
    G, R, I = Verdict.GREEN, Verdict.RED, Verdict.INCOMPLETE
    assert overall([]) is I
    assert overall([G, G]) is G
    assert overall([G, I, G]) is I
    assert overall([I, R, G]) is R
    green = evaluate_gate(gate(), {"duplicate_effects": 0, "recovery_p99_ms": 1}, {"timeout", "chaos"})
    assert overall([green]) is G and overall([green, I]) is I


def test_results_round_trip_through_json() -> None:
    result = evaluate_gate(gate(), {"duplicate_effects": 2, "p": math.nan}, {"timeout"})
    data = orjson.loads(orjson.dumps(result_to_json(result)))
    assert data["verdict"] == "INCOMPLETE" and data["metrics"]["p"] is None
    assert data["criteria"][0]["value"] == 2.0 and data["criteria"][1]["value"] is None
    assert result_from_json(data) == result


def test_result_from_json_rejects_malformed_records() -> None:
    with pytest.raises(GateFileError, match="malformed"):
        result_from_json({"gate_id": 1})


def test_fmt_number_prints_integers_plainly() -> None:
    assert (fmt_number(3.0), fmt_number(0.25), fmt_number(None), fmt_number(1234567.5)) == (
        "3", "0.25", "missing", "1234567.5")
