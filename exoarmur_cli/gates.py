"""Gate criteria as data, judged generically (k6-threshold style).

Why data: a cold reviewer reads ``gates/g{N}_{slug}.toml`` and sees exactly what a gate
demands, in words, without reading checker code; the bundle embeds the original TOML text so
``replay-verify`` re-judges with the very files the run used.

Why strict: a criterion is ``<metric> <op> <number>`` and nothing else. A missing (or NaN, or
infinite) measurement fails its criterion — a gate is green only because measured data met a
written criterion, never because nothing was measured. Verdicts compose RED > INCOMPLETE >
GREEN, as Jepsen's false > unknown > true.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from exoarmur_cli.errors import ConfigError

GATE_IDS = range(1, 9)
OPS = ("<", "<=", "==", "!=", ">=", ">")
REPORT_TOPICS = ("timeout", "retry", "backpressure", "breaker", "load", "chaos")
MISSING = "missing measurement"

_EXPR = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*$"
)
_FILE_NAME = re.compile(r"^g(?P<id>\d+)_(?P<slug>[a-z0-9_]+)\.toml$")
_GATE_KEYS = {"id", "slug", "name", "scenarios", "summary", "criteria", "declared"}
_CRITERION_KEYS = {"expr", "why", "report"}
_COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
}


class GateFileError(ConfigError):
    """A gate file is unreadable or says something that cannot be judged; names file and problem.

    Raised at load time, before any run, so a malformed criterion never silently checks nothing.
    """


class Verdict(str, Enum):
    GREEN = "GREEN"
    RED = "RED"
    INCOMPLETE = "INCOMPLETE"


_PRIORITY = {Verdict.RED: 2, Verdict.INCOMPLETE: 1, Verdict.GREEN: 0}


@dataclass(frozen=True)
class Criterion:
    """One written threshold: ``metric op threshold``, with the reason it exists."""

    metric: str
    op: str
    threshold: float
    expr: str
    why: str
    report: str | None = None


@dataclass(frozen=True)
class Gate:
    """One gate file, parsed; ``source_text`` is the verbatim TOML, kept for the bundle."""

    id: int
    slug: str
    name: str
    scenarios: tuple[str, ...]
    summary: str
    criteria: tuple[Criterion, ...]
    source_text: str
    source_name: str
    # The policy numbers this gate holds the stack to (``[declared]``): the harness's, not the
    # stack's own table. The run gives its stack these, and judges against them.
    declared: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CriterionResult:
    """A criterion judged against one measurement; ``value`` None means nothing was measured."""

    expr: str
    metric: str
    op: str
    threshold: float
    value: float | None
    passed: bool
    note: str
    why: str = ""
    report: str | None = None


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict with its evidence: every criterion's value and the metrics it saw."""

    gate_id: int
    slug: str
    name: str
    verdict: Verdict
    criteria: tuple[CriterionResult, ...]
    scenarios_missing: tuple[str, ...]
    metrics: dict[str, Any]
    scenarios: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        return tuple(c for c in self.criteria if not c.passed)


def fmt_number(value: float | None) -> str:
    """How every report prints a measurement: integers without '.0', missing as 'missing'."""
    if value is None:
        return "missing"
    if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".10g")


# --- loading ----------------------------------------------------------------------------


def parse_expr(expr: str, where: str = "<expr>") -> tuple[str, str, float]:
    """Split ``<metric> <op> <number>``; anything else is a GateFileError naming ``where``."""
    if not isinstance(expr, str):
        raise GateFileError(f"{where}: criterion expr must be a string, got {expr!r}")
    match = _EXPR.match(expr)
    if match is None:
        raise GateFileError(
            f"{where}: criterion expr {expr!r} is not '<metric> <op> <number>' "
            f"with op one of {' '.join(OPS)}"
        )
    threshold = float(match["number"])
    if not math.isfinite(threshold):
        raise GateFileError(f"{where}: criterion expr {expr!r} has a non-finite threshold")
    return match["metric"], match["op"], threshold


