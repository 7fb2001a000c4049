"""Scenarios for gate 8: a full queue refuses, and 500 peers load 1,000 nodes through Locust."""

from __future__ import annotations

import asyncio
import os
import threading

from exoarmur.contracts import ReasonCode
from exoarmur_cli.errors import ScenarioError
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
    """Locust in its own process(es), one user per peer (500), every node targeted (1,000)."""
    p = as_(ctx.params, LoadParams)
    from exoarmur_cli.load.runner import LoadPhase, run_load

    capacity = ctx.policy.rate_global_per_s
    users = len(ctx.config.peers)  # one Locust user per peer
    try:
        layout = ctx.load.for_users(users, os.cpu_count())
    except ValueError as exc:
        raise ScenarioError(str(exc), ReasonCode.CONFIG_INVALID) from None
    sustained_rate = capacity * p.sustained_fraction
    phases = [LoadPhase("sustained", sustained_s(p.sustained_s, users, sustained_rate), sustained_rate),
              LoadPhase("overload", p.overload_s, capacity * p.overload_factor)]
    ctx.observe("load_plan", capacity_per_s=capacity, users=users, locust_workers=layout.workers,
                locust_remote_workers=layout.remote_workers,
                phases=[{"name": ph.name, "duration_s": ph.duration_s, "rate_per_s": ph.rate_per_s} for ph in phases])
    stop = threading.Event()  # a thread cannot be cancelled: told to stop Locust instead
    try:
        result = await asyncio.to_thread(
            run_load, ctx.config.stack_dir, ctx.raw_dir, phases, t0_wall_ms=ctx.t0_wall_ms,
            seed=ctx.rng.randint(0, 2**31), key_prefix="load", users=users, layout=layout, stop=stop)
    except asyncio.CancelledError:
        stop.set()
        raise
    ctx.observe("load_done", exit_code=result.exit_code, duration_s=round(result.duration_s, 3),
                stats=result.stats_rows, failures=result.failures_rows)
    pairs = _accepted_load_pairs(result.history_path)
    missing = await ctx.watch.wait_for(pairs, ctx.timeout("redelivery") * 2 + 10, js=ctx.js)
    ctx.observe("settled", accepted=len(pairs), missing=len(missing))


COVERING_SENDS = 2  # a user alternates between its two nodes: both are covered after two sends


def sustained_s(planned_s: float, users: int, rate_per_s: float) -> float:
    """The sustained phase as planned, or longer when the stack has more peers than that phase
    gives two sends each (``--scale``): coverage is judged on every node, so the plan must reach
    every node. A user's first send falls within its first interval, so two sends take at most
    two intervals (``users / rate`` each)."""
    return max(planned_s, COVERING_SENDS * users / rate_per_s)


def _accepted_load_pairs(history_path) -> list[tuple[str, str]]:
    import orjson

    pairs = []
    with open(history_path, "rb") as handle:
        for line in handle:
            event = orjson.loads(line)
            if event["type"] == "ok" and event["f"] == "submit":
                pairs.append((event["value"]["tenant_id"], event["value"]["key"]))
    return pairs


