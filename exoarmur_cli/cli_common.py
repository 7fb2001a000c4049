"""What every ``exoarmur`` command shares: the exit codes, the error console, and how a known
error becomes one line with its reason code and an exit code."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from exoarmur.contracts import ReasonCode
from exoarmur.errors import ExoError
from exoarmur_cli import definitions
from exoarmur_cli.errors import FaultError, HarnessError, ScenarioError, StackError

EXIT_OK, EXIT_RED, EXIT_USAGE, EXIT_STACK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_STACK_DIR = Path(".exoarmur/stack")
PROFILE_METAVAR = "[" + "|".join(definitions.PROFILES) + "]"
GATES_DIR_HELP = "read the gate files (g{N}_{slug}.toml) from this folder instead of the shipped ones"
SCENARIOS_DIR_HELP = "read the scenario files ({name}.toml) from this folder instead of the shipped ones"
console = Console(stderr=True)


# Errors the CLI answers with a reason code and an exit code: the harness's own and the stack's.
KNOWN_ERRORS = (HarnessError, ExoError)


def fail(exc: HarnessError | ExoError, code: int) -> None:
    console.print(f"[red]error[/red] {exc.reason_code.value}: {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(code)


def usage_error(message: str) -> None:
    """A usage or config mistake: one line with its reason code, exit 2, nothing created."""
    console.print(f"[red]error[/red] CONFIG_INVALID: {escape(message)}", soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def exit_code_for(exc: HarnessError | ExoError) -> int:
    """3 when the stack (or a fault in it) is unavailable, else 2: a usage, config or evidence error."""
    unavailable = isinstance(exc, (StackError, FaultError, ScenarioError))
    return EXIT_STACK if unavailable or exc.reason_code is ReasonCode.STACK_UNAVAILABLE else EXIT_USAGE
