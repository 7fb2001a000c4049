"""Node faults on a JetStream cluster (``--nats-cluster N``), used by the persistence scenario.

One server at a time, while intents keep coming (``node_fault``, one kind per call):

- ``kill_leader``: the server leading the INTENTS stream is SIGKILLed (a new leader must be
  elected before the api can accept again), then started again on its store;
- ``kill_follower``: a server following it is SIGKILLed (the quorum stays; nothing should be
  refused), then started again;
- ``pause_leader``: the leader is SIGSTOPped, a slow node rather than a dead one, for at least
  ``pause_s`` (past the Raft election timeout) and until another server leads, then SIGCONTed;
- ``partition_leader``: the leader is cut off from the two others, a network partition: every
  route connection to or from it closed and each new one closed as it comes, through the fault
  proxies the routes pass (``faults.routes``), for at least ``partition_s`` and until the majority
  has elected another leader, then healed. The isolated server still runs and still holds its
  clients' connections (the api's, maybe): what it cannot commit it must refuse.

What each fault cost is measured from the outside and recorded (``node_fault``): how long until
a server that was not faulted reports another leader (its ``/jsz``, so a stopped server's silence
cannot stall the measurement), the api's write-unavailability window (first refused submission to
the next accepted one) and the refusals with their reasons; then, once the server is back, how
long until it is a current replica with every server agreeing on the meta leader, and the
unavailability its return caused (a resumed server campaigns at once). The next fault waits for
that, on every stream of the stack, not INTENTS alone. Every submission made meanwhile carries
``probe="node_fault"``, so the checkers find each one in the history. Whether anything
acknowledged was lost is judged by gate 1 from the stream snapshots taken before and after.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import httpx

from exoarmur.natsio import INTENTS_STREAM
from exoarmur_cli.client import Submitted
from exoarmur_cli.scenarios.base import Context
from exoarmur_cli.topology import STREAMS

RECOVERY_BOUND_S = 60.0  # give up waiting for an election, an accepted submission or a rejoin after this
PROBE_EVERY_S = 0.1  # one submission this often while the fault lasts
PROBE = "node_fault"  # the probe name of every submission made during a node fault
MONITOR_TIMEOUT_S = 0.5  # one /jsz or /connz request to a server's monitoring port
REJOIN_QUIET_S = 3.0  # after a server is back, probes go on at least this long (its campaign comes at once)


async def stream_leader(ctx: Context, stream: str = INTENTS_STREAM) -> str | None:
    """The server the cluster reports leading ``stream``; None while it has none (or cannot say)."""
    try:
        info = await ctx.js.stream_info(stream)
    except Exception:  # the server asked may be the one just killed, or mid-election: ask again
        return None
    return info.cluster.leader if info.cluster else None


async def _monitor(ctx: Context, http: httpx.AsyncClient, server: str, path: str, **params) -> dict:
    """One server's monitoring endpoint as JSON; {} when it does not answer (stopped, restarting)."""
    node = next(n for n in ctx.config.nats_cluster.nodes if n.name == server)
    try:
        answer = await http.get(f"http://{ctx.config.host}:{node.monitor_port}{path}", params=params)
        return answer.json()
    except (httpx.HTTPError, ValueError):
        return {}


async def _leader_seen(ctx: Context, http: httpx.AsyncClient, server: str) -> str | None:
    """The INTENTS leader as ``server`` sees it (its ``/jsz``), None if it names none."""
    jsz = await _monitor(ctx, http, server, "/jsz", accounts="true", streams="true")
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            if stream.get("name") == INTENTS_STREAM:
                return (stream.get("cluster") or {}).get("leader") or None
    return None


async def _api_server(ctx: Context, http: httpx.AsyncClient) -> str | None:
    """The server the api's NATS connection is on (from each server's ``/connz``), None if not found."""
    for server in ctx.config.nats_component_names():
        connz = await _monitor(ctx, http, server, "/connz", limit="1024")
        if any((c.get("name") or "").startswith("api") for c in connz.get("connections") or []):
            return server
    return None


async def _until_new_leader(ctx: Context, http: httpx.AsyncClient, old: str,
                            faulted: str) -> tuple[str | None, float | None]:
    """Seconds until a server other than ``faulted`` reports a leader other than ``old``."""
    began = time.monotonic()
    others = [name for name in ctx.config.nats_component_names() if name != faulted]
    while time.monotonic() - began < RECOVERY_BOUND_S:
        for server in others:
            leader = await _leader_seen(ctx, http, server)
            if leader is not None and leader != old:
                return leader, round(time.monotonic() - began, 3)
        await asyncio.sleep(0.1)
    return None, None


