"""What every replay-verify check returns (``Check``), the whole answer (``Report``), and the
bundle reading the checks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from exoarmur_cli import recorded
from exoarmur_cli.bundle import RAW

AUDIT_PATH = f"{RAW}/{recorded.AUDIT}"
INTENTS_PATH = f"{RAW}/{recorded.INTENTS}"
SHOWN_PER_CHECK = 50  # human output; --json lists every difference


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

