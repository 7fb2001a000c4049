"""KV history export (export.export_kv + kv_watch.KvWatch) against the real embedded nats-server.

The buckets keep 5 values per key, so a switch flipped 8 times has lost 3 revisions from its
stream by export time; the live watch must supply them, and keep doing so after a
nats-server restart (7 writes after it: the first 2 survive only in the watch).
"""

from __future__ import annotations

import asyncio
import base64
import time

import orjson
import pytest

from exoarmur import natsio
from exoarmur_cli.export import export_kv
from exoarmur_cli.faults.process import ProcessFaults
from exoarmur_cli.kv_watch import KvWatch

pytestmark = pytest.mark.integration

BEFORE, AFTER = 4, 7  # more than the bucket keeps on each side of the restart
PACE_S = 0.3  # an operator's pace, slower than the watch's poll (the watch cannot see faster than it polls)


def flip(exo, engaged: bool) -> int:
    answer = exo.api.put("/v1/killswitches/global", json={"engaged": engaged}, headers=exo.operator)
    assert answer.status_code == 200, answer.text
    return answer.json()["revision"]


async def wait_for_api(exo, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if exo.api.put("/v1/killswitches/global", json={"engaged": False},
                           headers=exo.operator).status_code == 200:
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("the api did not write to KV again after the restart")


async def scenario(exo) -> tuple[list[dict], list[dict], dict, list[int]]:
    nc = await natsio.connect_as(exo.cfg, "harness", "test-kv-watch")
    watch = KvWatch()
    await watch.start(nc.jetstream())
    revisions = []
    for i in range(BEFORE + AFTER):
        if i == BEFORE:
            await asyncio.sleep(PACE_S)
            await asyncio.to_thread(ProcessFaults(exo.stack).restart, "nats")
            await wait_for_api(exo)  # one more write: the release that proves the api is back
        revisions.append(await asyncio.to_thread(flip, exo, i % 2 == 0))
        await asyncio.sleep(PACE_S)
    await asyncio.sleep(1.0)  # the watch's ordered consumer catches up
    watched = await watch.stop()
    js = nc.jetstream()
    merged, counts = await export_kv(js, natsio.SAFETY_BUCKET, watched["safety"])
    alone, _ = await export_kv(js, natsio.SAFETY_BUCKET)
    await nc.close()
    return merged, alone, counts, revisions


def test_export_has_every_revision_despite_the_history_limit_and_a_restart(exo):
    merged, alone, counts, revisions = asyncio.run(scenario(exo))
    on_global = [r for r in merged if r["subject"] == "$KV.safety.global"]
    assert {r["seq"] for r in on_global} >= set(revisions)
    assert len([r for r in alone if r["subject"] == "$KV.safety.global"]) == 5  # the bucket's own limit
    assert counts["watch_only"] >= BEFORE + 1 + AFTER - 5 and counts["conflicts"] == 0
    by_seq = {r["seq"]: r for r in merged}
    for n, revision in enumerate(revisions):
        value = orjson.loads(base64.b64decode(by_seq[revision]["data_b64"]))
        assert value["engaged"] is (n % 2 == 0)
        assert by_seq[revision]["kept_per_key"] == 5 and by_seq[revision]["operation"] == "PUT"
