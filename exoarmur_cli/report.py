"""The bundle's human-readable files, generated from data — never retyped numbers.

Why generated: a design document that restates a deadline by hand drifts from the code; these
are rendered from the policy tables captured from the live stack, the scenario parameters the
run used, and the gate results, so every number in them is the number that was in force or
measured. Where there is nothing to show, the text says so: an empty report is not a pass.
All functions are pure (text in, text out) except ``render_summary``, which prints.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from exoarmur_cli.display import fmt_measured
from exoarmur_cli.gates import CriterionResult, Gate, GateResult, Verdict, fmt_number, measured

TOPICS = ("timeout", "retry", "backpressure", "breaker")
COVERAGE_KINDS = ("nodes", "peers", "tenants")  # metrics "{kind}_covered" / "{kind}_expected"

# Each policy table: its heading and why it exists (what the numbers in it guard against).
_FAMILIES: dict[str, tuple[str, str]] = {
    "timeouts": ("Timeouts", "Every await on an I/O edge has a deadline; past it the operation "
                 "is abandoned with the reason code shown, so nothing waits forever."),
    "retry": ("Retries", "Bounded attempts with full-jitter backoff; only the errors listed "
              "are retried, so a transient fault gets another try and a storm cannot start."),
    "breakers": ("Circuit breakers", "A failing dependency is cut off for a while instead "
                 "of being hammered; every state transition is audited."),
    "rate_limits": ("Rate limits", "Token buckets per tenant and overall; excess requests are "
                    "refused synchronously with RATE_LIMITED_TENANT / RATE_LIMITED_GLOBAL."),
    "bounds": ("Bounds", "Every queue and buffer has a limit and an explicit behaviour when "
               "full; nothing is dropped silently."),
}
_TOPIC_TABLES = {"timeout": ("timeouts",), "retry": ("retry",),
                 "backpressure": ("rate_limits", "bounds"), "breaker": ("breakers",)}
_TOPIC_TITLES = {"timeout": "Timeout design", "retry": "Retry design",
                 "backpressure": "Backpressure design", "breaker": "Circuit breaker design"}
_VERDICT_STYLE = {Verdict.GREEN: "bold green", Verdict.RED: "bold red",
                  Verdict.INCOMPLETE: "bold yellow"}


# --- markdown helpers ---------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A configured value, exactly as it is in force."""
    if isinstance(value, bool) or value is None:
        text = "missing" if value is None else str(value).lower()
    elif isinstance(value, (int, float)):
        text = fmt_number(measured(value))
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _measured_cell(value: Any) -> str:
    """A measured value, rounded to what the measurement supports (see ``display``)."""
    return fmt_measured(value).replace("|", "\\|").replace("\n", " ")


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
             cell: Callable[[Any], str] = _cell) -> str:
    """A markdown table; columns default to every key, in first-seen order. ``cell`` renders a value:
    ``_cell`` (exact) for configuration, ``_measured_cell`` (rounded) for measurements."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value if not isinstance(value, (list, tuple)) else ", ".join(map(str, value))
    return flat


def _family_section(name: str, rows: Sequence[Mapping[str, Any]] | None) -> str:
    title, why = _FAMILIES.get(name, (name, "Policy table as captured."))
    if not rows:
        return f"## {title}\n\n{why}\n\n**Not captured**: the stack reported no `{name}` table.\n"
    return f"## {title} ({len(rows)})\n\n{why}\n\n{md_table(rows)}"


# --- 00 and the design documents ----------------------------------------------------------


def reliability_surface_md(policy_tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """00: every I/O edge with its timeout, retry, breaker, rate limit and bound."""
    parts = [
        "# Reliability surface\n\nGenerated from the policy tables captured from the live "
        "stack at run time (`all_policy_tables()`); every number below is the one in force.\n"
    ]
    families = list(_FAMILIES) + [name for name in policy_tables if name not in _FAMILIES]
    parts += [_family_section(name, policy_tables.get(name)) for name in families]
    return "\n".join(parts)


def _max_backoff_s(row: Mapping[str, Any]) -> float | None:
    """Upper bound of all waits of one retry policy: sum of min(cap, base*2**n), n < attempts-1."""
    attempts, base_s, cap_s = (measured(row.get(k)) for k in ("attempts", "base_s", "cap_s"))
    if attempts is None or base_s is None or cap_s is None:
        return None
    return sum(min(cap_s, base_s * 2 ** min(n, 62)) for n in range(max(int(attempts) - 1, 0)))


def _deadlines_s(policy_tables: Mapping[str, Any]) -> dict[str, float | None]:
    return {row.get("category"): measured(row.get("deadline_s"))
            for row in policy_tables.get("timeouts") or ()}


def _timeout_notes(policy_tables: Mapping[str, Any]) -> list[str]:
    deadlines = _deadlines_s(policy_tables)
    chain = ("EXECUTION_INTENT", "EXECUTION_CONTAINMENT", "EFFECTOR_CALL")
    values = [deadlines.get(c) for c in chain]
    if any(v is None for v in values):
        return []
    nested = values[0] > values[1] > values[2]
    return [
        "Nested deadlines: " + " > ".join(f"{c} {fmt_number(v)} s" for c, v in zip(chain, values))
        + f" — {'holds' if nested else '**does not hold**'}: an outer deadline "
        "must leave room for the work it contains."
    ]


def _retry_notes(policy_tables: Mapping[str, Any]) -> list[str]:
    notes, deadlines = [], _deadlines_s(policy_tables)
    retry_rows = policy_tables.get("retry") or ()
    for row in retry_rows:
        bound = _max_backoff_s(row)
        notes.append(f"`{row.get('name')}`: at most {_cell(row.get('attempts'))} attempts, "
                      f"total backoff at most {fmt_number(bound)} s.")
    effector = next((r for r in retry_rows if r.get("name") == "effector_call"), None)
    call_s, budget_s = deadlines.get("EFFECTOR_CALL"), deadlines.get("EXECUTION_CONTAINMENT")
    if effector and call_s is not None and budget_s is not None:
        worst_s = (measured(effector.get("attempts")) or 0) * call_s + (_max_backoff_s(effector) or 0)
        fits = "fits within" if worst_s <= budget_s else "**exceeds**"
        notes.append(f"Worst case of every effector attempt timing out: {fmt_number(round(worst_s, 6))} s, "
                     f"which {fits} EXECUTION_CONTAINMENT ({fmt_number(budget_s)} s).")
    return notes


def _breaker_notes(policy_tables: Mapping[str, Any]) -> list[str]:
    return [
        f"`{row.get('name')}`: CLOSED → OPEN when, within {_cell(row.get('window_s'))} s and at "
        f"least {_cell(row.get('min_calls'))} calls, the failure ratio reaches "
        f"{_cell(row.get('failure_ratio'))}; OPEN refuses calls (BREAKER_OPEN) for "
        f"{_cell(row.get('open_s'))} s; HALF_OPEN admits {_cell(row.get('half_open_max_probes'))} "
        f"probes and closes after {_cell(row.get('half_open_successes_to_close'))} successes."
        for row in policy_tables.get("breakers") or ()
    ]


def _backpressure_notes(policy_tables: Mapping[str, Any]) -> list[str]:
    notes = [f"Rate limit `{r.get('name')}`: {_cell(r.get('rate_per_s'))} requests/s sustained, "
             f"bursts up to {_cell(r.get('burst'))}." for r in policy_tables.get("rate_limits") or ()]
    notes += [f"Bound `{r.get('name')}`: {_cell(r.get('limit'))} {_cell(r.get('unit'))}; when "
              f"reached: {_cell(r.get('on_full'))}." for r in policy_tables.get("bounds") or ()]
    return notes


_NOTES = {"timeout": _timeout_notes, "retry": _retry_notes,
          "backpressure": _backpressure_notes, "breaker": _breaker_notes}


def design_md(
    topic: str,
    policy_tables: Mapping[str, Any],
    scenario_params: Mapping[str, Mapping[str, Any]],
    gates: Mapping[int, Gate] | None = None,
) -> str:
    """01/03/05/07: what is bounded and how, the parameters in force and used, and the gate
    criteria (``report = topic``) that judge it. Pass the params of the scenarios that ran."""
    if topic not in TOPICS:
        raise ValueError(f"design topic must be one of {TOPICS}, not {topic!r}")
    parts = [f"# {_TOPIC_TITLES[topic]}\n\nGenerated from the live policy tables and the "
             "scenario parameters of this run.\n"]
    parts += [_family_section(name, policy_tables.get(name)) for name in _TOPIC_TABLES[topic]]
    notes = _NOTES[topic](policy_tables)
    if notes:
        parts.append("## How it is bounded\n\n" + "".join(f"- {n}\n" for n in notes))
    parts.append("## Scenario parameters used\n")
    if not scenario_params:
        parts.append("**None given**: no scenario exercising this topic ran in this bundle.\n")
    for scenario, params in scenario_params.items():
        rows = [{"parameter": k, "value": v} for k, v in _flatten(params).items()]
        parts.append(f"### `{scenario}`\n\n" + (md_table(rows) if rows else "(no parameters)\n"))
    parts.append("## Gate criteria that judge it\n")
    judged = [(g, c) for g in (gates or {}).values() for c in g.criteria if c.report == topic]
    if gates is None:
        parts.append("**Not given**: see 13_final_evidence_bundle.json for the gates.\n")
    elif not judged:
        parts.append(f"**None**: no gate criterion has `report = \"{topic}\"`.\n")
    else:
        parts.append("".join(f"- G{g.id} {g.name}: `{c.expr}` — {c.why}\n" for g, c in judged))
    return "\n".join(parts)


# --- test outputs, load, chaos -----------------------------------------------------------


def topic_criteria(topic: str, results: Iterable[GateResult]) -> list[tuple[GateResult, CriterionResult]]:
    """Every judged criterion tagged ``report = topic``, gate by gate."""
    return [(r, c) for r in sorted(results, key=lambda r: r.gate_id)
            for c in r.criteria if c.report == topic]


def criterion_line(result: GateResult, criterion: CriterionResult) -> str:
    return (f"{'PASS' if criterion.passed else 'FAIL'}  {criterion.expr}  "
            f"measured {fmt_measured(criterion.value)}, needs {criterion.op} {fmt_number(criterion.threshold)}  "
            f"(gate G{result.gate_id})")


def test_outputs_txt(topic: str, results: Sequence[GateResult], gates: Mapping[int, Gate]) -> str:
    """02/04/06/08: every criterion tagged with ``topic``, its measurement, and the metrics of
    the gates that hold them; gates with such criteria that did not run are named."""
    judged = topic_criteria(topic, results)
    lines = [f"# {topic} test outputs (generated from the gate results of this run)", ""]
    if not judged:
        lines.append(f"NO CRITERIA: no gate criterion with report = {topic!r} was evaluated "
                     "in this run. This is not a pass.")
    failed = sum(not c.passed for _, c in judged)
    if judged:
        lines.append(f"criteria: {len(judged)}  passed: {len(judged) - failed}  failed: {failed}")
        lines += [criterion_line(r, c) for r, c in judged]
    ran = {r.gate_id for r in results}
    not_run = [g for g in gates.values() if g.id not in ran and any(c.report == topic for c in g.criteria)]
    lines += [f"NOT RUN  gate G{g.id} {g.name} has {topic} criteria but was not judged" for g in not_run]
    for result in {r.gate_id: r for r, _ in judged}.values():
        lines += ["", f"## G{result.gate_id} {result.name}: {result.verdict.value}"]
        lines += [f"scenario not run: {s}" for s in result.scenarios_missing]
        lines += [f"  {k} = {_measured_cell(v)}" for k, v in sorted(result.metrics.items())]
    return "\n".join(lines) + "\n"


_LOCUST_FIELDS = {
    "phase": ("phase", "Name", "name"),
    "requests": ("requests", "Request Count", "num_requests"),
    "failures": ("failures", "Failure Count", "num_failures"),
    "rps": ("rps", "Requests/s", "total_rps"),
    "p50_ms": ("p50_ms", "50%", "Median Response Time"),
    "p95_ms": ("p95_ms", "95%"),
    "p99_ms": ("p99_ms", "99%"),
}


def _number(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return measured(value)


def _phase_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One phase, from our keys or Locust's CSV column names; absent values stay None."""
    out: dict[str, Any] = {}
    for field, keys in _LOCUST_FIELDS.items():
        raw = next((row[k] for k in keys if k in row), None)
        out[field] = raw if field == "phase" else _number(raw)
    return out


