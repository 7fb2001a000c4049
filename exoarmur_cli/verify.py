"""``exoarmur replay-verify``: a cold reviewer, holding only a bundle directory, checks it.

Each check reads the bundle and returns a frozen ``Check`` (valid, counts, every difference):

1. integrity  — every file's sha256 and the root digest equal what ``13`` recorded; PASS_FAIL.txt
                carries 13's root digest and says exactly what 13's gates say; every audit
                record's own seal (sha256 of its canonical JSON) holds.
2. decisions  — every recorded decision re-derived from the recorded intent and snapshot with
                ``replay_decisions`` (the one implementation gate 3 uses).
3. verdicts   — every gate recorded in 13 re-judged from raw/ with the gate files embedded in
                the bundle, through ``run.judge`` (the one judging path a run uses).
   report     — index.html has the sha256 13 records under ``report`` (outside the root digest: the
                page is a view rebuilt by ``exoarmur report``) and shows 13's root digest, status,
                verdicts and measured values.
4. live       — optional: the recorded intents re-submitted, in record order and with the
                recorded safety state (kill switches, approvals), to a fresh embedded stack;
                outcome and reason code must match intent by intent. Only decision-determined
                paths are replayed live; the rest are counted as skipped, with why.

A path that is not a bundle raises ``BundleError``; a live stack that cannot start raises
``StackError``. Anything else the bundle holds that cannot be read is a failed check, never a
crash and never a pass.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from exoarmur.contracts import AuditRecordV1
from exoarmur_cli import gates, recorded
from exoarmur_cli.bundle import (FINAL, PASS_FAIL, RAW, BundleError, latest_bundle, pass_fail_text, read_final,
                                 verify_digests)
from exoarmur_cli.checkers.replay import replay_decisions

AUDIT_PATH = f"{RAW}/{recorded.AUDIT}"
INTENTS_PATH = f"{RAW}/{recorded.INTENTS}"
REL_TOL = 1e-9
LIVE_LIMIT = 200
SHOWN_PER_CHECK = 50  # human output; --json lists every difference
_ROOT_LINE = re.compile(r"^ROOT DIGEST: .*$", re.MULTILINE)


@dataclass(frozen=True)
class Check:
    """One check's verdict with its evidence: counts, and every difference (each has ``text``)."""

    name: str
    valid: bool
    summary: str
    counts: dict[str, Any] = field(default_factory=dict)  # numbers, or a table of numbers
    problems: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "valid": self.valid, "summary": self.summary, "counts": dict(self.counts),
                "problems": list(self.problems)}


@dataclass(frozen=True)
class Report:
    bundle: Path
    recorded_status: str
    root_digest: str
    checks: tuple[Check, ...]

    @property
    def valid(self) -> bool:
        return all(c.valid for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "recorded_status": self.recorded_status,
                "root_digest": self.root_digest, "valid": self.valid, "checks": [c.to_json() for c in self.checks]}

    def lines(self) -> list[str]:
        out = [f"bundle {self.bundle}  (recorded status {self.recorded_status}, root {self.root_digest[:16]})"]
        out += [f"{'PASS' if c.valid else 'FAIL'}  {c.name}: {c.summary}" for c in self.checks]
        for check in self.checks:
            if check.problems:
                out.append(f"{check.name} differences ({len(check.problems)}):")
                out += [f"  - {p['text']}" for p in check.problems[:SHOWN_PER_CHECK]]
                if len(check.problems) > SHOWN_PER_CHECK:
                    out.append(f"  ... {len(check.problems) - SHOWN_PER_CHECK} more (--json lists all)")
        out.append("VERIFIED: every check holds" if self.valid else "NOT VERIFIED: see the differences above")
        return out


def resolve(bundle: str | Path, out_dir: Path) -> Path:
    """``latest`` is the highest-numbered ``reality_run_NNN`` under ``out_dir``; else the path."""
    if str(bundle) == "latest":
        found = latest_bundle(out_dir)
        if found is None:
            raise BundleError(f"{out_dir}: no reality_run_NNN bundle to verify")
        return found
    return Path(bundle)


