"""The example workflow cannot run here, so it is read: its commands must be the README's, and it
must keep the bundle and the JUnit file the run writes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "reality-run.yml"
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e ."


def _steps() -> list[dict]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers and "push" in triggers
    (job,) = doc["jobs"].values()
    return job["steps"]


def _readme_usage(command: str) -> str:
    """The README's synopsis of ``exoarmur <command>`` (its line and the continuation lines)."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^    exoarmur {command} .*(?:\n {{20,}}.*)*", text, re.MULTILINE)
    assert match, f"the README has no synopsis of exoarmur {command}"
    return match[0]


def test_the_workflow_installs_with_the_readme_command() -> None:
    runs = [s["run"].strip() for s in _steps() if "run" in s]
    assert runs[0] == INSTALL
    assert INSTALL in (REPO / "README.md").read_text()


def test_every_exoarmur_command_and_option_is_in_the_readme() -> None:
    calls = [shlex.split(s["run"]) for s in _steps() if "run" in s and ".venv/bin/exoarmur" in s["run"]]
    assert [c[1] for c in calls] == ["run-gates", "replay-verify"]
    for argv in calls:
        assert argv[0] == ".venv/bin/exoarmur"
        usage = _readme_usage(argv[1])
        for option in (a for a in argv[2:] if a.startswith("--")):
            assert option in usage, f"{argv[1]} {option} is not in the README's synopsis: {usage}"
    run_gates = calls[0]
    assert run_gates[run_gates.index("--profile") + 1] == "quick"


def test_the_bundle_and_the_junit_file_are_uploaded_even_when_a_gate_is_red() -> None:
    steps = _steps()
    run_gates = shlex.split(next(s["run"] for s in steps if "run-gates" in s.get("run", "")))
    out, junit = run_gates[run_gates.index("--out") + 1], run_gates[run_gates.index("--junit-xml") + 1]
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    paths = {s["with"]["path"] for s in uploads}
    assert f"{out}/reality_run_*/" in paths and junit in paths
    assert all(s.get("if") == "always()" for s in uploads)  # a red gate exits 1: keep the evidence anyway
    verify = next(s for s in steps if "replay-verify" in s.get("run", ""))
    assert verify.get("if") == "always()" and f"--out {out}" in verify["run"]