def coverage(metrics: Mapping[str, Any]) -> dict[str, str]:
    """'covered/expected' per kind, exactly as measured ('missing' where not measured)."""
    return {kind: f"{fmt_number(measured(metrics.get(f'{kind}_covered')))}/"
                  f"{fmt_number(measured(metrics.get(f'{kind}_expected')))}" for kind in COVERAGE_KINDS}


def _criteria_json(topic: str, results: Iterable[GateResult]) -> list[dict[str, Any]]:
    return [{"gate": f"G{r.gate_id}", "expr": c.expr, "value": c.value, "passed": c.passed,
             "note": c.note} for r, c in topic_criteria(topic, results)]


def _criteria_md(topic: str, results: Iterable[GateResult]) -> str:
    rows = _criteria_json(topic, results)
    if not rows:
        return f"**No {topic} criteria were evaluated** — this is not a pass.\n"
    return md_table([{**row, "passed": "PASS" if row["passed"] else "FAIL"} for row in rows],
                    ["gate", "expr", "value", "passed"], _measured_cell)


def load_results(
    metrics: Mapping[str, Any], locust_stats: Sequence[Mapping[str, Any]],
    results: Iterable[GateResult] = (),
) -> tuple[dict[str, Any], str]:
    """09 (JSON) and 10 (markdown): per-phase requests/failures/rps/quantiles as Locust
    reported them, coverage as measured, and the ``report = "load"`` criteria."""
    results = list(results)
    phases = [_phase_row(row) for row in locust_stats]
    counted = [p for p in phases if p["phase"] != "Aggregated"]
    totals = {k: sum(p[k] or 0 for p in counted) if counted else None for k in ("requests", "failures")}
    data = {"phases": phases, "totals": totals, "coverage": coverage(metrics),
            "criteria": _criteria_json("load", results), "metrics": dict(metrics)}
    text = ["# Load test results\n"]
    text.append(md_table(phases, list(_LOCUST_FIELDS), _measured_cell) if phases else "**No Locust statistics were recorded.**\n")
    text.append(f"Total requests: {fmt_measured(totals['requests'])}, failures: {fmt_measured(totals['failures'])}\n")
    text.append("## Coverage (covered/expected)\n\n" + md_table(
        [{"kind": k, "covered": v} for k, v in data["coverage"].items()]))
    text.append("## Load criteria\n\n" + _criteria_md("load", results))
    return data, "\n".join(text)


