"""A 3-node JetStream cluster on loopback (``--nats-cluster 3``): the server leading the INTENTS
stream (R3) is SIGKILLed while a publisher writes durable messages; none it saw acknowledged is lost.

Real servers, no mocks. The publisher is the ``api`` user, publishing to the real INTENTS stream as
the api does (``Nats-Msg-Id``, so a publish retried after a lost ack is stored once). It retries
each message until acknowledged. Measured and printed: leader election time (SIGKILL -> another
server reported as the stream's leader) and the write-unavailability window (first failed publish
-> next acknowledged one).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from exoarmur import natsio, stackconfig
from exoarmur_cli import topology
from exoarmur_cli.stack import LocalStack

pytestmark = pytest.mark.integration

MESSAGES = 300
KILL_AFTER = 100  # acknowledged messages before the leader dies
PUBLISH_TIMEOUT_S = 1.0
RECOVER_WITHIN_S = 30.0  # a retried message must be acknowledged within this after the kill


@pytest.fixture
def cluster(tmp_path):
    config = stackconfig.generate(tmp_path / "stack", nats_cluster=3, tenants=1, nodes_per_tenant=1,
                                  peers_per_tenant=1)
    stack = LocalStack(config)
    try:
        stack.start_component("nats")
        yield stack
    finally:
        stack.stop()


async def _leader(js) -> str | None:
    try:
        info = await js.stream_info(natsio.INTENTS_STREAM)
    except Exception:  # the server we asked may be the one just killed: ask again
        return None
    return info.cluster.leader if info.cluster else None


async def test_acked_messages_survive_a_killed_stream_leader(cluster):
    config = cluster.config
    publisher = await natsio.connect_as(config, "api", "test-cluster-publisher")
    observer = await natsio.connect_as(config, "harness", "test-cluster-observer")
    # Short API timeouts: a request to the server just killed is given up soon and asked again.
    pub_js, obs_js = publisher.jetstream(), observer.jetstream(timeout=0.5)
    try:
        info = await obs_js.stream_info(natsio.INTENTS_STREAM)
        assert info.config.num_replicas == 3
        old_leader = info.cluster.leader
        assert old_leader in config.nats_component_names()

        acked: dict[int, bytes] = {}  # stream sequence -> the payload acknowledged there
        failed_at: float | None = None
        unavailable_s: float | None = None
        killed_at: float | None = None
        kill_task = watch_task = None

        async def watch_election() -> tuple[str | None, float | None]:
            """Alongside the publisher: poll until another server reports leading the stream."""
            while time.monotonic() - killed_at < RECOVER_WITHIN_S:
                leader = await _leader(obs_js)
                if leader not in (None, old_leader):
                    return leader, time.monotonic() - killed_at
                await asyncio.sleep(0.05)
            return None, None
        for i in range(MESSAGES):
            payload = f"msg-{i:04d}".encode()
            while True:
                try:
                    ack = await pub_js.publish(natsio.intent_subject("tenant-00", f"d{i:04d}"), payload,
                                               timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": f"m{i}"})
                    break
                except Exception:
                    if failed_at is None:
                        failed_at = time.monotonic()
                    assert killed_at is not None, "a publish failed before any fault"
                    assert time.monotonic() - killed_at < RECOVER_WITHIN_S, "writes did not recover"
                    await asyncio.sleep(0.05)
            if failed_at is not None and unavailable_s is None:
                unavailable_s = time.monotonic() - failed_at
            acked[ack.seq] = payload
            if len(acked) == KILL_AFTER:
                killed_at = time.monotonic()
                kill_task = asyncio.create_task(asyncio.to_thread(cluster.children[old_leader].kill))
                watch_task = asyncio.create_task(watch_election())

        await kill_task
        new_leader, elected_s = await watch_task
        assert new_leader not in (None, old_leader), "no other server took over the stream"

        lost = []
        for seq, payload in acked.items():
            msg = await obs_js.get_msg(natsio.INTENTS_STREAM, seq)
            if msg.data != payload:
                lost.append(seq)
        info = await obs_js.stream_info(natsio.INTENTS_STREAM)
        leaders = await topology.stream_leaders(obs_js)
        print(f"\ncluster: leader {old_leader} SIGKILLed after {KILL_AFTER} acks; new leader {new_leader}; "
              f"acked {len(acked)}, lost {len(lost)}, stored {info.state.messages}; "
              f"write unavailability {unavailable_s if unavailable_s is None else round(unavailable_s, 3)} s; "
              f"new leader reported {elected_s:.3f} s after the kill; "
              f"stream leaders now {({k: v.get('leader') for k, v in leaders.items()})}")
        assert len(acked) == MESSAGES
        assert lost == []
        assert info.state.messages == MESSAGES  # a retried publish was stored once
    finally:
        await publisher.close()
        await observer.close()
