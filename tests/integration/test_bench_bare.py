"""The bench's bare pipeline against a real nats-server: N intents in, N durable records out, all acked."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import aiohttp
import pytest

from exoarmur import natsio, stackconfig
from exoarmur.nats_server import server_binary, write_server_config
from exoarmur_cli.bench_bare import RECORDS_WATCH, BarePipeline, record_subject
from exoarmur_cli.bench_bare import _wire

pytestmark = pytest.mark.integration

N = 40


def body(i: int) -> dict:
    return {"intent_id": f"bare-{i}", "tenant_id": "tenant-00", "peer_id": "peer-00-00", "node_id": "node-00-000",
            "action": "block_ip", "action_class": "A1", "idempotency_key": f"bare-{i}",
            "parameters": {"ip": f"10.0.0.{i}"}}


async def drive(config: stackconfig.StackConfig) -> None:
    pipeline = BarePipeline(config, cells=2)
    await pipeline.start()
    nc = await natsio.connect_as(config, "provisioner", "t-bare-watch")
    try:
        arrived: dict[str, bytes] = {}

        async def on_record(msg) -> None:
            arrived[msg.subject] = msg.data

        await nc.subscribe(RECORDS_WATCH, cb=on_record)
        async with aiohttp.ClientSession(base_url=pipeline.url) as http:
            async def submit(i: int) -> int:
                async with http.post("/v1/intents", json=body(i), headers={"Authorization": "Bearer x"}) as response:
                    await response.read()
                    return response.status

            assert await asyncio.gather(*(submit(i) for i in range(N))) == [202] * N
        wanted = {record_subject(body(i)) for i in range(N)}
        for _ in range(200):
            if wanted <= set(arrived):
                break
            await asyncio.sleep(0.05)
        assert set(arrived) == wanted
        assert all(data.startswith(b"{") and b'"applied":true' in data for data in arrived.values())
        js = nc.jetstream()
        for _ in range(100):  # a subscriber sees a record before it is on disk; the ack comes after both
            info = await js.consumer_info(_wire.STREAM, _wire.CONSUMER)
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
        assert info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.consumer_seq == N
        assert (await js.stream_info(_wire.RECORDS_STREAM)).state.messages == N  # durable, one each
    finally:
        await nc.close()
        await pipeline.stop()
    assert not any(child.alive() for child in pipeline.children.values())


def test_bare_pipeline_processes_every_intent_end_to_end(tmp_path) -> None:
    config = stackconfig.generate(tmp_path / "stack", tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    proc = subprocess.Popen([server_binary(), "-c", str(write_server_config(config))], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert natsio.wait_for_port(config.host, config.nats_port, 10.0)
        asyncio.run(drive(config))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