_FAULT_TIME_KEYS = ("time_ms", "t_ms")  # the chaos checker records "t_ms" (ms since the run began)


def _fault_row(fault: Mapping[str, Any]) -> dict[str, Any]:
    """One injected fault: when (whole ms since the run began: the history clock's resolution
    for a fault is the injection call, not microseconds), what, where, and the rest as detail."""
    time_ms = next((_number(fault[k]) for k in _FAULT_TIME_KEYS if k in fault), None)
    if time_ms is None and _number(fault.get("time_s")) is not None:
        time_ms = _number(fault.get("time_s")) * 1000
    known = {*_FAULT_TIME_KEYS, "time_s", "kind", "target"}
    detail = ", ".join(f"{k}={_measured_cell(v) if isinstance(v, float) else v}"
                       for k, v in sorted(fault.items()) if k not in known)
    return {"time_ms": None if time_ms is None else round(time_ms), "kind": fault.get("kind"),
            "target": fault.get("target"), "detail": detail}


def chaos_results(
    metrics: Mapping[str, Any], faults: Sequence[Mapping[str, Any]],
    results: Iterable[GateResult] = (),
) -> tuple[dict[str, Any], str]:
    """11 (JSON) and 12 (markdown): every fault injected and the ``report = "chaos"`` criteria."""
    results = list(results)
    rows = [_fault_row(f) for f in faults]
    kinds = Counter(str(r["kind"]) for r in rows)
    data = {"faults": [dict(f) for f in faults], "fault_count": len(rows),
            "fault_kinds": dict(sorted(kinds.items())),
            "criteria": _criteria_json("chaos", results), "metrics": dict(metrics)}
    text = [f"# Chaos test results\n\nFaults injected: {len(rows)}\n"]
    text.append(md_table(rows, ["time_ms", "kind", "target", "detail"], _measured_cell) if rows
                else "**No faults were injected.**\n")
    text.append("## Chaos criteria\n\n" + _criteria_md("chaos", results))
    return data, "\n".join(text)


