"""A scenario's settle against a real stack: it waits for every record that can still come (an
intent nak'd while it waits for its approval included) and stops waiting for one that cannot (the
cells' consumer holds nothing more to deliver), long before its limit. No mocks."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
import pytest

from exoarmur import natsio
from exoarmur.reliability.timeouts import TimeoutCategory, deadline_s
from exoarmur_cli.client import AuditWatch, StackClient, Submitted
from exoarmur_cli.history import History
from exoarmur_cli.rundata import Policy
from exoarmur_cli.scenarios.base import Context

pytestmark = pytest.mark.integration

# settle holds on for a record publish deadline once the consumer is drained
PUBLISH_DEADLINE = Policy(timeouts_s={"NATS_PUBLISH": deadline_s(TimeoutCategory.NATS_PUBLISH)})
LIMIT_S = 60.0  # far past what either intent needs: a settle that ran to it would say so
APPROVAL_WAIT_MS = 3000  # the pending intent's record lands after this: settle must wait it out


def test_settle_waits_for_a_pending_record_and_not_for_a_lost_one(make_stack, tmp_path):
    with make_stack(seed=21, overrides={"approval_wait_ms": APPROVAL_WAIT_MS}) as exo:
        peer = exo.peer()
        done = exo.run_one(peer)["idempotency_key"]
        pending = exo.unique("pending")  # A2 without an approval: nak'd until its wait runs out, then EXPIRED
        exo.accept(peer, exo.intent(peer, pending, action_class="A2"))
        submitted = [Submitted(key, peer.tenant_id, 202, None, False) for key in (done, pending, "never-submitted")]

        async def settle():
            history = History(tmp_path / "history.jsonl")
            nc = await natsio.connect_as(exo.stack.config, "harness", "test-settle")
            try:
                watch = AuditWatch()
                await watch.start(nc)
                async with StackClient(exo.stack.config, history, api_url=exo.stack.config.api_url) as client:
                    ctx = Context(name="settle", config=exo.stack.config, client=client, history=history,
                                  watch=watch, nc=nc, js=nc.jetstream(), rng=random.Random(1), params=None,
                                  raw_dir=tmp_path, stack=exo.stack, faults=None, policy=PUBLISH_DEADLINE, t0_wall_ms=0)
                    began = time.monotonic()
                    missing = await ctx.settle(submitted, timeout_s=LIMIT_S)
                    return missing, time.monotonic() - began, watch.record(peer.tenant_id, pending)
            finally:
                await nc.close()
                history.close()

        missing, took_s, pending_record = asyncio.run(settle())
        assert missing == [(peer.tenant_id, "never-submitted")]
        assert pending_record is not None and pending_record["outcome"] == "EXPIRED", pending_record
        assert APPROVAL_WAIT_MS / 1000 < took_s < LIMIT_S / 3, took_s
        rows = [orjson.loads(line) for line in (tmp_path / "history.jsonl").read_bytes().splitlines()]
        [settled] = [r["value"] for r in rows if r["f"] == "settled"]
        assert settled["missing"] == 1 and settled["stopped_waiting"] == "nothing left to deliver"
