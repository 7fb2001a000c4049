"""How ``exoarmur bench`` drives a pipeline: the intents it submits, the client it submits them
with (closed or open loop), and the watch that times each intent's terminal record."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable

import aiohttp

from exoarmur import natsio, sizing
from exoarmur.contracts import key_digest
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.stats import quantile


def intent_bodies(config: StackConfig):
    """An endless, deterministic stream of (token, body) spread over every peer and its nodes."""
    peers = list(config.peers.values())
    nodes_by_tenant: dict[str, list[str]] = {}
    for node, tenant in config.nodes.items():
        nodes_by_tenant.setdefault(tenant, []).append(node)
    run = uuid.uuid4().hex[:8]
    for i in itertools.count():
        peer = peers[i % len(peers)]
        nodes = nodes_by_tenant[peer.tenant_id]
        key = f"bench-{run}-{i}"
        yield peer.token, key, {
            "intent_id": key, "tenant_id": peer.tenant_id, "peer_id": peer.peer_id,
            "node_id": nodes[(i // len(peers)) % len(nodes)], "action": "block_ip",
            "action_class": "A1", "idempotency_key": key, "parameters": {"ip": f"10.0.{i % 250}.{i % 200}"},
        }


class TerminalWatch:
    """Times the arrival of terminal records by subscribing to their subjects (ExoArmur's audit
    subjects, or the bare pipeline's records)."""

    def __init__(self, subjects: str = "exo.audit.>") -> None:
        self.subjects = subjects
        self.arrived: dict[str, float] = {}

    async def start(self, nc) -> None:
        async def on_msg(msg) -> None:
            self.arrived.setdefault(msg.subject, time.perf_counter())

        await nc.subscribe(self.subjects, cb=on_msg)


def audit_subject(body: dict) -> str:
    """Where ExoArmur's terminal record of the intent ``body`` lands."""
    return natsio.audit_subject(body["tenant_id"], digest(body))



def session(url: str, connections: int) -> aiohttp.ClientSession:
    # aiohttp, not httpx: at 48 concurrent requests httpx's pool capped this client near 300/s.
    return aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=connections),
                                 timeout=aiohttp.ClientTimeout(total=10))


async def submit(client: aiohttp.ClientSession, token: str, body: dict) -> int:
    """202 when accepted; minus the status (or -1 when no answer) when refused."""
    try:
        async with client.post("/v1/intents", json=body, headers={"Authorization": f"Bearer {token}"}) as response:
            await response.read()
            return 202 if response.status == 202 else -response.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return -1



def digest(body: dict) -> str:
    return key_digest(body["tenant_id"], body["idempotency_key"])


async def wait_arrivals(watch: TerminalWatch, subjects: list[str], timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline and any(s not in watch.arrived for s in subjects):
        await asyncio.sleep(0.05)


async def open_loop(url: str, bodies, rate_per_s: float, duration_s: float, on_result) -> None:
    """Submit to ``url`` at a fixed rate regardless of answers (open loop: no coordinated omission)."""
    interval = 1.0 / rate_per_s
    tasks = []
    async with session(url, 256) as client:
        began = time.perf_counter()
        for n in itertools.count():
            due = began + n * interval
            if due - began >= duration_s:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            token, key, body = next(bodies)

            async def one(token=token, body=body) -> None:
                sent = time.perf_counter()
                on_result(body, sent, await submit(client, token, body))

            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)


async def open_loop_latency(url: str, watch: TerminalWatch, bodies, rate_per_s: float, duration_s: float,
                            record_subject: Callable[[dict], str] = audit_subject) -> dict:
    """Submit to ``url`` at ``rate_per_s`` for ``duration_s`` (open loop) and time each accepted
    intent to its terminal record (at ``record_subject``): the step's counts and p50/p99 (None when
    nothing completed)."""
    sent_at: dict[str, float] = {}
    refused = 0

    def record(body, sent, status) -> None:
        nonlocal refused
        if status == 202:
            sent_at[record_subject(body)] = sent
        else:
            refused += 1

    await open_loop(url, bodies, rate_per_s, duration_s, record)
    await wait_arrivals(watch, list(sent_at), timeout_s=30)
    latencies = [(watch.arrived[s] - t) * 1000 for s, t in sent_at.items() if s in watch.arrived]
    # the checkers' quantile: one definition of p50/p99
    return {"rate_per_s": round(rate_per_s, 1), "accepted": len(sent_at), "refused": refused,
            "completed": len(latencies), "p50_ms": quantile(latencies, 0.5) if latencies else None,
            "p99_ms": quantile(latencies, 0.99) if latencies else None}


# (f) the rates tried for the held rate, as shares of (b); each for LADDER_STEP_S, open loop.
LADDER_SHARES = (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)
LADDER_STEP_S = 4.0
# Once a share fails, the gap between it and the last held rate is halved this many times: the
# low shares are far apart (0.15 -> 0.3 doubles), so without it a machine that holds 0.28 of (b)
# would be sized for 0.15 of it, and every rate-scaled scenario would run at half its speed.
LADDER_BISECTIONS = 2


def next_ladder_rate(ladder: list[dict], closed_loop_per_s: float) -> float | None:
    """The rate (f) tries next, from the steps measured so far: the next share of (b) while every
    step held; once one has not, the middle of the gap between the highest rate held and the
    lowest not held, ``LADDER_BISECTIONS`` times. None when done (or when even the first failed)."""
    rates = [step["rate_per_s"] for step in ladder]
    held = sizing.held_rate(ladder)
    if not ladder or held == max(rates):  # every step so far held: the next share, if any is left
        return round(closed_loop_per_s * LADDER_SHARES[len(ladder)], 1) if len(ladder) < len(LADDER_SHARES) else None
    bisections = len(ladder) - 1 - rates.index(max(rates))  # the shares rose until one failed, then bisected
    if held is None or bisections >= LADDER_BISECTIONS:
        return None
    return round((held + min(rate for rate in rates if rate > held)) / 2, 1)


async def admission_ladder(config, watch: TerminalWatch, bodies, closed_loop_per_s: float) -> list[dict]:
    """(f): open-loop latency at rising shares of (b) up to the first step that is not held, then
    at rates halving the gap below it (``next_ladder_rate``)."""
    ladder: list[dict] = []
    while (rate := next_ladder_rate(ladder, closed_loop_per_s)) is not None:
        ladder.append(await open_loop_latency(config.api_url, watch, bodies, rate, LADDER_STEP_S))
    return ladder