# --- terminal summary and JUnit ----------------------------------------------------------


def pass_fail_summary_rows(
    results: Sequence[GateResult], durations_s: Mapping[str, float]
) -> list[tuple[str, str, Verdict, float | None, str]]:
    """(gate, name, verdict, seconds spent in its scenarios, what failed) per gate."""
    rows = []
    for r in sorted(results, key=lambda r: r.gate_id):
        spent = [durations_s[s] for s in r.scenarios if s in durations_s]
        failed = [f"{c.expr} (measured {fmt_number(c.value)})" for c in r.failed]
        failed += [f"scenario not run: {s}" for s in r.scenarios_missing]
        rows.append((f"G{r.gate_id}", r.name, r.verdict, sum(spent) if spent else None, "; ".join(failed)))
    return rows


def render_summary(
    console: Console, results: Sequence[GateResult], durations_s: Mapping[str, float],
    overall: Verdict, bundle_path: Path | str,
) -> None:
    """The end-of-run table; on a non-terminal console rich prints it as plain text."""
    table = Table("gate", "name", "verdict", "scenarios s", "failed", title="ExoArmur gates")
    for gate, name, verdict, spent_s, failed in pass_fail_summary_rows(results, durations_s):
        table.add_row(gate, name, f"[{_VERDICT_STYLE[verdict]}]{verdict.value}[/]",
                      "-" if spent_s is None else f"{spent_s:.1f}", failed)
    console.print(table)
    if durations_s:
        timing = Table("scenario", "seconds", title="Scenario durations")
        for scenario, seconds in durations_s.items():
            timing.add_row(scenario, f"{seconds:.1f}")
        console.print(timing)
    console.print(f"FINAL: [{_VERDICT_STYLE[Verdict(overall)]}]{Verdict(overall).value}[/]")
    console.print(f"bundle: {bundle_path}", soft_wrap=True)