async def _probe_until_accepted(ctx: Context, tenants: list[str]) -> tuple[list[Submitted], dict]:
    """Submit one intent every ``PROBE_EVERY_S`` until one is accepted after a refusal (or, when
    none is refused, the first one): the write-unavailability window, seen as a client sees it,
    from the sending of the first refused submission (a publish timeout answers seconds after it
    was sent, a stopped leader's silence) to the answer accepting one."""
    subs: list[Submitted] = []
    first_refused_sent: float | None = None
    began = time.monotonic()
    window: dict = {"unavailable_s": None, "recovered": False}
    while time.monotonic() - began < RECOVERY_BOUND_S:
        sent = time.monotonic()
        sub = await ctx.client.submit(*ctx.body(ctx.rng.choice(tenants)), probe=PROBE)
        subs.append(sub)
        if sub.accepted:
            unavailable_s = 0.0 if first_refused_sent is None else time.monotonic() - first_refused_sent
            window = {"unavailable_s": round(unavailable_s, 3), "recovered": True}
            break
        if first_refused_sent is None:
            first_refused_sent = sent
        await asyncio.sleep(PROBE_EVERY_S)
    return subs, {**window, **_refusals(subs)}


def _refusals(subs: list[Submitted], prefix: str = "") -> dict:
    """How many of ``subs`` were refused, and with which reasons (a submission with no answer,
    status 0, carries no reason: it is counted as such)."""
    refused = [s for s in subs if not s.accepted]
    reasons = Counter(s.reason_code or f"no reason (status {s.status})" for s in refused)
    return {f"{prefix}refused": len(refused), f"{prefix}reasons": dict(reasons)}


async def _settled(ctx: Context, http: httpx.AsyncClient, server: str) -> bool:
    """Every stream of the stack (``topology.STREAMS``: INTENTS, AUDIT, the KV buckets …) has a
    leader and ``server`` is a current replica of it (or leads it), as its leader reports, and
    every server names the same JetStream meta leader (its ``/jsz``). A stream the fault left
    without quorum would otherwise carry over into the next fault."""
    metas = set()
    for name in ctx.config.nats_component_names():
        jsz = await _monitor(ctx, http, name, "/jsz")
        metas.add((jsz.get("meta_cluster") or {}).get("leader") or None)
    if len(metas) != 1 or None in metas:
        return False
    for stream in STREAMS:
        try:
            cluster = (await ctx.js.stream_info(stream)).cluster
        except Exception:  # mid-election, or the server asked is coming back: asked again
            return False
        if cluster is None or not cluster.leader or not (cluster.leader == server or any(
                r.name == server and r.current for r in cluster.replicas or [])):
            return False
    return True


async def _rejoin(ctx: Context, http: httpx.AsyncClient, server: str,
                  tenants: list[str]) -> tuple[list[Submitted], dict]:
    """After ``server`` is back (started, or SIGCONTed): probe on until it is settled in the cluster
    (``_settled``), ``REJOIN_QUIET_S`` have passed and the last probe was accepted. A server back
    from a pause has let its election timers run out: its campaign can unseat the meta leader and
    stall streams (Raft without pre-vote), a second unavailability window, measured here like the
    first (``rejoin_unavailable_s``: the longest run from a refused submission's sending to the
    next acceptance; None if none was accepted at the end)."""
    began = time.monotonic()
    subs: list[Submitted] = []
    rejoined_s: float | None = None
    refused_since: float | None = None
    longest = 0.0
    while time.monotonic() - began < RECOVERY_BOUND_S:
        sent = time.monotonic()
        sub = await ctx.client.submit(*ctx.body(ctx.rng.choice(tenants)), probe=PROBE)
        subs.append(sub)
        if not sub.accepted:
            refused_since = sent if refused_since is None else refused_since
        elif refused_since is not None:
            longest, refused_since = max(longest, time.monotonic() - refused_since), None
        if rejoined_s is None and await _settled(ctx, http, server):
            rejoined_s = round(time.monotonic() - began, 3)
        if rejoined_s is not None and sub.accepted and time.monotonic() - began >= REJOIN_QUIET_S:
            break
        await asyncio.sleep(PROBE_EVERY_S)
    accepted_at_end = bool(subs) and subs[-1].accepted
    return subs, {"rejoined_s": rejoined_s, "rejoin_unavailable_s": round(longest, 3) if accepted_at_end else None,
                  **_refusals(subs, "rejoin_")}


