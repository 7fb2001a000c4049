"""Scenarios for gate 7: the effector hangs, slows, errs and goes down; then combined chaos."""

from __future__ import annotations

import asyncio
import time

from exoarmur.contracts import Outcome, ReasonCode
from exoarmur_cli.faults import Toxics
from exoarmur_cli.history import EXECUTED_OK, Expect, Tag
from exoarmur_cli.scenarios.base import Context
from exoarmur_cli.scenarios.params import BreakerParams, ChaosParams, RetryParams, TimeoutParams, as_


async def timeout(ctx: Context) -> None:
    p = as_(ctx.params, TimeoutParams)
    t = ctx.config.tenants
    # Start with closed breakers: one left open by the load before (a cluster's tenancy flood
    # opened them) refuses the hung calls at once, and no deadline is ever seen ending one.
    await ctx.breaker_recovered()
    await ctx.faults.effector.set(hang=True)
    # The first alone: its attempts (fewer than the breaker's min_calls) all time out, so at least
    # one record says TIMEOUT_*. Hung together, the others may open a breaker first, and every one
    # of them end BREAKER_OPEN (the full profile's five did, in 2 of 12 runs).
    hung = await ctx.submit_all([ctx.body(t[1])], tag=Tag.HANG)
    await ctx.settle(hung)
    hung += await ctx.submit_all([ctx.body(t[1]) for _ in range(p.hang_intents - 1)], tag=Tag.HANG)
    await ctx.settle(hung)
    await ctx.faults.effector.set(latency_ms=p.slow_latency_ms, jitter_ms=p.slow_jitter_ms,
                                  seed=ctx.rng.randint(0, 2**31))
    await ctx.breaker_recovered()
    slow = await ctx.submit_all([ctx.body(t[2]) for _ in range(p.slow_intents)], tag=EXECUTED_OK)
    await ctx.settle(slow)
    # Refused outright (422): a wrong request stays wrong, so one call each, and FAILED.
    await ctx.faults.effector.set(reject_rate=1.0)
    rejected = await ctx.submit_all([ctx.body(t[2]) for _ in range(p.rejected_intents)],
                                    tag=Expect(Outcome.FAILED, ReasonCode.EFFECTOR_ERROR))
    await ctx.settle(rejected)
    # Slower than most calls' deadlines: the effector must refuse each call whose deadline passed
    # before it could write the effect (the fence that makes "not applied" final), whenever it
    # checked the deadline first. The outcomes vary (a call inside its deadline executes).
    await ctx.faults.effector.clear()
    await ctx.breaker_recovered()
    await ctx.faults.effector.set(latency_ms=p.late_latency_ms, jitter_ms=p.late_jitter_ms,
                                  seed=ctx.rng.randint(0, 2**31))
    late = await ctx.submit_all([ctx.body(t[2]) for _ in range(p.late_intents)], tag=Tag.LATE_EFFECTOR)
    # Long enough for their first calls and retries to meet it; then the effector answers at once,
    # so the cells' "was it applied?" reads settle the intents instead of timing out themselves.
    await asyncio.sleep(p.late_hold_s)
    await ctx.faults.effector.clear()
    await ctx.settle(late)


async def retry(ctx: Context) -> None:
    p = as_(ctx.params, RetryParams)
    t = ctx.config.tenants
    await ctx.breaker_recovered()  # start with closed breakers, or open ones would mask retries
    # A third of the calls fail, and a breaker opens at half of at least five calls in its window:
    # early in a window, a run of failures can open it by chance. That is the stack doing its job,
    # but an intent it refuses unattempted shows no retry, so it is replaced, in a new round once
    # the breakers have closed, until the plan's number of intents have reached the effector.
    reached = 0
    for round_no in range(1, p.max_rounds + 1):
        await ctx.faults.effector.set(error_rate=p.error_rate,
                                      lose_response_rate=p.lose_response_rate,
                                      seed=ctx.rng.randint(0, 2**31))
        subs = await ctx.submit_all(
            [ctx.body(t[ctx.rng.randrange(len(t))]) for _ in range(p.intents - reached)],
            concurrency=p.concurrency, tag=Tag.FLAKY)
        await ctx.settle(subs)
        await ctx.faults.effector.clear()
        refused = sum(1 for s in subs if s.accepted and _refused_unattempted(ctx, s))
        at_door = sum(1 for s in subs if not s.accepted)  # never reached a cell either
        reached += len(subs) - refused - at_door
        ctx.observe("retry_round", round=round_no, submitted=len(subs), refused_breaker_open=refused,
                    refused_at_door=at_door)
        await ctx.breaker_recovered()
        if reached >= p.intents:
            break


