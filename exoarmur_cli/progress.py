"""What ``run-gates`` shows while it runs.

Without a terminal (CI, a pipe, a file) every step is one plain timestamped line, as always. On a
terminal the same lines scroll above a live bar: scenario n of N, time elapsed, and the run's
expected total — the sum of the ``expected_s`` each scenario file gives for the profile.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

STARTED = re.compile(r"^scenario (?P<name>\S+) \.\.\.$")  # the line drive.Driver prints as one begins


def timestamped(began: float, line: str) -> str:
    return f"[dim]{time.monotonic() - began:6.1f}s[/dim] {line}"


class _ElapsedOfExpected(ProgressColumn):
    def __init__(self, began: float) -> None:
        super().__init__()
        self.began = began

    def render(self, task: Task) -> Text:
        return Text(f"{time.monotonic() - self.began:5.0f}s of ~{task.total:.0f}s expected", style="dim")


@contextmanager
def open_progress(console: Console, scenarios: Sequence[str], expected_s: Mapping[str, float],
                  began: float) -> Iterator[Callable[[str], None]]:
    """A ``progress(line)`` callback for the run: plain lines, or lines above a live bar on a terminal."""
    if not console.is_terminal or not scenarios:
        yield lambda line: console.print(timestamped(began, line), highlight=False)
        return
    total = sum(expected_s.get(name, 0.0) for name in scenarios)
    done_before: dict[str, float] = {}  # scenario -> expected seconds of the scenarios before it
    running = 0.0
    for name in scenarios:
        done_before[name] = running
        running += expected_s.get(name, 0.0)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), _ElapsedOfExpected(began),
                   console=console, transient=True)
    task = bar.add_task("starting", total=total or 1.0)

    def progress(line: str) -> None:
        bar.console.print(timestamped(began, line), highlight=False)
        if started := STARTED.match(line):
            name = started["name"]
            if name in done_before:
                n = list(scenarios).index(name) + 1
                bar.update(task, description=f"scenario {n} of {len(scenarios)}: {name}", completed=done_before[name])
        elif line == "judging":
            bar.update(task, description="judging", completed=total)

    with bar:
        yield progress
