"""Check 3, verdicts: every gate recorded in 13 re-judged from raw/ with the gate files embedded
in the bundle, through ``judging.judge`` (the one judging path a run uses)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from exoarmur_cli import gates, recorded
from exoarmur_cli.bundle import FINAL, RAW
from exoarmur_cli.judging import judge
from exoarmur_cli.verify.checks import Check

REL_TOL = 1e-9


def embedded_gates(bundle: Path) -> dict[int, gates.Gate]:
    """The gate files the run embedded (raw/gates/*.toml), parsed as a run parses them."""
    found: dict[int, gates.Gate] = {}
    for path in sorted((bundle / RAW / "gates").glob("*.toml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise gates.GateFileError(f"{path.name}: unreadable: {type(exc).__name__}") from exc
        gate = gates.load_gate_text(path.name, text)
        if gate.id in found:
            raise gates.GateFileError(f"{path.name}: id {gate.id} already used by {found[gate.id].source_name}")
        found[gate.id] = gate
    return found


def check_verdicts(bundle: Path, final: Mapping[str, Any]) -> Check:
    try:
        recorded_results = [gates.result_from_json(g) for g in final.get("gates", [])]
        embedded = embedded_gates(bundle)
        absent = sorted({r.gate_id for r in recorded_results} - set(embedded))
        if absent:
            raise gates.GateFileError(f"gate(s) {absent} recorded in {FINAL} have no raw/gates/*.toml")
        data = recorded.load(bundle / RAW)
        results, _, _ = judge(data, embedded, [r.gate_id for r in recorded_results])
    except Exception as exc:  # unknown is never a pass: the verdicts could not be re-derived
        text = f"cannot re-derive verdicts: {type(exc).__name__}: {exc}"
        return Check("verdicts", False, text, {}, ({"kind": "error", "text": text},))
    rederived = {r.gate_id: r for r in results}
    problems: list[dict] = []
    criteria = 0
    for old in recorded_results:
        new = rederived[old.gate_id]
        criteria += len(old.criteria)
        problems += _gate_differences(old, new)
    # The table as 13 stores it beside each gate (JSON-safe, as evaluate_gate keeps it).
    safe_metrics = orjson.loads(orjson.dumps(results[0].metrics)) if results else {}
    problems += _metric_differences(recorded_results, safe_metrics)
    status = final.get("status")
    if recorded_results and status != gates.overall(results).value:
        problems.append({"kind": "status", "recorded": status, "rederived": gates.overall(results).value,
                         "text": f"status: recorded {status}, re-derived {gates.overall(results).value}"})
    counts = {"gates": len(recorded_results), "criteria": criteria, "metrics": len(safe_metrics),
              "differences": len(problems)}
    summary = (f"{len(recorded_results)} gates, {criteria} criteria and {len(safe_metrics)} metrics re-derived "
               f"from raw/ with the embedded gate files, {len(problems)} differences")
    return Check("verdicts", not problems, summary, counts, tuple(problems))


def same_value(a: Any, b: Any) -> bool:
    """Numbers equal up to a relative 1e-9; None only equals None; anything else by ``==``."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)
    return a == b


def _gate_differences(old: gates.GateResult, new: gates.GateResult) -> list[dict]:
    problems: list[dict] = []
    tag = f"G{old.gate_id}"
    if old.verdict is not new.verdict:
        problems.append({"kind": "verdict", "gate": old.gate_id, "recorded": old.verdict.value,
                         "rederived": new.verdict.value,
                         "text": f"{tag} verdict: recorded {old.verdict.value}, re-derived {new.verdict.value}"})
    if tuple(old.scenarios_missing) != tuple(new.scenarios_missing):
        problems.append({"kind": "scenarios_missing", "gate": old.gate_id, "recorded": list(old.scenarios_missing),
                         "rederived": list(new.scenarios_missing),
                         "text": f"{tag} scenarios not run: recorded {list(old.scenarios_missing)}, "
                                 f"re-derived {list(new.scenarios_missing)}"})
    for index in range(max(len(old.criteria), len(new.criteria))):
        was = old.criteria[index] if index < len(old.criteria) else None
        now = new.criteria[index] if index < len(new.criteria) else None
        if was and now and (was.expr, was.passed) == (now.expr, now.passed) and same_value(was.value, now.value):
            continue
        problems.append({
            "kind": "criterion", "gate": old.gate_id, "expr": (was or now).expr,
            "recorded": _criterion(was), "rederived": _criterion(now),
            "text": f"{tag} `{(was or now).expr}`: recorded {_criterion_text(was, (was or now).expr)}; "
                    f"re-derived {_criterion_text(now, (was or now).expr)}",
        })
    return problems


def _criterion(c: gates.CriterionResult | None) -> dict | None:
    return None if c is None else {"expr": c.expr, "value": c.value, "verdict": "pass" if c.passed else "fail"}


def _criterion_text(c: gates.CriterionResult | None, expr: str) -> str:
    if c is None:
        return "no such criterion"
    said = f"{gates.fmt_number(c.value)} ({'pass' if c.passed else 'fail'})"
    return said if c.expr == expr else f"`{c.expr}` = {said}"


def _metric_differences(recorded_results: list[gates.GateResult], metrics: dict) -> list[dict]:
    """The measured table 13 stores beside each gate must be the table re-derived from raw/."""
    problems: dict[str, dict] = {}
    for result in recorded_results:
        for name in sorted(set(result.metrics) | set(metrics)):
            was, now = result.metrics.get(name), metrics.get(name)
            if name not in problems and not same_value(was, now):
                problems[name] = {"kind": "metric", "gate": result.gate_id, "metric": name, "recorded": was,
                                  "rederived": now, "text": f"G{result.gate_id} metric {name}: recorded "
                                                            f"{was!r}, re-derived {now!r}"}
    return list(problems.values())
