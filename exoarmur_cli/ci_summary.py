"""The run's summary for CI: markdown appended to ``$GITHUB_STEP_SUMMARY`` when it is set.

Built from the bundle's 13 alone (finished or INCOMPLETE alike): the gate table, every failed
criterion with its measured value and threshold, and the names of the bundle's files, so a
reviewer can find them in the uploaded artifact.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exoarmur_cli.bundle import FILES, PASS_FAIL, REPORT, RAW
from exoarmur_cli.display import fmt_measured
from exoarmur_cli.gates import fmt_number

ENV_VAR = "GITHUB_STEP_SUMMARY"
_ICON = {"GREEN": "🟢", "RED": "🔴", "INCOMPLETE": "🟡"}


def summary_md(final: Mapping[str, Any], bundle: Path) -> str:
    """The markdown summary of the bundle whose 13 is ``final``."""
    status = str(final.get("status"))
    lines = [f"## ExoArmur reality run: {_ICON.get(status, '')} {status}", "",
             f"Bundle `{Path(bundle).name}` · root digest `{final.get('root_digest')}`", ""]
    if final.get("reason"):
        lines += [f"**INCOMPLETE:** {final['reason']}", ""]
    defects = final.get("defects_injected") or []
    if defects:
        lines += [f"**DEFECTS INJECTED: {', '.join(defects)}** — not a clean run", ""]
    gates = sorted(final.get("gates") or [], key=lambda g: g.get("gate_id", 0))
    if gates:
        lines += ["| gate | name | verdict | criteria met |", "|---|---|---|---|"]
        for g in gates:
            met = sum(1 for c in g.get("criteria", []) if c.get("passed"))
            lines.append(f"| G{g['gate_id']} | {g['name']} | {g['verdict']} | {met} / {len(g.get('criteria', []))} |")
        lines.append("")
    failed = [f"- G{g['gate_id']} `{c['expr']}`: measured {fmt_measured(c.get('value'))}, needs {c['op']} "
              f"{fmt_number(c['threshold'])}" for g in gates for c in g.get("criteria", []) if not c.get("passed")]
    failed += [f"- G{g['gate_id']}: scenario not run: {s}" for g in gates for s in g.get("scenarios_missing", [])]
    if failed:
        lines += ["### Failed criteria", "", *failed, ""]
    names = [REPORT, PASS_FAIL, *[f for f in FILES if f != PASS_FAIL], f"{RAW}/"]
    lines += ["### Bundle files", "", " · ".join(f"`{Path(bundle).name}/{name}`" for name in names), ""]
    return "\n".join(lines)


def append_step_summary(text: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Append ``text`` to the file ``$GITHUB_STEP_SUMMARY`` names; None when it is not set."""
    target = environ.get(ENV_VAR)
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    return Path(target)
