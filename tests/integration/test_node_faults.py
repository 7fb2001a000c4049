"""Node faults on a real 3-node cluster (the persistence scenario's ``node_fault``): a paused
INTENTS leader is replaced, SIGCONTed and back as a current replica, and what it cost is recorded;
a pause cut short by cancellation still SIGCONTs the server. Real processes, no mocks."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from exoarmur import natsio
from exoarmur_cli.client import StackClient
from exoarmur_cli.faults.process import ProcessFaults
from exoarmur_cli.history import History
from exoarmur_cli.scenarios import node_faults
from exoarmur_cli.scenarios.base import Context

pytestmark = pytest.mark.integration


def _state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0]


async def _with_context(stack, tmp_path, body):
    history = History(tmp_path / "history.jsonl")
    nc = await natsio.connect_as(stack.config, "harness", "test-node-faults", stack.config.nats_url)
    try:
        async with StackClient(stack.config, history, api_url=stack.config.api_url) as client:
            ctx = Context(name="persistence", config=stack.config, client=client, history=history, watch=None,
                          nc=nc, js=nc.jetstream(), rng=random.Random(11), params=None, raw_dir=tmp_path,
                          stack=stack, faults=None, policy=None, t0_wall_ms=0)
            return await body(ctx, ProcessFaults(stack, history))
    finally:
        await nc.close()
        history.close()


def _observed(tmp_path, f: str) -> list[dict]:
    rows = [orjson.loads(line) for line in (tmp_path / "history.jsonl").read_bytes().splitlines()]
    return [r["value"] for r in rows if r["f"] == f]


def test_a_paused_leader_is_replaced_resumed_and_back(make_stack, tmp_path):
    with make_stack(nats_cluster=3, cells=1, seed=5) as exo:
        async def body(ctx, processes):
            return await node_faults.node_fault(ctx, processes, ctx.config.tenants, "pause_leader", cycle=0,
                                                pause_s=12, partition_s=12)

        subs = asyncio.run(_with_context(exo.stack, tmp_path, body))
        fault = _observed(tmp_path, "node_fault")[-1]
        assert fault["kind"] == "pause_leader" and "skipped" not in fault
        assert fault["leader_after"] not in (None, fault["target"])  # another server took over
        assert fault["election_s"] is not None and fault["paused_s"] >= 12
        assert fault["recovered"] and fault["rejoined_s"] is not None and fault["rejoin_unavailable_s"] is not None
        assert subs and subs[-1].accepted
        assert sum(fault["reasons"].values()) == fault["refused"]
        assert _state(exo.stack.children[fault["target"]].pid) != "T"
        assert [e["target"] for e in _observed(tmp_path, "pause")] == [fault["target"]]
        assert [e["target"] for e in _observed(tmp_path, "resume")] == [fault["target"]]


def test_a_cancelled_pause_still_resumes_the_server(make_stack, tmp_path):
    with make_stack(nats_cluster=3, cells=1, seed=6) as exo:
        async def body(ctx, processes):
            leader = await node_faults.stream_leader(ctx)
            task = asyncio.create_task(node_faults.node_fault(ctx, processes, ctx.config.tenants, "pause_leader",
                                                              cycle=0, pause_s=60, partition_s=12))
            await asyncio.sleep(2.0)
            stopped = _state(exo.stack.children[leader].pid)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return leader, stopped

        leader, stopped = asyncio.run(_with_context(exo.stack, tmp_path, body))
        assert stopped == "T"  # it was paused ...
        assert _state(exo.stack.children[leader].pid) != "T"  # ... and the cancellation resumed it
        assert not _observed(tmp_path, "node_fault")  # a fault cut short records no result
