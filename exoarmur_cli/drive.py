"""Drive: run the selected scenarios against a stack that is up, recording everything, then
export what the stack holds. Judges nothing.

Each scenario gets a ``Context`` (its client, faults, seeded RNG, parameters and policy); a
scenario that cannot run on this stack is NOT RUN, one that crashes keeps its traceback in
``raw/harness_errors.log`` — either way its gates are INCOMPLETE, never green. Meanwhile a
sampler records the memory of api and cells and the cells' pending depth.
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import orjson
import psutil

from exoarmur import natsio
from exoarmur_cli import recorded, topology
from exoarmur_cli.client import AuditWatch, StackClient
from exoarmur_cli.errors import FaultError
from exoarmur_cli.export import export_all
from exoarmur_cli.kv_watch import KvWatch
from exoarmur_cli.load.runner import LoadLayout
from exoarmur_cli.faults import EffectorFaults, Faults
from exoarmur_cli.history import FAIL, OK, History, ScopedHistory
from exoarmur_cli.rundata import Policy
from exoarmur_cli.scenarios import BESIDE, BESIDE_UNTIL, DRIVERS, ORDER, Context, ScenarioNotRun, ScenarioParams
from exoarmur_cli.stacks import Stack
from exoarmur_cli.tasks import INTERRUPT

SAMPLE_INTERVAL_S = 0.2


async def sample(stack: Stack, js, raw_dir: Path, history: History, stop: asyncio.Event) -> None:
    """RSS of every stack process, and the pending depth of the cells' consumer, every interval."""
    with open(raw_dir / recorded.SAMPLES, "ab") as out:
        while not stop.is_set():
            now = round(history.now_ms(), 1)
            rows = []
            for name, pid in stack.sampled_pids().items():
                try:
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                    rows.append({"time_ms": now, "kind": "rss_mb", "process": name, "value": round(rss, 2)})
                except psutil.Error:
                    pass
            try:
                info = await asyncio.wait_for(js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER), 1.0)
                rows.append({"time_ms": now, "kind": "pending", "process": "nats",
                             "value": info.num_pending + info.num_ack_pending})
            except Exception:
                pass
            for row in rows:
                out.write(orjson.dumps(row) + b"\n")
            out.flush()
            try:
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL_S)
            except asyncio.TimeoutError:
                pass


