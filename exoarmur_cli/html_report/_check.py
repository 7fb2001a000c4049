"""Is a bundle's index.html the report of this bundle? (used by ``replay-verify``).

The report is a view, rebuilt from the evidence, so it is not under the root digest (rebuilding
it must not change the digest PASS_FAIL.txt and CI logs quote). 13 records its sha256 under
``report``; this check requires that the file exists, has that digest, names 13's root digest
and status, and shows, gate by gate and criterion by criterion, the verdicts and measured values
13 records. An edited page fails on its digest; a page edited together with its digest entry
still fails as soon as it shows anything 13 does not say.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from exoarmur_cli import gates
from exoarmur_cli.display import fmt_measured
from exoarmur_cli.gates import fmt_number

REPORT = "index.html"
FORMAT = "exoarmur-report/1"


class _Facts(HTMLParser):
    """The report's machine-checkable facts: meta tags, and every element's id with its data-*."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.ids: dict[str, dict[str, str]] = {}
        self.verdict_text: dict[str, str] = {}
        self.row_cells: dict[str, list[str]] = {}  # a row's visible text, cell by cell
        self._row: str | None = None
        self._in_verdict = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta" and "name" in a:
            self.meta[a["name"]] = a.get("content", "")
        if "id" in a:
            self.ids[a["id"]] = a
        if tag == "tr":
            self._row = a.get("id")
        if tag == "td" and self._row:
            self.row_cells.setdefault(self._row, []).append("")
        if tag == "span" and "verdict" in a.get("class", "").split() and self._row:
            self._in_verdict = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._in_verdict = False
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row and self.row_cells.get(self._row):
            self.row_cells[self._row][-1] += data.strip()
        if self._in_verdict and self._row:
            self.verdict_text[self._row] = self.verdict_text.get(self._row, "") + data.strip()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report_problems(bundle: Path, final: Mapping[str, Any]) -> list[str]:
    """Every way index.html is not the report of this bundle; [] when it is."""
    entry = final.get("report")
    path = Path(bundle) / REPORT
    if not isinstance(entry, Mapping) or "sha256" not in entry:
        why = entry.get("error") if isinstance(entry, Mapping) else None
        return [f"13 records no {REPORT}" + (f" (building it failed: {why})" if why else "")
                + f": run `exoarmur report {bundle}` to build it from raw/"]
    if not path.is_file():
        return [f"missing: {REPORT} (13 records sha256 {str(entry['sha256'])[:16]}…)"]
    problems = []
    if sha256_file(path) != entry["sha256"]:
        problems.append(f"changed: {REPORT} (its sha256 is not the one 13 records under 'report')")
    facts = _Facts()
    facts.feed(path.read_text(encoding="utf-8", errors="replace"))
    problems += _shown_problems(facts, final)
    return problems


def _shown_problems(facts: _Facts, final: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, want in (("exoarmur-report", FORMAT), ("exoarmur-root-digest", final.get("root_digest")),
                       ("exoarmur-status", final.get("status"))):
        if facts.meta.get(name) != str(want):
            problems.append(f"{REPORT} says {name} {facts.meta.get(name)!r}; 13 says {want!r}")
    try:
        results = [gates.result_from_json(g) for g in final.get("gates", [])]
    except gates.GateFileError as exc:
        return problems + [f"13's gates unreadable: {exc}"]
    shown_gates = {i for i in facts.ids if i.startswith("gate-G")}
    for result in results:
        row_id = f"gate-G{result.gate_id}"
        shown_gates.discard(row_id)
        row = facts.ids.get(row_id)
        if row is None:
            problems.append(f"{REPORT} has no row for G{result.gate_id}")
            continue
        said = {row.get("data-verdict"), facts.verdict_text.get(row_id)}
        if said != {result.verdict.value}:
            problems.append(f"{REPORT} shows G{result.gate_id} as {sorted(s for s in said if s)}; "
                            f"13 says {result.verdict.value}")
        problems += _criteria_problems(facts, result)
    problems += [f"{REPORT} shows {i}, which 13 does not record" for i in sorted(shown_gates)]
    return problems


def _criteria_problems(facts: _Facts, result: gates.GateResult) -> list[str]:
    problems = []
    for n, c in enumerate(result.criteria):
        row = facts.ids.get(f"crit-G{result.gate_id}-{n}")
        want = (c.expr, "true" if c.passed else "false", fmt_measured(c.value))
        got = None if row is None else (row.get("data-expr"), row.get("data-passed"), row.get("data-measured"))
        shown = tuple(facts.row_cells.get(f"crit-G{result.gate_id}-{n}", [])[:4])
        visible = (c.expr, want[2], f"{c.op} {fmt_number(c.threshold)}", "PASS" if c.passed else "FAIL")
        if got != want:
            problems.append(f"{REPORT} G{result.gate_id} criterion {n + 1}: shows {got}; 13 says {want}")
        elif shown != visible:
            problems.append(f"{REPORT} G{result.gate_id} criterion {n + 1}: reads {shown}; 13 says {visible}")
    extra = f"crit-G{result.gate_id}-{len(result.criteria)}"
    if extra in facts.ids:
        problems.append(f"{REPORT} shows more criteria for G{result.gate_id} than 13 records")
    return problems