def _refused_unattempted(ctx: Context, sub) -> bool:
    record = ctx.watch.record(sub.tenant_id, sub.key) or {}
    return record.get("reason_code") == "BREAKER_OPEN" and record.get("attempts") == 0


async def breaker(ctx: Context) -> None:
    p = as_(ctx.params, BreakerParams)
    t = ctx.config.tenants
    # Successes for longer than the declared window first: at the trip, a breaker whose window is
    # longer than declared still counts the oldest of them, which the wire shows outside the window.
    history_s = ctx.policy.breaker_window_s + p.history_beyond_window_s
    ctx.observe("breaker_history", duration_s=history_s, rate_per_s=p.history_rate_per_s)
    history = await ctx.submit_at_rate(lambda: ctx.body(t[3]), p.history_rate_per_s, history_s, tag=EXECUTED_OK)
    await ctx.settle(history)
    await ctx.faults.effector.set(down=True)
    down = []

    async def one() -> None:  # one at a time: each cell's breaker sees each failure
        peer, body = ctx.body(t[3])
        sub = await ctx.client.submit(peer, body, tag=Tag.EFFECTOR_DOWN)
        down.append(sub)
        await ctx.settle([sub], timeout_s=8)

    # Failures until every cell's breaker has opened (its window may hold earlier successes)...
    for _ in range(p.max_intents_to_open):
        states = await ctx.breaker_states()
        if states and all(state == "OPEN" for state in states.values()):
            break
        await one()
    ctx.observe("breakers_open", states=await ctx.breaker_states())
    # ...then a few more while open: these must fail fast, without calling the effector.
    for _ in range(p.intents_while_open):
        await one()
    await ctx.faults.effector.clear()
    ctx.nemesis("effector_recovered")
    await asyncio.sleep(ctx.policy.breaker_open_s)
    recovered = await ctx.breaker_recovered(t[3], timeout_s=15)
    ctx.observe("breaker_recovery", all_closed=recovered)
    after = await ctx.submit_all([ctx.body(t[3]) for _ in range(p.intents_after)],
                                 tag=EXECUTED_OK)
    await ctx.settle(after)


async def chaos(ctx: Context) -> None:
    """Seeded, combined: SIGKILL cells, TCP latency and resets to the effector, duplicate
    submissions, a paused (slow) consumer — while a steady flow of intents runs."""
    p = as_(ctx.params, ChaosParams)
    processes = ctx.faults.processes("kill and pause cells")
    link = ctx.faults.effector_link()

    t = ctx.config.tenants
    duration = p.duration_s
    resubmit: list[tuple[str, dict]] = []

    def make() -> tuple[str, dict]:
        if resubmit and ctx.rng.random() < p.duplicate_ratio:
            return resubmit[ctx.rng.randrange(len(resubmit))]  # the same body again: one intent
        item = ctx.body(ctx.rng.choice(t))
        resubmit.append(item)
        return item

    flow = asyncio.create_task(ctx.submit_at_rate(make, p.rate_per_s, duration, tag=Tag.CHAOS))
    cells = processes.cells
    began = time.monotonic()
    kinds = ["kill_cell", "latency", "reset_peer", "pause_cell"]
    step = 0
    ctx.rng.shuffle(kinds)
    while time.monotonic() - began < duration - 1.0 or step < len(kinds):  # every kind at least once
        kind = kinds[step] if step < len(kinds) else ctx.rng.choice(kinds)
        step += 1
        hold = ctx.rng.uniform(0.5, 1.2)
        target = ctx.rng.choice(cells)
        if kind == "kill_cell":
            await asyncio.to_thread(processes.kill, target)
            await asyncio.sleep(hold)
            await asyncio.to_thread(processes.start, target)
        elif kind == "pause_cell":
            processes.pause(target)
            await asyncio.sleep(hold)
            processes.resume(target)
        else:
            link.set(Toxics(latency_ms=p.latency_ms, jitter_ms=p.latency_ms / 2)
                     if kind == "latency" else Toxics(reset_peer_rate=p.reset_rate))
            await asyncio.sleep(hold)
            link.clear()
        await asyncio.sleep(ctx.rng.uniform(0.1, 0.4))
    submitted = await flow
    await ctx.settle(submitted)