class Driver:
    """Drives ``names`` in order on ``stack``; ``durations_s`` says how long each took."""

    def __init__(self, stack: Stack, history: History, raw_dir: Path, progress: Callable[[str], None],
                 load: LoadLayout = LoadLayout()) -> None:
        self.stack, self.history, self.raw_dir, self.progress = stack, history, raw_dir, progress
        self.load = load
        self.durations_s: dict[str, float] = {}

    async def drive_and_export(self, names: list[str], params: dict[str, ScenarioParams], policy: Policy, seed: int,
                               t0_wall_ms: int, refusal_flush_s: float) -> dict:
        """Every scenario, then every export; returns the export counts."""
        nc = await natsio.connect_as(self.stack.config, "harness", "exoarmur-harness", self.stack.nats_url)
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(self.stack, nc.jetstream(), self.raw_dir, self.history, stop))
        watch = AuditWatch()
        await watch.start(nc)
        kv_watch = KvWatch()  # every KV revision, including those the buckets' history limit drops
        await kv_watch.start(nc.jetstream())
        # sync_interval: what a JetStream ack means on disk; "cluster" (set below) is also its domain
        nats_topology = {"sync_interval": self.stack.config.sync_interval, "servers": {}, "streams": {}}
        await self._topology(nats_topology, nc.jetstream(), "start")
        try:
            async with StackClient(self.stack.config, self.history, api_url=self.stack.api_url) as client:
                faults = Faults(self.stack, self.history,
                                EffectorFaults(client.session, client.effector_url,
                                               self.stack.config.effector_tokens["harness"], self.history))
                rng = random.Random(seed)
                contexts = {}
                for name in names:  # each its own RNG, drawn in the run's order whatever runs beside
                    history = ScopedHistory(self.history, name) if name in BESIDE else self.history
                    contexts[name] = Context(
                        name=name, config=self.stack.config, client=client, history=history, watch=watch, nc=nc,
                        js=nc.jetstream(), rng=random.Random(rng.random()), params=params[name],
                        raw_dir=self.raw_dir, stack=self.stack, faults=faults, policy=policy,
                        t0_wall_ms=t0_wall_ms, nats_url=self.stack.nats_url, load=self.load)
                await self._drive_all(names, contexts)
                self.history.scenario = "-"
                await asyncio.sleep(refusal_flush_s + 0.1)  # the api's last refusal counters flush
        finally:
            stop.set()
            await sampler
        await self._topology(nats_topology, nc.jetstream(), "end")
        self.progress("exporting streams, ledger and logs")
        kv_watched = await kv_watch.stop()
        counts = await export_all(nc.jetstream(), self.raw_dir, self.stack.config.effector_url,
                                  self.stack.config.effector_tokens["harness"], self.stack.monitor_url,
                                  self.stack.logs_dir, kv_watched=kv_watched)
        await nc.close()
        return {**counts, "kv_watch_errors": kv_watch.error_count, "kv_watch_first_errors": kv_watch.errors}

    async def _topology(self, into: dict, js, when: str) -> None:
        """raw/nats_topology.json: the servers (name, ports, pid) and each stream's replicas and
        leader, at the run's ``start`` and ``end``; rewritten each time, so a crash keeps the start."""
        into["servers"][when] = topology.servers(self.stack.config, self.stack.nats_pids())
        into["streams"][when] = await topology.stream_leaders(js)
        into["cluster"] = None if self.stack.config.nats_cluster is None else self.stack.config.nats_cluster.name
        (self.raw_dir / topology.TOPOLOGY).write_bytes(orjson.dumps(into, option=orjson.OPT_INDENT_2))

    async def _drive_all(self, names: list[str], contexts: dict[str, Context]) -> None:
        """The scenarios with a stack of their own (``BESIDE``) start at once, beside the others;
        those on the run's stack run one at a time, in order, and from ``BESIDE_UNTIL`` on only
        once the ones beside have finished."""
        beside = [asyncio.create_task(self._timed(name, contexts[name])) for name in names if name in BESIDE]
        until = ORDER.index(BESIDE_UNTIL)
        try:
            for name in names:
                if name in BESIDE:
                    continue
                if beside and ORDER.index(name) >= until:
                    await asyncio.gather(*beside)
                    beside = []
                self.history.scenario = name
                await self._timed(name, contexts[name])
            await asyncio.gather(*beside)
        finally:
            for task in beside:  # a crash or an interrupt of the others: none outlives the run
                task.cancel()
            await asyncio.gather(*beside, return_exceptions=True)

    async def _timed(self, name: str, ctx: Context) -> None:
        self.progress(f"scenario {name} ...")
        began = time.monotonic()
        await INTERRUPT.run_scenario(self._one(name, ctx))
        self.durations_s[name] = round(time.monotonic() - began, 2)
        self.progress(f"scenario {name} done in {self.durations_s[name]:.1f}s")

    async def _one(self, name: str, ctx: Context) -> None:
        history = ctx.history  # the scenario's own view when it runs beside others
        try:
            await DRIVERS[name](ctx)
        except (ScenarioNotRun, FaultError) as exc:
            history.append(FAIL, "scenario_done", "harness", {"not_run": str(exc)})
            self.progress(f"scenario {name} NOT RUN: {exc}")
            return
        except Exception as exc:  # a crashed driver leaves its gate INCOMPLETE, with the traceback kept
            history.append(FAIL, "scenario_done", "harness", {"error": f"{type(exc).__name__}: {exc}"})
            with open(self.raw_dir / "harness_errors.log", "a") as log:
                log.write(f"--- {name}\n{traceback.format_exc()}\n")
            self.progress(f"scenario {name} CRASHED: {type(exc).__name__}: {exc}")
            return
        history.append(OK, "scenario_done", "harness", {})