def verify(bundle: Path, *, live: bool = False, live_limit: int = LIVE_LIMIT,
           progress: Callable[[str], None] = lambda _line: None) -> Report:
    """Run every check on ``bundle``. Raises BundleError if it is not one (nothing to check)."""
    bundle = Path(bundle)
    final = read_final(bundle)
    audit_rows, audit_unreadable = read_rows(bundle / AUDIT_PATH)
    intent_rows, intents_unreadable = read_rows(bundle / INTENTS_PATH)
    checks = [
        check_integrity(bundle, final, audit_rows, audit_unreadable),
        check_decisions(audit_rows, intent_rows, intents_unreadable),
        check_verdicts(bundle, final),
        check_report(bundle, final),
    ]
    if live:
        from exoarmur_cli.verify_live import check_live

        checks.append(check_live(bundle, audit_rows, intent_rows, live_limit, progress))
    return Report(bundle, str(final.get("status")), str(final.get("root_digest")), tuple(checks))


def read_rows(path: Path) -> tuple[list[dict], list[int]]:
    """JSON rows of a jsonl file, and the (1-based) numbers of lines that are not JSON objects."""
    rows: list[dict] = []
    bad: list[int] = []
    if not path.is_file():
        return rows, bad
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad.append(number)
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad.append(number)
    return rows, bad


# --- 1. integrity ---------------------------------------------------------------------------


def check_integrity(bundle: Path, final: Mapping[str, Any], audit_rows: list[dict],
                    audit_unreadable: list[int]) -> Check:
    problems: list[dict] = []
    files = final.get("files")
    if not isinstance(files, dict):
        files = {}
        problems.append({"kind": "root_digest", "path": FINAL, "text": f"{FINAL} has no 'files' table"})
    for text in verify_digests(bundle, {**final, "files": files}):
        kind, _, path = text.partition(": ")  # "changed: p", "missing: p", "not recorded: p", or the root
        problems.append({"kind": kind if path else "root_digest", "path": path or FINAL, "text": text})
    root_ok = not any(p["kind"] == "root_digest" for p in problems)
    pass_fail = _pass_fail_problems(bundle, final)
    problems += pass_fail
    sealed_ok = 0
    for number in audit_unreadable:
        problems.append({"kind": "audit_unreadable", "path": AUDIT_PATH, "line": number,
                         "text": f"{AUDIT_PATH} line {number}: not a JSON object"})
    for row in audit_rows:
        seq = row.get("seq")  # the record's AUDIT stream sequence, as exported
        try:
            record = AuditRecordV1.model_validate(row["record"])
        except (ValidationError, KeyError, TypeError):
            problems.append({"kind": "audit_unreadable", "path": AUDIT_PATH, "seq": seq,
                             "text": f"{AUDIT_PATH} seq {seq}: not an AuditRecordV1"})
            continue
        if record.seal_is_valid():
            sealed_ok += 1
        else:
            problems.append({"kind": "seal", "path": AUDIT_PATH, "seq": seq, "audit_id": record.audit_id,
                             "text": f"{AUDIT_PATH} seq {seq} ({record.audit_id}): record_sha256 does not match "
                                     "its canonical JSON"})
    changed = Counter(p["kind"] for p in problems)
    seals_bad = changed["seal"] + changed["audit_unreadable"]
    parts = [f"{len(files)} files"]
    parts += [f"{changed[k]} {k}" for k in ("changed", "missing", "not recorded") if changed[k]]
    parts.append("root digest ok" if root_ok else "root digest MISMATCH")
    parts.append("PASS_FAIL.txt ok" if not pass_fail else "PASS_FAIL.txt DIFFERS")
    parts.append(f"{sealed_ok} audit seals ok" + (f", {seals_bad} BAD" if seals_bad else ""))
    counts = {"files": len(files), "changed": changed["changed"], "missing": changed["missing"],
              "added": changed["not recorded"], "audit_seals_ok": sealed_ok, "audit_seals_bad": seals_bad}
    return Check("integrity", not problems, ", ".join(parts), counts, tuple(problems))


def expected_pass_fail(final: Mapping[str, Any]) -> str:
    """What ``Bundle.finalize`` (or ``mark_incomplete``) writes to PASS_FAIL.txt for this 13."""
    root = str(final.get("root_digest"))
    if final.get("status") == gates.Verdict.INCOMPLETE.value and "reason" in final:
        return (f"INCOMPLETE: {final['reason']}\nEXIT CODE: {final.get('exit_code')}\n"
                f"FINAL: {gates.Verdict.INCOMPLETE.value}\nROOT DIGEST: {root}\n")
    results = [gates.result_from_json(g) for g in final.get("gates", [])]
    return pass_fail_text(results, gates.Verdict(final.get("status")), list(final.get("defects_injected", [])), root)


