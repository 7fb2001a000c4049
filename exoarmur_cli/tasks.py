"""Ending a run short without leaving work behind.

When a run is interrupted (Ctrl-C, SIGTERM) or crashes, scenario drivers may still have tasks
submitting intents or watching streams. They must be cancelled and awaited before the history and
the bundle are closed, or they write to a closed file and asyncio reports "Task exception was
never retrieved" on the way out.
"""

from __future__ import annotations

import asyncio

CANCEL_GRACE_S = 10.0  # how long cancelled tasks get to finish their cleanup


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
