"""The report check: index.html is the page 13 records, and it shows what 13 says."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exoarmur_cli.verify.checks import Check


def check_report(bundle: Path, final: Mapping[str, Any]) -> Check:
    """index.html has the sha256 13 records under 'report' and shows 13's root digest, status,
    verdicts and measured values (see html_report/_check.py for why it is outside the root)."""
    from exoarmur_cli.html_report import REPORT, report_problems

    problems = tuple({"kind": "report", "path": REPORT, "text": text} for text in report_problems(bundle, final))
    summary = (f"{REPORT} matches 13 (digest, root digest, verdicts, measured values)" if not problems
               else f"{REPORT}: {len(problems)} differences")
    return Check("report", not problems, summary, {"differences": len(problems)}, problems)