def _pass_fail_problems(bundle: Path, final: Mapping[str, Any]) -> list[dict]:
    try:
        text = (bundle / PASS_FAIL).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [{"kind": "pass_fail", "path": PASS_FAIL, "text": f"{PASS_FAIL} unreadable: {type(exc).__name__}"}]
    problems = []
    roots = [line.removeprefix("ROOT DIGEST: ") for line in text.splitlines() if line.startswith("ROOT DIGEST: ")]
    if roots != [final.get("root_digest")]:
        said = roots[0] if len(roots) == 1 else f"{len(roots)} root digest lines"
        problems.append({"kind": "pass_fail", "path": PASS_FAIL,
                         "text": f"{PASS_FAIL} says ROOT DIGEST {said}; {FINAL} says {final.get('root_digest')}"})
    try:
        expected = expected_pass_fail(final)
    except (gates.GateFileError, ValueError, TypeError) as exc:
        return problems + [{"kind": "pass_fail", "path": FINAL, "text": f"{FINAL} gates unreadable: {exc}"}]
    got, want = (_ROOT_LINE.sub("ROOT DIGEST: (checked above)", t) for t in (text, expected))
    if got != want:
        got, want = got.splitlines(keepends=True), want.splitlines(keepends=True)
        line = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        problems.append({"kind": "pass_fail", "path": PASS_FAIL, "line": line + 1,
                         "text": f"{PASS_FAIL} line {line + 1} is {_at(got, line)!r}; {FINAL}'s gates say "
                                 f"{_at(want, line)!r}"})
    return problems


def _at(lines: list[str], index: int) -> str:
    return lines[index] if index < len(lines) else "<end of file>"


def check_report(bundle: Path, final: Mapping[str, Any]) -> Check:
    """index.html has the sha256 13 records under 'report' and shows 13's root digest, status,
    verdicts and measured values (see html_report/_check.py for why it is outside the root)."""
    from exoarmur_cli.html_report import REPORT, report_problems

    problems = tuple({"kind": "report", "path": REPORT, "text": text} for text in report_problems(bundle, final))
    summary = (f"{REPORT} matches 13 (digest, root digest, verdicts, measured values)" if not problems
               else f"{REPORT}: {len(problems)} differences")
    return Check("report", not problems, summary, {"differences": len(problems)}, problems)


# --- 2. decision replay ---------------------------------------------------------------------


def check_decisions(audit_rows: list[dict], intent_rows: list[dict], intents_unreadable: list[int]) -> Check:
    result = replay_decisions(audit_rows, intent_rows)
    problems = [{"kind": "mismatch", **m,
                 "text": f"{m['intent']}: recorded {_pair(m['recorded'])} (decision "
                         f"{_pair(m['recorded']['decision'])}), replayed {_pair(m['replayed'])}"}
                for m in result.mismatches]
    problems += [{"kind": "intent_hash", "audit_id": a,
                  "text": f"{a}: the recorded intent's sha256 is not the record's intent_hash"}
                 for a in result.intent_hash_mismatches]
    problems += [{"kind": "missing_intent", "audit_id": a, "text": f"{a}: no recorded intent to replay it from"}
                 for a in result.missing_intents]
    problems += [{"kind": "intents_unreadable", "line": n, "text": f"{INTENTS_PATH} line {n}: not a JSON object"}
                 for n in intents_unreadable]
    counts = {"records": len(audit_rows), "replayed": result.replayed, "mismatches": len(result.mismatches),
              "intent_hash_mismatches": len(result.intent_hash_mismatches),
              "missing_intents": len(result.missing_intents), "unreadable": result.unreadable_records,
              "reasons_covered": len(result.reasons_covered)}
    summary = (f"{result.replayed} replayed, {len(result.mismatches)} mismatches, "
               f"{len(result.reasons_covered)} decision reasons")
    extra = [f"{v} {k.replace('_', ' ')}" for k, v in counts.items()
             if k in ("intent_hash_mismatches", "missing_intents", "unreadable") and v]
    return Check("decisions", not problems, ", ".join([summary, *extra]), counts, tuple(problems))


def _pair(value: Mapping[str, Any]) -> str:
    return f"{value['outcome']}/{value['reason_code']}"


# --- 3. verdict replay ----------------------------------------------------------------------


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
    from exoarmur_cli.run import judge

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