def junit_xml(results: Sequence[GateResult]) -> str:
    """One testcase per criterion; a missing measurement or an unrun scenario is a failure
    (never <skipped>), so CI cannot read an unmeasured gate as passed."""
    suites = ET.Element("testsuites", name="exoarmur")
    suite = ET.SubElement(suites, "testsuite", name="exoarmur-gates")
    tests = failures = 0
    for r in sorted(results, key=lambda r: r.gate_id):
        classname = f"G{r.gate_id}_{r.slug}"
        for c in r.criteria:
            case = ET.SubElement(suite, "testcase", classname=classname, name=c.expr)
            tests += 1
            if not c.passed:
                failures += 1
                failure = ET.SubElement(case, "failure", message=(
                    f"measured {fmt_number(c.value)}, needs {c.op} {fmt_number(c.threshold)}"))
                failure.text = f"{c.note}\nwhy: {c.why}"
        if r.scenarios_missing:
            case = ET.SubElement(suite, "testcase", classname=classname, name="scenarios ran")
            tests += 1
            failures += 1
            ET.SubElement(case, "failure", message="scenarios not run: " + ", ".join(r.scenarios_missing))
    return junit_document(suites, suite, tests, failures)


def junit_document(suites, suite, tests: int, failures: int) -> str:
    """The JUnit XML text of one suite in its <testsuites>, with its counts set on both."""
    for element in (suites, suite):
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", "0")
        element.set("skipped", "0")
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
