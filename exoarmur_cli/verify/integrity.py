"""Check 1, integrity: every file's sha256 and the root digest equal what ``13`` recorded;
PASS_FAIL.txt carries 13's root digest and says exactly what 13's gates say; every audit
record's own seal (sha256 of its canonical JSON) holds."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from exoarmur.contracts import AuditRecordV1
from exoarmur_cli import gates
from exoarmur_cli.bundle import FINAL, PASS_FAIL, pass_fail_text, verify_digests
from exoarmur_cli.verify.checks import AUDIT_PATH, Check

_ROOT_LINE = re.compile(r"^ROOT DIGEST: .*$", re.MULTILINE)


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
