"""Ending a run short without leaving work behind.

When a run is interrupted (Ctrl-C, SIGTERM) or crashes, scenario drivers may still have tasks
submitting intents or watching streams. They must be cancelled and awaited before the history and
the bundle are closed, or they write to a closed file and asyncio reports "Task exception was
never retrieved" on the way out.
"""

from __future__ import annotations

import asyncio

CANCEL_GRACE_S = 10.0  # how long cancelled tasks get to finish their cleanup
RECANCEL_S = 0.5  # after an interrupt, how often scenario work still running is cancelled again


class Interrupt:
    """Ctrl-C or SIGTERM during a run. The run's task is cancelled, and so, until they have ended,
    is every scenario task, again every ``RECANCEL_S``: one cancellation can be lost (Python 3.11's
    ``asyncio.wait_for`` swallows a cancellation that races its inner future's completion,
    gh-86296), and then the run went on after Ctrl-C (measured: 1 SIGINT in 5 in the e2e test).
    The driver also checks ``raise_if_set`` before each scenario, so a lost cancellation ends the
    run at the next scenario at the latest."""

    def __init__(self) -> None:
        self.is_set = False
        self.scenario_tasks: set[asyncio.Task] = set()

    def fire(self, run_task: asyncio.Task) -> None:
        self.is_set = True
        run_task.cancel()
        self._cancel_scenarios()

    def _cancel_scenarios(self) -> None:
        live = [task for task in self.scenario_tasks if not task.done()]
        for task in live:
            task.cancel()
        if live:
            asyncio.get_running_loop().call_later(RECANCEL_S, self._cancel_scenarios)

    def raise_if_set(self) -> None:
        if self.is_set:
            raise asyncio.CancelledError("interrupted")

    async def run_scenario(self, work) -> None:
        """Await ``work`` (a coroutine) as a scenario task of its own, which an interrupt keeps
        cancelling; after an interrupt, it is never started."""
        if self.is_set:
            work.close()
            self.raise_if_set()
        task = asyncio.ensure_future(work)
        self.scenario_tasks.add(task)
        try:
            await task
        finally:
            self.scenario_tasks.discard(task)
        self.raise_if_set()


INTERRUPT = Interrupt()  # one run per process


async def cancel_outstanding(grace_s: float = CANCEL_GRACE_S) -> int:
    """Cancel every task of this loop but the current one and wait (at most ``grace_s``) for them
    to end; their results and exceptions are collected, never left unretrieved. Returns how many
    were still running after the grace period."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in others:
        task.cancel()
    if not others:
        return 0
    done, pending = await asyncio.wait(others, timeout=grace_s)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: a task that failed while being cancelled is not an error of the run
    return len(pending)
