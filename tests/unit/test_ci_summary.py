"""$GITHUB_STEP_SUMMARY: the gate table, every failed criterion and the bundle's file names."""

from __future__ import annotations

from pathlib import Path

from exoarmur_cli.ci_summary import append_step_summary, summary_md

FINAL = {
    "status": "RED", "root_digest": "ab" * 32, "defects_injected": [],
    "gates": [
        {"gate_id": 8, "name": "Bounded load", "verdict": "RED", "scenarios_missing": [],
         "criteria": [{"expr": "overload_offered_vs_capacity >= 2", "op": ">=", "threshold": 2.0,
                       "value": 0.8522988867, "passed": False},
                      {"expr": "load_unanswered == 0", "op": "==", "threshold": 0.0, "value": 0.0, "passed": True}]},
        {"gate_id": 5, "name": "Kill switches", "verdict": "INCOMPLETE", "scenarios_missing": ["killswitch"],
         "criteria": [{"expr": "killswitch_propagation_p99_ms < 100", "op": "<", "threshold": 100.0, "value": None,
                       "passed": False}]},
    ],
}


def test_summary_has_the_gate_table_the_failures_and_the_file_names() -> None:
    text = summary_md(FINAL, Path("artifacts/reality_run_007"))
    assert text.startswith("## ExoArmur reality run: 🔴 RED")
    assert f"root digest `{'ab' * 32}`" in text
    lines = text.splitlines()
    assert lines.index("| G5 | Kill switches | INCOMPLETE | 0 / 1 |") < lines.index("| G8 | Bounded load | RED | 1 / 2 |")
    assert "- G8 `overload_offered_vs_capacity >= 2`: measured 0.8523, needs >= 2" in lines
    assert "- G5 `killswitch_propagation_p99_ms < 100`: measured missing, needs < 100" in lines
    assert "- G5: scenario not run: killswitch" in lines
    assert "load_unanswered" not in text  # passed: not listed
    for name in ("index.html", "PASS_FAIL.txt", "13_final_evidence_bundle.json", "12_chaos_test_results.md", "raw/"):
        assert f"`reality_run_007/{name}`" in text


def test_an_incomplete_run_says_why_and_defects_are_loud() -> None:
    text = summary_md({"status": "INCOMPLETE", "root_digest": "0" * 64, "reason": "interrupted (Ctrl-C)",
                       "defects_injected": ["silent_drop"], "gates": []}, Path("reality_run_001"))
    assert "**INCOMPLETE:** interrupted (Ctrl-C)" in text and "DEFECTS INJECTED: silent_drop" in text
    assert "| gate |" not in text


def test_appended_only_when_ci_names_a_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    assert append_step_summary("## one", {}) is None
    assert append_step_summary("## one", {"GITHUB_STEP_SUMMARY": str(target)}) == target
    append_step_summary("## two\n", {"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text() == "earlier step\n## one\n## two\n"
