"""The self-test's matrix, JSON and JUnit XML, built from hand-made results (no runs)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import orjson

from exoarmur_cli.selftest import DefectOutcome, FailedCriterion, JudgedRun, SelfTestReport
from exoarmur_cli.selftest_report import junit_xml, matrix_rows, to_json


def run(seed: int, gate: int, verdict: str, *metrics: str, overall: str | None = None) -> JudgedRun:
    failed = tuple(FailedCriterion(gate, m, f"{m} == 0", 3.0) for m in metrics)
    return JudgedRun(seed, overall or verdict, {gate: verdict}, failed, f"/b/reality_run_{seed:03d}")


CAUGHT_TWICE = DefectOutcome("tenant-leak", 6, "cross_tenant_reads_leaked",
                             (run(0, 6, "RED", "cross_tenant_reads_leaked", "quiet_tenant_p99_ms_under_noise"),
                              run(1, 6, "RED", "cross_tenant_reads_leaked")))
ESCAPED_ON_SEED_1 = DefectOutcome("no-breaker", 7, "breaker_opened",
                                  (run(0, 7, "RED", "breaker_opened"), run(1, 7, "GREEN")))
RED_FOR_ANOTHER_REASON = DefectOutcome("switch-cache", 5, "effects_past_switch_bound",
                                       (run(0, 5, "RED", "killswitch_propagation_p99_ms"),))
CLEAN_GREEN = JudgedRun(0, "GREEN", {g: "GREEN" for g in range(1, 9)}, (), "/b/reality_run_010")
CLEAN_RED = JudgedRun(1, "RED", {**{g: "GREEN" for g in range(1, 9)}, 8: "RED"},
                      (FailedCriterion(8, "queue_depth_max", "queue_depth_max < 100", None),), "/b/reality_run_011")


def report(*defects: DefectOutcome, clean: tuple[JudgedRun, ...] = (CLEAN_GREEN,)) -> SelfTestReport:
    return SelfTestReport(list(defects), list(clean))


def test_caught_needs_the_expected_criterion_on_every_seed():
    assert CAUGHT_TWICE.caught and CAUGHT_TWICE.escaped_seeds == ()
    assert not ESCAPED_ON_SEED_1.caught and ESCAPED_ON_SEED_1.escaped_seeds == (1,)
    assert not RED_FOR_ANOTHER_REASON.caught  # red, but not on the defect's own criterion
    assert not DefectOutcome("x", 1, "m", ()).caught  # no seed ran: nothing was shown
    assert report(CAUGHT_TWICE).ok
    assert not report(CAUGHT_TWICE, ESCAPED_ON_SEED_1).ok
    assert not report(CAUGHT_TWICE, clean=(CLEAN_GREEN, CLEAN_RED)).ok


def test_matrix_rows_show_each_gate_the_seeds_caught_and_the_result():
    rows = matrix_rows(report(CAUGHT_TWICE, ESCAPED_ON_SEED_1))
    assert rows[0] == ["tenant-leak", "·", "·", "·", "·", "·", "RED", "·", "·", "cross_tenant_reads_leaked", "2/2",
                       "caught"]
    assert rows[1][7] == "RED/GREEN (ESCAPED)"
    assert rows[1][-2:] == ["1/2", "ESCAPED"]


def test_json_holds_every_seed_its_verdicts_failed_criteria_and_the_clean_runs():
    data = orjson.loads(orjson.dumps(to_json(report(CAUGHT_TWICE, ESCAPED_ON_SEED_1, clean=(CLEAN_GREEN, CLEAN_RED)))))
    assert data["ok"] is False
    leak, breaker = data["defects"]
    assert (leak["caught"], breaker["caught"], breaker["escaped_seeds"]) == (True, False, [1])
    assert [s["seed"] for s in leak["seeds"]] == [0, 1]
    assert leak["seeds"][0]["verdicts"] == {"G6": "RED"}
    assert [f["metric"] for f in leak["seeds"][0]["failed"]] == ["cross_tenant_reads_leaked",
                                                                  "quiet_tenant_p99_ms_under_noise"]
    assert [s["caught"] for s in breaker["seeds"]] == [True, False]
    assert [c["green"] for c in data["clean_runs"]] == [True, False]
    assert data["clean_runs"][1]["failed"] == [{"gate": 8, "metric": "queue_depth_max",
                                                "expr": "queue_depth_max < 100", "value": None}]


def test_junit_has_one_testcase_per_defect_seed_and_clean_run():
    xml = junit_xml(report(CAUGHT_TWICE, ESCAPED_ON_SEED_1, clean=(CLEAN_GREEN, CLEAN_RED)))
    suite = ET.fromstring(xml.split("?>", 1)[1]).find("testsuite")
    cases = [(c.get("classname"), c.get("name"), c.find("failure") is not None) for c in suite.iter("testcase")]
    assert cases == [("defect.tenant-leak", "seed 0", False), ("defect.tenant-leak", "seed 1", False),
                     ("defect.no-breaker", "seed 0", False), ("defect.no-breaker", "seed 1", True),
                     ("clean", "run 1 seed 0", False), ("clean", "run 2 seed 1", True)]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("6", "2", "0")
    escaped = suite.findall("testcase")[3].find("failure")
    assert "G7 GREEN" in escaped.get("message") and "/b/reality_run_001" in escaped.text
    assert "queue_depth_max < 100 (measured missing)" in suite.findall("testcase")[5].find("failure").text


def test_an_empty_self_test_is_well_formed():
    assert to_json(report(clean=())) == {"ok": True, "defects": [], "clean_runs": []}
    assert 'tests="0"' in junit_xml(report(clean=()))
