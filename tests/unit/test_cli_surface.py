"""The command line's surface: every option explains itself, --version, --profile's choices, and a
crash of the harness itself (exit 3, INCOMPLETE bundle, one sentence, traceback kept in raw/)."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from exoarmur_cli import main as cli
from exoarmur_cli.bundle import FINAL, PASS_FAIL


def commands(command, path: str = "exoarmur"):
    """Every command under ``command`` (typer builds on its own copy of click: walked by duck type)."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, f"{path} {name}")


def options(command):
    return [param for param in command.params if param.param_type_name == "option"]


def test_every_option_of_every_command_has_help_text() -> None:
    tree = typer.main.get_command(cli.app)
    found = [(path, param.opts) for path, command in commands(tree) for param in options(command)]
    assert {"exoarmur run-gates", "exoarmur stack up", "exoarmur self-test"} <= {path for path, _ in found}
    bare = [(path, param.opts) for path, command in commands(tree) for param in options(command)
            if not (param.help or "").strip()]
    assert bare == []


def test_version_prints_the_installed_version() -> None:
    done = CliRunner().invoke(cli.app, ["--version"])
    assert done.exit_code == 0 and done.stdout.strip() == f"exoarmur {version('exoarmur')}"


def test_profile_offers_its_choices_in_help() -> None:
    done = CliRunner().invoke(cli.app, ["run-gates", "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0 and "[quick|full]" in done.stdout


def test_a_harness_crash_exits_3_with_one_sentence_and_an_incomplete_bundle(tmp_path: Path, monkeypatch) -> None:
    from exoarmur_cli.run import Run

    async def crash(self):
        raise RuntimeError("a bug in the harness")

    monkeypatch.setattr(Run, "execute", crash)  # after the bundle exists: Run() created it
    out = tmp_path / "out"
    done = CliRunner().invoke(cli.app, ["run-gates", "--no-measure-capacity", "--gate", "4", "--profile", "quick",
                                        "--out", str(out)], env={"COLUMNS": "400"})
    assert done.exit_code == cli.EXIT_STACK, done.output
    assert "Traceback" not in done.output
    [said] = [line for line in done.output.splitlines() if line.startswith("error ")]
    assert said.startswith("error INTERNAL_ERROR: the harness itself crashed (RuntimeError: a bug in the harness)")
    bundle = out / "reality_run_001"
    assert (bundle / PASS_FAIL).read_text().startswith("INCOMPLETE: harness crashed: RuntimeError")
    final = orjson.loads((bundle / FINAL).read_bytes())
    assert final["status"] == "INCOMPLETE" and final["exit_code"] == cli.EXIT_STACK
    kept = (bundle / "raw" / cli.HARNESS_CRASH).read_text()
    assert "Traceback" in kept and "a bug in the harness" in kept
    assert f"raw/{cli.HARNESS_CRASH}" in final["files"]  # hashed with the rest of the evidence
