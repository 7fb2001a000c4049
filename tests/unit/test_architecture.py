"""The harness's import graph (drawn from the code by ``tools/import_graph.py``) has no cycle,
judging sits below run and verify, and nothing in verify climbs up into run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_harness_import_graph_has_no_cycle() -> None:
    tool = _tool()
    assert tool.cycles(tool.graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    tool = _tool()
    assert tool.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert tool.cycles({"a": {"b"}, "b": set()}) == []


def test_judging_is_below_run_and_verify() -> None:
    edges = _tool().graph()
    verify_modules = [m for m in edges if m == "exoarmur_cli.verify" or m.startswith("exoarmur_cli.verify.")]
    assert len(verify_modules) > 1  # verify is a package
    for module in verify_modules:
        assert "exoarmur_cli.run" not in edges[module], module
    assert "exoarmur_cli.judging" in edges["exoarmur_cli.run"]
    assert "exoarmur_cli.judging" in edges["exoarmur_cli.verify.verdicts"]
    assert not {"exoarmur_cli.run", "exoarmur_cli.verify"} & edges["exoarmur_cli.judging"]
