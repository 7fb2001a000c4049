"""NATS users against a real nats-server: each role can do its job and nothing outside it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from nats.js import api as js_api

from exoarmur import natsio, stackconfig
from exoarmur.nats_server import server_binary, write_server_config
from exoarmur_cli.export import read_stream
from exoarmur_cli.scenarios.access import OUTSIDER_ACTIONS, WRONG_ROLE_ACTIONS, _Probe

pytestmark = pytest.mark.integration


@contextmanager
def server(tmp_path, defects=()) -> Iterator[stackconfig.StackConfig]:
    config = stackconfig.generate(tmp_path / "stack", tenants=1, nodes_per_tenant=1, peers_per_tenant=1,
                                  defects=list(defects))
    proc = subprocess.Popen([server_binary(), "-c", str(write_server_config(config))], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert natsio.wait_for_port(config.host, config.nats_port, 10.0)
        yield config
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def each_role_does_its_job(config) -> None:
    prov = await natsio.connect_as(config, "provisioner", "t-prov")
    api = await natsio.connect_as(config, "api", "t-api")
    cell = await natsio.connect_as(config, "cell", "t-cell")
    harness = await natsio.connect_as(config, "harness", "t-harness")
    nemesis = await natsio.connect_as(config, "nemesis", "t-nemesis")
    try:
        await natsio.provision(prov.jetstream())
        ack = await api.jetstream().publish("exo.intents.tenant-00.d1", b"{}", headers={"Nats-Msg-Id": "m1"})
        assert ack.seq == 1
        assert (await (await api.jetstream().key_value("safety")).put("global", b"{}")) >= 1
        assert (await (await api.jetstream().key_value("approvals")).put("tenant-00.d1", b"{}")) >= 1
        await api.jetstream().consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER)
        sub = await cell.jetstream().pull_subscribe_bind(natsio.CELLS_CONSUMER, stream=natsio.INTENTS_STREAM)
        msg = (await sub.fetch(1, timeout=2))[0]
        await cell.jetstream().publish("exo.audit.tenant-00.d1", b'{"r": 1}')
        await msg.ack_sync(timeout=2)
        raw, revision = await natsio.read_key(cell.jetstream(), "safety", "global", natsio.TimeoutCategory.KV_GET)
        assert raw == b"{}" and revision >= 1
        assert await cell.jetstream().get_last_msg(natsio.AUDIT_STREAM, "exo.audit.tenant-00.d1", direct=True)
        await cell.jetstream().publish("exo.journal.tenant-00.d1", b'{"j": 1}',
                                       headers={"Nats-Expected-Last-Subject-Sequence": "0"})
        assert await cell.jetstream().get_last_msg(natsio.JOURNAL_STREAM, "exo.journal.tenant-00.d1", direct=True)
        assert (await (await nemesis.jetstream().key_value("safety")).put("global", b"corrupt")) >= 2
        for stream in ("INTENTS", "AUDIT", "EVENTS", "KV_safety", "KV_approvals"):
            await read_stream(harness.jetstream(), stream)
        assert len(await read_stream(harness.jetstream(), "AUDIT")) == 1
    finally:
        for nc in (prov, api, cell, harness, nemesis):
            await nc.close()


def test_every_role_can_do_its_job(tmp_path) -> None:
    with server(tmp_path) as config:
        asyncio.run(each_role_does_its_job(config))


async def refusals(config) -> dict[tuple[str, str], bool]:
    """(identity, action) -> refused by the server, for outsiders and every role outside its job."""
    seen: dict[tuple[str, str], bool] = {}
    for identity, creds in {"anonymous": (None, None), "wrong": ("api", "nope")}.items():
        probe = _Probe(identity)
        seen[(identity, "connect")] = await probe.connect(config.nats_url, *creds) is not None
        await probe.close()
    subjects = {"switch_write": "$KV.safety.global", "approval_put": "$KV.approvals.tenant-00.x",
                "intent_publish": "exo.intents.tenant-00.x", "audit_forgery": "exo.audit.tenant-00.x",
                "consumer_pull": "$JS.API.CONSUMER.MSG.NEXT.INTENTS.cells",
                "consumer_ack": "$JS.ACK.INTENTS.cells.1.1.1.1.0", "stream_create": "$JS.API.STREAM.CREATE.X"}
    assert set(subjects) == set(OUTSIDER_ACTIONS)
    for role, actions in WRONG_ROLE_ACTIONS.items():
        probe = _Probe(role)
        assert await probe.connect(config.nats_url, *config.nats_credentials(role)) is None
        for action in actions:
            seen[(role, action)] = await probe.publish(subjects[action], b"{}") is not None
        await probe.close()
    return seen


def test_outsiders_and_wrong_roles_are_refused_by_the_server(tmp_path) -> None:
    with server(tmp_path) as config:
        seen = asyncio.run(refusals(config))
    assert len(seen) == 2 + sum(len(a) for a in WRONG_ROLE_ACTIONS.values())
    assert all(seen.values()), [k for k, refused in seen.items() if not refused]


def test_the_wide_role_defect_lets_the_cells_user_write_switches(tmp_path) -> None:
    with server(tmp_path, defects=["nats-wide-role"]) as config:
        seen = asyncio.run(refusals(config))
    assert not seen[("cell", "switch_write")] and not seen[("cell", "intent_publish")]
    assert seen[("api", "audit_forgery")] and seen[("anonymous", "connect")]


async def harness_cannot_take_over_the_cells_consumer(config) -> None:
    prov = await natsio.connect_as(config, "provisioner", "t-prov")
    harness = await natsio.connect_as(config, "harness", "t-harness")
    try:
        await natsio.provision(prov.jetstream())
        with pytest.raises(Exception):  # no answer comes to a refused API request
            await harness.jetstream().add_consumer(natsio.INTENTS_STREAM, js_api.ConsumerConfig(
                durable_name=natsio.CELLS_CONSUMER, ack_policy=js_api.AckPolicy.NONE), timeout=1)
        info = await harness.jetstream().consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER)
        assert info.config.ack_policy == js_api.AckPolicy.EXPLICIT
    finally:
        await prov.close()
        await harness.close()


def test_the_harness_cannot_redefine_the_cells_consumer(tmp_path) -> None:
    with server(tmp_path) as config:
        asyncio.run(harness_cannot_take_over_the_cells_consumer(config))
