"""The self-test's results as a table, as JSON and as JUnit XML. Pure: built from a
``SelfTestReport``, no runs, no I/O."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from exoarmur_cli.gates import fmt_number
from exoarmur_cli.report import junit_document
from exoarmur_cli.selftest import DefectOutcome, JudgedRun, SelfTestReport

GATES = range(1, 9)


def _verdicts_in(d: DefectOutcome, gate: int) -> str:
    """A gate's verdicts over the seeds: one word when they agree, else each seed's in order."""
    seen = [run.verdicts[gate] for run in d.runs if gate in run.verdicts]
    if not seen:
        return "·"
    return seen[0] if len(set(seen)) == 1 else "/".join(seen)


def matrix_rows(report: SelfTestReport) -> list[list[str]]:
    """defect × gate: the verdict in each gate that ran ('·' elsewhere), the expected criterion,
    the seeds on which it was caught, and the result."""
    rows = []
    for d in report.defects:
        cells = [_verdicts_in(d, g) for g in GATES]
        if not d.caught:
            cells[d.gate - 1] += " (ESCAPED)"
        caught_seeds = sum(1 for run in d.runs if d.caught_on(run))
        rows.append([d.defect, *cells, d.expected_metric, f"{caught_seeds}/{len(d.runs)}",
                     "caught" if d.caught else "ESCAPED"])
    return rows


def _run_json(run: JudgedRun) -> dict[str, Any]:
    return {"seed": run.seed, "overall": run.overall, "bundle": run.bundle, "scenarios_not_run": list(run.skipped),
            "scenarios_failed_to_run": list(run.not_run),
            "verdicts": {f"G{g}": v for g, v in sorted(run.verdicts.items())},
            "failed": [{"gate": f.gate, "metric": f.metric, "expr": f.expr, "value": f.value} for f in run.failed]}


def to_json(report: SelfTestReport) -> dict[str, Any]:
    """The full matrix: per defect, per seed, each gate's verdict, the failed criteria and whether
    the defect was caught on that seed; then the clean runs."""
    return {
        "ok": report.ok,
        "defects": [{"defect": d.defect, "gate": d.gate, "expected_metric": d.expected_metric, "caught": d.caught,
                     "escaped_seeds": list(d.escaped_seeds),
                     "seeds": [{**_run_json(run), "caught": d.caught_on(run)} for run in d.runs]}
                    for d in report.defects],
        "clean_runs": [{**_run_json(run), "green": run.overall == "GREEN"} for run in report.clean_runs],
    }


def _failed_text(run: JudgedRun) -> str:
    return "\n".join(f"G{f.gate} {f.expr} (measured {fmt_number(f.value)})" for f in run.failed) or "none failed"


def junit_xml(report: SelfTestReport) -> str:
    """One testcase per defect × seed (failed when the defect escaped on that seed) and per clean
    run (failed unless all green)."""
    suites = ET.Element("testsuites", name="exoarmur")
    suite = ET.SubElement(suites, "testsuite", name="exoarmur-self-test")
    tests = failures = 0
    for d in report.defects:
        for run in d.runs:
            case = ET.SubElement(suite, "testcase", classname=f"defect.{d.defect}", name=f"seed {run.seed}")
            tests += 1
            if not d.caught_on(run):
                failures += 1
                failure = ET.SubElement(case, "failure", message=(
                    f"escaped: G{d.gate} {run.verdicts.get(d.gate, 'not run')}, "
                    f"{d.expected_metric} not among the failed criteria"))
                failure.text = f"{_failed_text(run)}\nbundle: {run.bundle}"
    for n, run in enumerate(report.clean_runs, 1):
        case = ET.SubElement(suite, "testcase", classname="clean", name=f"run {n} seed {run.seed}")
        tests += 1
        if run.overall != "GREEN":
            failures += 1
            failure = ET.SubElement(case, "failure", message=f"clean run {run.overall}")
            failure.text = f"{_failed_text(run)}\nbundle: {run.bundle}"
    return junit_document(suites, suite, tests, failures)
