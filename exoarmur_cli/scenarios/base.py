"""What every scenario driver gets, and the small helpers they share.

A driver is ``async def drive(ctx: Context) -> None``: it runs workload and faults against
the live stack and records everything in the history. It judges nothing: checkers do that
later, from the recorded data alone.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from exoarmur import natsio
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.client import AuditWatch, StackClient, Submitted, intent_body
from exoarmur_cli.errors import ScenarioNotRun
from exoarmur_cli.faults import Faults, nemesis
from exoarmur_cli.history import INFO, Expect, History, Tag, wall_ms
from exoarmur_cli.load.runner import LoadLayout
from exoarmur_cli.rundata import Policy
from exoarmur_cli.scenarios.params import ScenarioParams
from exoarmur_cli.stacks import Stack

__all__ = ["Context", "ScenarioNotRun"]


class TenantBucket:
    """The client's copy of a tenant's token bucket, kept a little under the api's (``SHARE`` of
    its rate and burst): the two start at different moments, and the api's must never be the
    one that runs dry. ``take`` books one token and says how long to wait for it."""

    SHARE = 0.8

    def __init__(self, rate_per_s: float | None, burst: float | None) -> None:
        self.rate = rate_per_s * self.SHARE if rate_per_s else None  # None: nothing to pace by
        self.burst = max(1.0, (burst or 1) * self.SHARE)
        self.tokens, self.at = self.burst, None

    def take(self, now: float) -> float:
        if self.rate is None:
            return 0.0
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1
        return max(0.0, -self.tokens / self.rate)


def drained(info: ConsumerInfo, replicated: bool, last_seq: int) -> bool:
    """The cells' consumer has nothing pending and nothing delivered unacked (a nak'd intent,
    waiting for its approval or its redelivery, counts as unacked). On a cluster (``replicated``)
    its acks must also reach ``last_seq``: a member still setting up its copy of the consumer
    answers with every count at zero, and a leader elected a moment ago may not have caught up
    with the stream (a single server answers only once it has recovered)."""
    if info.num_pending is None or info.num_ack_pending is None or info.num_pending + info.num_ack_pending:
        return False
    return not replicated or (info.ack_floor is not None and info.ack_floor.stream_seq >= last_seq)


@dataclass
class Context:
    name: str
    config: StackConfig
    client: StackClient
    history: History
    watch: AuditWatch
    nc: NATS
    js: JetStreamContext
    rng: random.Random  # drawn from the run's seed
    params: ScenarioParams  # the driver narrows it to its own type (``params.as_``)
    raw_dir: Path
    stack: Stack
    faults: Faults
    policy: Policy
    t0_wall_ms: int  # the run's wall-clock start
    nats_url: str = ""  # where the harness reaches NATS (other identities connect there too)
    load: LoadLayout = LoadLayout()  # where Locust's master and workers run
    _serial: int = 0
    _buckets: dict[str, TenantBucket] = field(default_factory=dict)

    # --- identities ------------------------------------------------------------------------

    def key(self) -> str:
        self._serial += 1
        return f"{self.name}-{self._serial:05d}"

    def peers_of(self, tenant_id: str) -> list[str]:
        return [p.peer_id for p in self.config.peers.values() if p.tenant_id == tenant_id]

    def nodes_of(self, tenant_id: str) -> list[str]:
        return [n for n, t in self.config.nodes.items() if t == tenant_id]

    def body(self, tenant_id: str, *, action_class: str = "A1", n: int | None = None) -> tuple[str, dict]:
        """A fresh intent for a peer and node of ``tenant_id`` (chosen by the seeded RNG)."""
        peer = self.rng.choice(self.peers_of(tenant_id))
        node = self.rng.choice(self.nodes_of(tenant_id))
        return peer, intent_body(self.config, peer, node, self.key(), action_class=action_class)

    # --- faults and observations -----------------------------------------------------------

    def nemesis(self, f: str, **value: Any) -> None:
        """A fault the scenario applies itself (the ``faults`` it holds record their own)."""
        nemesis.record(self.history, f, **value)

    def observe(self, f: str, **value: Any) -> None:
        self.history.append(INFO, f, "observer", {"wall_ms": wall_ms(), **value})

    def require_local(self, what: str) -> None:
        if self.stack.external:
            raise ScenarioNotRun(f"needs process control to {what}; an external stack gives none")

    @property
    def replicated(self) -> bool:
        """The stack's streams have replicas (a cluster): only a stream's leader answers for its latest."""
        return self.config.nats_replicas > 1

    def timeout(self, name: str) -> float:
        return self.policy.timeout_s(name)

    # --- workload --------------------------------------------------------------------------

    async def within_tenant_rate(self, tenant_id: str) -> None:
        """Wait, if need be, until ``tenant_id``'s admission (the policy's rate and burst) would take
        one more intent. For scenarios whose criteria expect every intent admitted: at the gate
        files' numbers their sends fit in the burst and this never waits; under an admission sized
        from a measured capacity (--capacity-from) they would otherwise be refused as rate-limited."""
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant_id] = TenantBucket(self.policy.rate_tenant_per_s,
                                                             self.policy.rate_tenant_burst)
        if (wait_s := bucket.take(time.monotonic())) > 0:  # no wait, no yield: the schedule stays as it was
            await asyncio.sleep(wait_s)

    async def submit_all(self, items: list[tuple[str, dict]], concurrency: int = 16,
                         tag: Tag | Expect = Tag.NONE) -> list[Submitted]:
        """Every item, ``concurrency`` at a time, each tenant's within its admission
        (``within_tenant_rate``): each of these batches expects its intents admitted."""
        sem = asyncio.Semaphore(concurrency)

        async def one(peer: str, body: dict) -> Submitted:
            if (tenant := body.get("tenant_id")) is not None:
                await self.within_tenant_rate(tenant)
            async with sem:
                return await self.client.submit(peer, body, tag=tag)

        return list(await asyncio.gather(*(one(p, b) for p, b in items)))

    async def submit_at_rate(self, make, rate_per_s: float, duration_s: float,
                             tag: Tag | Expect = Tag.NONE, until: asyncio.Event | None = None) -> list[Submitted]:
        """Open loop: one submission every 1/rate seconds, whatever the answers, for ``duration_s``
        or until ``until`` is set."""
        tasks = []
        began = time.monotonic()
        n = 0
        try:
            while time.monotonic() - began < duration_s and not (until is not None and until.is_set()):
                peer, body = make()
                tasks.append(asyncio.create_task(self.client.submit(peer, body, tag=tag)))
                n += 1
                delay = began + n / rate_per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            return list(await asyncio.gather(*tasks))
        except BaseException:  # cancelled (interrupt, or its scenario ended): its sends end with it
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def settle(self, submitted: list[Submitted], timeout_s: float | None = None,
                     stored: bool = False) -> list[tuple[str, str]]:
        """Wait for a terminal record of every accepted submission; returns the ones missing.
        ``stored``: a record counts only once the AUDIT stream holds it (after power losses, a
        record seen on the wire may have died with its server before it was stored)."""
        pairs = sorted({(s.tenant_id, s.key) for s in submitted if s.accepted})
        # Long enough for one redelivery after a crash (ack_wait) plus its processing.
        limit = timeout_s if timeout_s is not None else self.timeout("redelivery") * 1.5 + 5
        deadline = time.monotonic() + limit
        last_seq = max((s.stream_seq for s in submitted if s.accepted), default=0)
        missing, cut_short = await self._await_records(pairs, deadline, last_seq)
        unstored = 0
        while stored and (dropped := await self.watch.forget_unstored(self.js, pairs, self.replicated)):
            unstored += dropped  # wait again for those: their redelivery records them for good
            missing, cut_short = await self._await_records(pairs, deadline, last_seq)
            if time.monotonic() >= deadline:
                break
        self.observe("settled", accepted=len(pairs), missing=len(missing), seen_but_unstored=unstored,
                     **({"stopped_waiting": "nothing left to deliver"} if cut_short else {}))
        return missing

    async def _await_records(self, pairs: list[tuple[str, str]], deadline: float,
                             last_seq: int) -> tuple[list[tuple[str, str]], bool]:
        """The records still missing at ``deadline``, or sooner once none can still come: only a
        cell handling a delivery of its intent writes a terminal record, so once the cells'
        consumer has held nothing undelivered and nothing unacked for a record's publish deadline
        (the longest a record of an intent acked a moment before can take to land), a missing
        record is lost, and waiting on would observe nothing. True: cut short that way.
        ``last_seq``: the highest INTENTS sequence among them (see ``_drained_now``)."""
        waiting = asyncio.ensure_future(self.watch.wait_for(pairs, max(deadline - time.monotonic(), 0.0), js=self.js))
        idle = asyncio.ensure_future(self._drained_for(self.timeout("NATS_PUBLISH"), last_seq))
        try:
            await asyncio.wait({waiting, idle}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, idle):
                task.cancel()
            await asyncio.gather(waiting, idle, return_exceptions=True)
        if not waiting.cancelled():
            return waiting.result(), False
        # A last look at the stream, for records the subscription missed.
        missing = [p for p in pairs if self.watch.record(*p) is None]
        await self.watch.backfill(self.js, missing, leader_only=self.replicated)
        return [p for p in missing if self.watch.record(*p) is None], True

    async def _drained_for(self, hold_s: float, last_seq: int, poll_s: float = 0.25) -> None:
        """Return once the cells' consumer has been drained (``_drained_now``) for ``hold_s``."""
        since = None
        while since is None or time.monotonic() - since < hold_s:
            await asyncio.sleep(poll_s)
            if not await self._drained_now(last_seq):
                since = None
            elif since is None:
                since = time.monotonic()

    async def _drained_now(self, last_seq: int = 0) -> bool:
        """``drained`` by the cells' consumer's info, read now. Unreadable: False."""
        try:
            info = await asyncio.wait_for(self.js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER), 1.0)
        except Exception:
            return False
        return drained(info, self.replicated, last_seq)

    async def consumer_drained(self, timeout_s: float, poll_s: float = 0.05) -> bool:
        """Wait until the cells' consumer is drained (``_drained_now``: every intent, redeliveries
        included, has been acked), or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self._drained_now():
                return True
            await asyncio.sleep(poll_s)
        return False

    async def wait_api_ready(self, timeout_s: float = 20.0) -> bool:
        return await self.wait_answering(f"{self.client.api_url}/readyz", timeout_s, poll_s=0.1)

    async def wait_answering(self, url: str, timeout_s: float = 20.0, poll_s: float = 0.05) -> bool:
        """Poll ``url`` until it answers 200 (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                async with self.client.session.get(url) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(poll_s)
        return False

    async def breaker_states(self) -> dict[str, str]:
        """Each cell's breaker state, as its audited transitions on EVENTS say."""
        from exoarmur_cli.export import read_stream

        states: dict[str, str] = {}
        for row in await read_stream(self.js, "EVENTS"):
            if row["subject"].startswith("exo.events.breaker."):
                event = orjson.loads(row["data"])
                states[event["cell_id"]] = event["to"]
        return states

    async def breaker_recovered(self, tenant_id: str = "tenant-09", timeout_s: float = 10.0) -> bool:
        """After an effector fault: submit one intent at a time until every cell's breaker is
        CLOSED again, so the next step starts clean (the probes that close them are recorded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(state == "CLOSED" for state in (await self.breaker_states()).values()):
                return True
            peer, body = self.body(tenant_id)
            sub = await self.client.submit(peer, body, tag=Tag.PROBE)
            if sub.accepted:
                await self.watch.wait_for([(sub.tenant_id, sub.key)], 6.0, js=self.js)
            await asyncio.sleep(0.1)
        return False
