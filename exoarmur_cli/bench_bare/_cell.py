"""The bare cell: pull an intent, call the no-op effector, publish one durable record, ack.

The real cell's loop (``exoarmur.cell.worker.Cell.run``): the same in-flight bound, the same pull
(``first_then_waiting``), one task per message, aiohttp to the effector, uvloop. No decision, no
safety state, no breaker or retries, no sealed record: the record is the intent's bytes."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import uvloop

from exoarmur import natsio
from exoarmur.cell.delivery import first_then_waiting
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.bench_bare import _wire


class BareCell:
    def __init__(self, config: StackConfig, cell_id: str, effector_url: str) -> None:
        self.config, self.cell_id, self.effector_url = config, cell_id, effector_url
        self.max_inflight = config.bound("cell_inflight")
        self.inflight = asyncio.Semaphore(self.max_inflight)
        self.tasks: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        nc = await natsio.connect_as(self.config, _wire.ROLE, f"exoarmur-bench-bare-{self.cell_id}")
        self.js = nc.jetstream()
        self.http = aiohttp.ClientSession(base_url=self.effector_url,
                                          connector=aiohttp.TCPConnector(limit=self.max_inflight))
        sub = await self.js.pull_subscribe_bind(_wire.CONSUMER, stream=_wire.STREAM)
        try:
            while not self.stopping.is_set():
                await self.inflight.acquire()
                self.inflight.release()
                try:
                    await first_then_waiting(sub, lambda: self.max_inflight - len(self.tasks), self._start)
                except Exception:  # nothing to do (timeout): poll again
                    continue
        finally:
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=5)
            await self.http.close()
            try:
                await sub.unsubscribe()  # before drain: see exoarmur.cell.worker.Cell._stop
            except Exception:
                pass
            await nc.drain()

    async def _start(self, msg) -> None:
        await self.inflight.acquire()
        task = asyncio.create_task(self.handle(msg))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.inflight.release()
        if not task.cancelled():
            task.exception()  # a failed intent stays unacked and is redelivered

    async def handle(self, msg) -> None:
        key = msg.subject.rsplit(".", 1)[1]
        async with self.http.post("/v1/effects", data=msg.data, headers={"Idempotency-Key": key}) as response:
            receipt = await response.read()
        await self.js.publish(_wire.record_subject_of(msg.subject), msg.data + receipt)
        await msg.ack()


def run(config: StackConfig, cell_id: str, effector_url: str) -> None:
    async def main() -> None:
        cell = BareCell(config, cell_id, effector_url)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, cell.stopping.set)
        await cell.run()

    uvloop.run(main())
