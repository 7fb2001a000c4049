"""What every ``exoarmur`` command shares: the exit codes, the error console, and how a known
error becomes one line with its reason code and an exit code."""

from __future__ import annotations

import signal
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from exoarmur.contracts import ReasonCode
from exoarmur.errors import ExoError
from exoarmur.stackconfig import DEFAULT_CELLS
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


def measured_capacity(nats_cluster: int, *, cells: int = DEFAULT_CELLS, scale: int = 1) -> Path | None:
    """This machine's measured capacity file for a stack of that shape (kept, or measured now), or
    None when even the lowest rate tried was not held: that is said, and the caller keeps the
    gates' declared numbers. Ctrl-C or SIGTERM while measuring stops the probe's
    stack and exits 130; a known error exits with its code."""
    from exoarmur import sizing
    from exoarmur_cli.capacity_probe import measured_capacity_file

    def interrupt(_sig, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        path = measured_capacity_file(nats_cluster, lambda line: console.print(line, soft_wrap=True),
                                      cells=cells, scale=scale)
    except KNOWN_ERRORS as exc:
        fail(exc, exit_code_for(exc))
    except KeyboardInterrupt:  # the probe's stack is stopped and removed as asyncio.run unwinds
        console.print("interrupted while measuring this machine's capacity: nothing started")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        sizing.held_from_file(path)
    except ValueError as exc:
        console.print(f"[yellow]warning[/yellow] the measurement sizes nothing ({escape(str(exc))}): "
                      "the gates' declared numbers apply", soft_wrap=True)
        return None
    return path


def kept_as_declared_said(kept: list[str]) -> str:
    """The admission numbers the sizing rule put above the gates' declared ones (so kept as declared)."""
    return f" ({', '.join(kept)} as the gates declare: the rule sized them higher)" if kept else ""
