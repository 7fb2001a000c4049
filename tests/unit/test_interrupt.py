"""Ctrl-C ends a run even when a scenario loses the first cancellation (``tasks.Interrupt``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from exoarmur_cli.tasks import RECANCEL_S, Interrupt


async def loses_the_first_cancellation() -> None:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        pass  # swallowed, as Python 3.11's wait_for may swallow one (gh-86296)
    await asyncio.sleep(30)


def test_a_scenario_that_swallows_one_cancellation_is_cancelled_again() -> None:
    async def run() -> float:
        interrupt = Interrupt()
        began = time.monotonic()
        asyncio.get_running_loop().call_later(0.05, interrupt.fire, asyncio.current_task())
        with pytest.raises(asyncio.CancelledError):
            await interrupt.run_scenario(loses_the_first_cancellation())
        return time.monotonic() - began

    assert asyncio.run(run()) < 0.05 + 3 * RECANCEL_S


def test_after_an_interrupt_no_further_scenario_starts() -> None:
    started = []

    async def scenario() -> None:
        started.append(True)

    async def run() -> None:
        interrupt = Interrupt()
        interrupt.is_set = True
        with pytest.raises(asyncio.CancelledError):
            await interrupt.run_scenario(scenario())

    asyncio.run(run())
    assert started == []