async def _kill(ctx: Context, http: httpx.AsyncClient, processes, target: str, leader: str, tenants: list[str],
                *, elects: bool) -> tuple[list[Submitted], dict]:
    """SIGKILL ``target``, measure while probing, start it again on its store whatever happens."""
    probe: asyncio.Task | None = None
    try:
        await asyncio.to_thread(processes.kill, target)
        probe = asyncio.create_task(_probe_until_accepted(ctx, tenants))
        new_leader, election_s = await _until_new_leader(ctx, http, leader, target) if elects else (None, None)
        subs, window = await probe
    except BaseException:
        if probe is not None:
            probe.cancel()
        raise
    finally:
        await asyncio.to_thread(processes.start, target)
    return subs, {"leader_after": new_leader if elects else await stream_leader(ctx),
                  "election_s": election_s, **window}


async def _held(ctx: Context, http: httpx.AsyncClient, target: str, tenants: list[str], hold_s: float,
                apply: Callable[[], object], undo: Callable[[], object]) -> tuple[list[Submitted], dict, float, object]:
    """Apply a fault to ``target`` (the leader) for at least ``hold_s`` and until another server
    leads; undo it whatever happens (error, cancellation). (probes, window, seconds held, what
    ``undo`` returned)."""
    probe: asyncio.Task | None = None
    began = time.monotonic()
    try:
        apply()
        probe = asyncio.create_task(_probe_until_accepted(ctx, tenants))
        new_leader, election_s = await _until_new_leader(ctx, http, target, target)
        await asyncio.sleep(max(0.0, hold_s - (time.monotonic() - began)))
    except BaseException:
        if probe is not None:
            probe.cancel()
        raise
    finally:
        undone = undo()  # synchronous: nothing can skip it
    held_s = round(time.monotonic() - began, 3)
    subs, window = await probe
    return subs, {"leader_after": new_leader, "election_s": election_s, **window}, held_s, undone


async def _pause(ctx: Context, http: httpx.AsyncClient, processes, target: str, tenants: list[str],
                 pause_s: float) -> tuple[list[Submitted], dict]:
    """SIGSTOP ``target`` (the leader) for at least ``pause_s`` and until another server leads."""
    subs, measured, paused_s, _ = await _held(ctx, http, target, tenants, pause_s,
                                              lambda: processes.pause(target), lambda: processes.resume(target))
    return subs, {**measured, "paused_s": paused_s}


async def _partition(ctx: Context, http: httpx.AsyncClient, routes, target: str, tenants: list[str],
                     partition_s: float) -> tuple[list[Submitted], dict]:
    """Cut ``target`` (the leader) off from every other server for at least ``partition_s`` and
    until the majority reports another leader."""
    before = routes.proxies.stats()
    subs, measured, partitioned_s, hops = await _held(ctx, http, target, tenants, partition_s,
                                                      lambda: routes.isolate(target), lambda: routes.heal(target))
    after = routes.proxies.stats()
    # Route connections (re)dialled through the cut hops and closed at once: the cut held both ways.
    closed = {hop: after[hop]["refused"] - before[hop]["refused"] for hop in hops}
    return subs, {**measured, "partitioned_s": partitioned_s, "route_dials_closed": closed}


async def node_fault(ctx: Context, processes, tenants: list[str], kind: str, *, cycle: int,
                     pause_s: float, partition_s: float) -> list[Submitted]:
    """Apply one node fault (``kill_leader``, ``kill_follower``, ``pause_leader`` or
    ``partition_leader``), measure it, bring the server back (or heal its routes) and wait until it
    is a current replica; returns the submissions made meanwhile (the caller settles the accepted ones)."""
    current = await stream_leader(ctx)
    if current is None:
        ctx.observe("node_fault", kind=kind, cycle=cycle, skipped="no stream leader reported")
        return []
    target = next(name for name in ctx.config.nats_component_names() if name != current) \
        if kind == "kill_follower" else current
    async with httpx.AsyncClient(timeout=MONITOR_TIMEOUT_S) as http:
        api_server = await _api_server(ctx, http)
        if kind == "pause_leader":
            subs, found = await _pause(ctx, http, processes, target, tenants, pause_s)
        elif kind == "partition_leader":
            subs, found = await _partition(ctx, http, ctx.faults.routes(), target, tenants, partition_s)
        else:
            subs, found = await _kill(ctx, http, processes, target, current, tenants, elects=kind == "kill_leader")
        after, rejoin = await _rejoin(ctx, http, target, tenants)
    ctx.observe("node_fault", kind=kind, cycle=cycle, stream=INTENTS_STREAM, target=target, leader_before=current,
                api_server=api_server, **found, **rejoin)
    return subs + after
