"""Node faults on a JetStream cluster (``--nats-cluster N``), used by the persistence scenario.

One server at a time is SIGKILLed while intents keep coming, then started again on its store:
first the server leading the INTENTS stream (a new leader must be elected before the api can
accept again), then a follower (the quorum stays; nothing should be refused). What each fault
cost is measured from the outside and recorded (``node_fault``): how long until another server
was reported leading the stream, and the api's write-unavailability window (first refused
submission to the next accepted one). Whether anything acknowledged was lost is judged by gate 1
from the stream snapshots taken before and after, like every other restart.
"""

from __future__ import annotations

import asyncio
import time

from exoarmur.natsio import INTENTS_STREAM
from exoarmur_cli.client import Submitted
from exoarmur_cli.scenarios.base import Context

RECOVERY_BOUND_S = 60.0  # give up waiting for an election or an accepted submission after this
PROBE_EVERY_S = 0.1  # one submission this often while the fault lasts


async def stream_leader(ctx: Context, stream: str = INTENTS_STREAM) -> str | None:
    """The server the cluster reports leading ``stream``; None while it has none (or cannot say)."""
    try:
        info = await ctx.js.stream_info(stream)
    except Exception:  # the server asked may be the one just killed, or mid-election: ask again
        return None
    return info.cluster.leader if info.cluster else None


async def _until_new_leader(ctx: Context, old: str) -> tuple[str | None, float | None]:
    began = time.monotonic()
    while time.monotonic() - began < RECOVERY_BOUND_S:
        leader = await stream_leader(ctx)
        if leader is not None and leader != old:
            return leader, round(time.monotonic() - began, 3)
        await asyncio.sleep(0.1)
    return None, None


async def _probe_until_accepted(ctx: Context, tenants: list[str]) -> tuple[list[Submitted], dict]:
    """Submit one intent every ``PROBE_EVERY_S`` until one is accepted after a refusal (or, when
    none is refused, the first one): the write-unavailability window, seen as a client sees it."""
    subs: list[Submitted] = []
    first_refused_at: float | None = None
    began = time.monotonic()
    while time.monotonic() - began < RECOVERY_BOUND_S:
        sub = await ctx.client.submit(*ctx.body(ctx.rng.choice(tenants)))
        subs.append(sub)
        if sub.accepted:
            unavailable_s = 0.0 if first_refused_at is None else time.monotonic() - first_refused_at
            return subs, {"unavailable_s": round(unavailable_s, 3), "refused": len(subs) - 1, "recovered": True}
        if first_refused_at is None:
            first_refused_at = time.monotonic()
        await asyncio.sleep(PROBE_EVERY_S)
    return subs, {"unavailable_s": None, "refused": len(subs), "recovered": False}


async def kill_one_server(ctx: Context, processes, tenants: list[str], *, leader: bool) -> list[Submitted]:
    """SIGKILL the INTENTS leader (``leader``) or a follower, measure, start it again; returns the
    submissions made meanwhile (the caller settles the accepted ones)."""
    current = await stream_leader(ctx)
    servers = ctx.config.nats_component_names()
    if current is None:
        ctx.observe("node_fault", kind="leader" if leader else "follower", skipped="no stream leader reported")
        return []
    target = current if leader else next(name for name in servers if name != current)
    await asyncio.to_thread(processes.kill, target)
    probe = asyncio.create_task(_probe_until_accepted(ctx, tenants))
    new_leader, election_s = await _until_new_leader(ctx, current) if leader else (current, 0.0)
    subs, window = await probe
    await asyncio.to_thread(processes.start, target)
    ctx.observe("node_fault", kind="leader" if leader else "follower", stream=INTENTS_STREAM, killed=target,
                leader_before=current, leader_after=new_leader, election_s=election_s, **window)
    return subs
