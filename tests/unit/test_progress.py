"""run-gates' display: plain timestamped lines without a terminal, a live bar on one."""

from __future__ import annotations

import io
import time

from rich.console import Console

from exoarmur_cli.progress import open_progress

SCENARIOS = ("backpressure", "load")
EXPECTED = {"backpressure": 4.0, "load": 29.0}


def test_without_a_terminal_each_step_is_one_plain_timestamped_line() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with open_progress(console, SCENARIOS, EXPECTED, time.monotonic()) as progress:
        progress("scenario backpressure ...")
        progress("judging")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("s scenario backpressure ...") and "expected" not in out.getvalue()


def test_on_a_terminal_the_bar_says_scenario_n_of_n_and_the_expected_total() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    with open_progress(console, SCENARIOS, EXPECTED, time.monotonic()) as progress:
        progress("scenario backpressure ...")
        progress("scenario load ...")
        console.file.flush()
        time.sleep(0.3)  # a refresh of the live bar
        shown = out.getvalue()
    assert "scenario 2 of 2: load" in shown and "of ~33s expected" in shown
    assert "scenario backpressure ..." in shown  # the plain lines still scroll above the bar