def _need(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise GateFileError(f"{where}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise GateFileError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    if kind is str and not value.strip():
        raise GateFileError(f"{where}: {key!r} must not be empty")
    return value


def _criterion(raw: Any, where: str) -> Criterion:
    if not isinstance(raw, dict):
        raise GateFileError(f"{where}: each [[criteria]] must be a table")
    unknown = set(raw) - _CRITERION_KEYS
    if unknown:
        raise GateFileError(f"{where}: unknown criterion keys {sorted(unknown)}")
    expr = _need(raw, "expr", str, where)
    why = _need(raw, "why", str, where)
    report = raw.get("report")
    if report is not None and report not in REPORT_TOPICS:
        raise GateFileError(f"{where}: report {report!r} is not one of {', '.join(REPORT_TOPICS)}")
    metric, op, threshold = parse_expr(expr, where)
    return Criterion(metric, op, threshold, expr.strip(), why.strip(), report)


def load_gate_text(name: str, text: str) -> Gate:
    """Parse one gate file's text; ``name`` is only used to name the file in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GateFileError(f"{name}: not valid TOML: {exc}") from exc
    unknown = set(data) - _GATE_KEYS
    if unknown:
        raise GateFileError(f"{name}: unknown keys {sorted(unknown)}")
    gate_id = _need(data, "id", int, name)
    if gate_id not in GATE_IDS:
        raise GateFileError(f"{name}: id {gate_id} is outside 1..8")
    scenarios = _need(data, "scenarios", list, name)
    if not scenarios or not all(isinstance(s, str) and s.strip() for s in scenarios):
        raise GateFileError(f"{name}: 'scenarios' must be a non-empty list of names")
    raw_criteria = _need(data, "criteria", list, name)
    if not raw_criteria:
        raise GateFileError(f"{name}: a gate with no criteria checks nothing")
    criteria = tuple(
        _criterion(raw, f"{name} criteria[{index}]") for index, raw in enumerate(raw_criteria)
    )
    exprs = [c.expr for c in criteria]
    if len(set(exprs)) != len(exprs):
        raise GateFileError(f"{name}: duplicate criterion expr")
    declared = data.get("declared", {})
    if not isinstance(declared, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in declared.values()):
        raise GateFileError(f"{name}: [declared] must map names to numbers")
    return Gate(
        declared=dict(declared),
        id=gate_id,
        slug=_need(data, "slug", str, name),
        name=_need(data, "name", str, name),
        scenarios=tuple(scenarios),
        summary=_need(data, "summary", str, name).strip(),
        criteria=criteria,
        source_text=text,
        source_name=name,
    )


def load_gates(gates_dir: Path) -> dict[int, Gate]:
    """Every ``g{N}_{slug}.toml`` in ``gates_dir``; the file name must agree with its id/slug."""
    gates_dir = Path(gates_dir)
    if not gates_dir.is_dir():
        raise GateFileError(f"{gates_dir}: gates directory not found")
    gates: dict[int, Gate] = {}
    for path in sorted(gates_dir.glob("*.toml")):
        named = _FILE_NAME.match(path.name)
        if named is None:
            raise GateFileError(f"{path.name}: gate files are named g{{N}}_{{slug}}.toml")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GateFileError(f"{path.name}: unreadable: {exc}") from exc
        gate = load_gate_text(path.name, text)
        if (int(named["id"]), named["slug"]) != (gate.id, gate.slug):
            raise GateFileError(
                f"{path.name}: file name says g{named['id']}_{named['slug']} "
                f"but the file says id={gate.id} slug={gate.slug!r}"
            )
        if gate.id in gates:
            raise GateFileError(
                f"{path.name}: id {gate.id} already used by {gates[gate.id].source_name}"
            )
        gates[gate.id] = gate
    if not gates:
        raise GateFileError(f"{gates_dir}: no gate files (g{{N}}_{{slug}}.toml)")
    return dict(sorted(gates.items()))


# --- judging ----------------------------------------------------------------------------


def measured(value: Any) -> float | None:
    """A measurement as a number: bools are 0/1; None, NaN, infinities and non-numbers are
    missing (an infinity is a broken measurement, and JSON cannot carry it to replay)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def evaluate_criterion(criterion: Criterion, metrics: Mapping[str, Any]) -> CriterionResult:
    value = measured(metrics.get(criterion.metric))
    if value is None:
        raw = metrics.get(criterion.metric)
        note = MISSING if raw is None else f"{MISSING} (got {raw!r})"
        passed = False
    else:
        passed = _COMPARE[criterion.op](value, criterion.threshold)
        verb = "meets" if passed else "violates"
        note = f"measured {fmt_number(value)} {verb} {criterion.op} {fmt_number(criterion.threshold)}"
    return CriterionResult(
        criterion.expr,
        criterion.metric,
        criterion.op,
        criterion.threshold,
        value,
        passed,
        note,
        criterion.why,
        criterion.report,
    )


def evaluate_gate(
    gate: Gate, metrics: Mapping[str, Any], scenarios_run: Iterable[str]
) -> GateResult:
    """Judge ``gate``: INCOMPLETE if a scenario of it did not run, else RED if any criterion
    fails, else GREEN. ``metrics`` is kept in the result as evidence (NaN/inf stored as None)."""
    run = set(scenarios_run)
    results = tuple(evaluate_criterion(c, metrics) for c in gate.criteria)
    missing = tuple(s for s in gate.scenarios if s not in run)
    if missing:
        verdict = Verdict.INCOMPLETE
    elif all(r.passed for r in results):
        verdict = Verdict.GREEN
    else:
        verdict = Verdict.RED
    evidence = {key: _json_value(metrics[key]) for key in sorted(metrics)}
    return GateResult(
        gate.id, gate.slug, gate.name, verdict, results, missing, evidence, gate.scenarios
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def overall(results: Iterable[GateResult | Verdict]) -> Verdict:
    """The run's verdict: RED > INCOMPLETE > GREEN; nothing judged is INCOMPLETE."""
    verdicts = [r if isinstance(r, Verdict) else r.verdict for r in results]
    if not verdicts:
        return Verdict.INCOMPLETE
    return max(verdicts, key=_PRIORITY.__getitem__)


# --- JSON form (the bundle stores it; replay reads it back) -----------------------------


def result_to_json(result: GateResult) -> dict[str, Any]:
    return {
        "gate_id": result.gate_id,
        "slug": result.slug,
        "name": result.name,
        "verdict": result.verdict.value,
        "scenarios": list(result.scenarios),
        "scenarios_missing": list(result.scenarios_missing),
        "criteria": [
            {
                "expr": c.expr,
                "metric": c.metric,
                "op": c.op,
                "threshold": c.threshold,
                "value": c.value,
                "passed": c.passed,
                "note": c.note,
                "why": c.why,
                "report": c.report,
            }
            for c in result.criteria
        ],
        "metrics": dict(result.metrics),
    }


def result_from_json(data: Mapping[str, Any]) -> GateResult:
    """Inverse of ``result_to_json``; a malformed record raises GateFileError."""
    try:
        criteria = tuple(
            CriterionResult(
                expr=c["expr"],
                metric=c["metric"],
                op=c["op"],
                threshold=float(c["threshold"]),
                value=None if c["value"] is None else float(c["value"]),
                passed=bool(c["passed"]),
                note=c["note"],
                why=c.get("why", ""),
                report=c.get("report"),
            )
            for c in data["criteria"]
        )
        return GateResult(
            gate_id=int(data["gate_id"]),
            slug=data["slug"],
            name=data["name"],
            verdict=Verdict(data["verdict"]),
            criteria=criteria,
            scenarios_missing=tuple(data["scenarios_missing"]),
            metrics=dict(data.get("metrics", {})),
            scenarios=tuple(data.get("scenarios", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GateFileError(f"gate result record is malformed: {exc!r}") from exc


def results_to_json(results: Iterable[GateResult]) -> list[dict[str, Any]]:
    return [result_to_json(r) for r in results]
