"""Scenarios for gate 8: a full queue refuses, and 500 peers load 1,000 nodes through Locust."""

from __future__ import annotations

import asyncio
import threading

from exoarmur_cli.history import Tag
from exoarmur_cli.scenarios.base import Context
from exoarmur_cli.scenarios.params import BackpressureParams, LoadParams, as_


async def backpressure(ctx: Context) -> None:
    """Cells paused, intents keep coming: past the pending bound the api must refuse (QUEUE_FULL),
    never queue without limit and never drop; resumed, every accepted intent completes."""
    p = as_(ctx.params, BackpressureParams)
    processes = ctx.faults.processes("pause the cells")
    cells = processes.cells
    t = ctx.config.tenants
    for cell in cells:
        processes.pause(cell)
    try:
        rate = p.rate_per_s
        duration = ctx.policy.pending_bound * p.over_bound / rate
        subs = await ctx.submit_at_rate(lambda: ctx.body(ctx.rng.choice(t)), rate, duration, tag=Tag.BACKPRESSURE)
    finally:
        for cell in cells:
            processes.resume(cell)
    await ctx.settle(subs)


async def load(ctx: Context) -> None:
    """Locust in its own process, one user per peer (500), every node targeted (1,000)."""
    p = as_(ctx.params, LoadParams)
    from exoarmur_cli.load.runner import LoadPhase, run_load

    capacity = ctx.policy.rate_global_per_s
    phases = [LoadPhase("sustained", p.sustained_s, capacity * p.sustained_fraction),
              LoadPhase("overload", p.overload_s, capacity * p.overload_factor)]
    ctx.observe("load_plan", capacity_per_s=capacity,
                phases=[{"name": ph.name, "duration_s": ph.duration_s, "rate_per_s": ph.rate_per_s} for ph in phases])
    stop = threading.Event()  # a thread cannot be cancelled: told to stop Locust instead
    try:
        result = await asyncio.to_thread(
            run_load, ctx.config.stack_dir, ctx.raw_dir, phases, t0_wall_ms=ctx.t0_wall_ms,
            seed=ctx.rng.randint(0, 2**31), key_prefix="load", stop=stop)
    except asyncio.CancelledError:
        stop.set()
        raise
    ctx.observe("load_done", exit_code=result.exit_code, duration_s=round(result.duration_s, 3),
                stats=result.stats_rows, failures=result.failures_rows)
    pairs = _accepted_load_pairs(result.history_path)
    missing = await ctx.watch.wait_for(pairs, ctx.timeout("redelivery") * 2 + 10, js=ctx.js)
    ctx.observe("settled", accepted=len(pairs), missing=len(missing))


def _accepted_load_pairs(history_path) -> list[tuple[str, str]]:
    import orjson

    pairs = []
    with open(history_path, "rb") as handle:
        for line in handle:
            event = orjson.loads(line)
            if event["type"] == "ok" and event["f"] == "submit":
                pairs.append((event["value"]["tenant_id"], event["value"]["key"]))
    return pairs


