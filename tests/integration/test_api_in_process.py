"""The api app in-process against a real embedded nats-server (no cells): durable publish,
resubmission, the pending-work bound, operator writes, refusal counters, and the api-side
defect seams doing what they name."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from exoarmur import natsio, stackconfig
from exoarmur.api import create_app
from exoarmur.contracts import ApprovalV1, KillSwitchState, key_digest
from exoarmur.nats_server import server_binary, write_server_config
from exoarmur.reliability.timeouts import TimeoutCategory
from exoarmur.seams import injected

pytestmark = pytest.mark.integration

FAST = {"refusal_flush_interval_ms": 100}


@contextmanager
def serving(tmp_path, defects=(), **overrides) -> Iterator[tuple[stackconfig.StackConfig, TestClient]]:
    """A nats-server of its own (own process group, killed on exit) and the api app, lifespan run."""
    config = stackconfig.generate(tmp_path / "stack", tenants=2, nodes_per_tenant=2, peers_per_tenant=1,
                                  overrides={**FAST, **overrides}, defects=list(defects))
    server = subprocess.Popen([server_binary(), "-c", str(write_server_config(config))], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert natsio.wait_for_port(config.host, config.nats_port, 10.0), "nats-server did not start"
        peek(config, lambda js: natsio.provision(js, natsio.storage(injected(config.defects))), role="provisioner")
        with TestClient(create_app(config)) as client:
            yield config, client
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def peek(config, fn, role="harness"):
    """Run ``fn(js)`` on a fresh NATS connection of the test's own, as the stack's user ``role``."""
    async def go():
        nc = await natsio.connect_as(config, role, "test-peek")
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


def peer_and_body(config, tenant="tenant-00", key="k-1"):
    peer = next(p for p in config.peers.values() if p.tenant_id == tenant)
    node = next(n for n, owner in config.nodes.items() if owner == tenant)
    body = dict(intent_id="i-1", tenant_id=tenant, peer_id=peer.peer_id, node_id=node, action="isolate_host",
                action_class="A1", idempotency_key=key)
    return {"authorization": f"Bearer {peer.token}"}, body


def op(config):
    return {"authorization": f"Bearer {config.operator_token}"}


def _storage(info) -> str:
    return getattr(info.config.storage, "value", info.config.storage)


def wait_until(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_submit_is_durable_and_a_resubmission_is_the_same_intent(tmp_path) -> None:
    with serving(tmp_path) as (config, client):
        assert client.get("/readyz").json() == {"ready": True}
        headers, body = peer_and_body(config)
        first = client.post("/v1/intents", json=body, headers=headers)
        again = client.post("/v1/intents", json=body, headers=headers)
        assert first.status_code == again.status_code == 202
        assert first.json()["stream_seq"] >= 1 and not first.json()["duplicate"]
        assert again.json()["duplicate"] and again.json()["stream_seq"] == first.json()["stream_seq"]
        status = client.get("/v1/intents/k-1", headers=headers).json()
        assert status["state"] == "ACCEPTED" and status["record"]["intent_id"] == "i-1"
        info = peek(config, lambda js: js.stream_info(natsio.INTENTS_STREAM))
        assert info.state.messages == 1 and _storage(info) == "file"
        assert "exoarmur_api_duplicates_total 1" in client.get("/metrics").text


def test_the_pending_bound_refuses_and_the_refusals_reach_the_events_stream(tmp_path) -> None:
    with serving(tmp_path, pending_intents=2) as (config, client):
        headers, _ = peer_and_body(config)
        for i in range(2):
            assert client.post("/v1/intents", json=peer_and_body(config, key=f"k-{i}")[1],
                               headers=headers).status_code == 202
        refused = lambda: client.post("/v1/intents", json=peer_and_body(config, key="k-x")[1],  # noqa: E731
                                      headers=headers).status_code == 503
        assert wait_until(refused), "the pending estimate never reached the bound"

        async def counters(js):
            sub = await js.pull_subscribe("exo.events.refusals.>", stream=natsio.EVENTS_STREAM)
            return [m.data for m in await sub.fetch(10, timeout=1.0)]

        assert wait_until(lambda: peek(config, lambda js: js.stream_info(natsio.EVENTS_STREAM)).state.messages >= 1)
        records = peek(config, counters)
        assert any(b'"reason_code":"QUEUE_FULL"' in r and b'"tenant_id":"tenant-00"' in r for r in records)


def test_operator_writes_land_in_the_buckets(tmp_path) -> None:
    with serving(tmp_path) as (config, client):
        put = client.put("/v1/killswitches/tenants/tenant-01", json={"engaged": True, "reason": "drill"},
                         headers=op(config))
        assert put.status_code == 200 and put.json()["engaged"] is True
        switches = client.get("/v1/killswitches", headers=op(config)).json()
        assert switches["tenant.tenant-01"]["engaged"] is True and switches["tenant.tenant-01"]["readable"]
        assert switches["global"] == {"readable": True, "revision": 0, "engaged": False, "reason": "",
                                      "set_by": "operator"}
        raw, revision = peek(config, lambda js: natsio.read_key(js, natsio.SAFETY_BUCKET, "tenant.tenant-01",
                                                                TimeoutCategory.KV_GET))
        assert KillSwitchState.model_validate_json(raw).engaged and revision == put.json()["revision"]

        grant = {"tenant_id": "tenant-00", "idempotency_key": "k-9", "intent_hash": "a" * 64, "status": "APPROVED"}
        granted = client.post("/v1/approvals", json=grant, headers=op(config))
        assert granted.status_code == 200
        key = natsio.approval_key("tenant-00", key_digest("tenant-00", "k-9"))
        raw, _ = peek(config, lambda js: natsio.read_key(js, natsio.APPROVALS_BUCKET, key,
                                                         TimeoutCategory.KV_GET))
        assert ApprovalV1.model_validate_json(raw).status.value == "APPROVED"


def test_api_defect_seams_break_what_they_name(tmp_path) -> None:
    with serving(tmp_path / "a", defects=["no-idempotency", "memory-storage"]) as (config, client):
        headers, body = peer_and_body(config)
        answers = [client.post("/v1/intents", json=body, headers=headers).json() for _ in range(2)]
        assert [a["duplicate"] for a in answers] == [False, False]
        info = peek(config, lambda js: js.stream_info(natsio.INTENTS_STREAM))
        assert info.state.messages == 2 and _storage(info) == "memory"
    with serving(tmp_path / "b", defects=["silent-drop"], pending_intents=1) as (config, client):
        headers, _ = peer_and_body(config)
        assert client.post("/v1/intents", json=peer_and_body(config, key="k-0")[1], headers=headers).status_code == 202
        time.sleep(0.3)  # the pending estimate refreshes every 50 ms
        dropped = client.post("/v1/intents", json=peer_and_body(config, key="k-1")[1], headers=headers)
        assert dropped.status_code == 202 and dropped.json()["stream_seq"] == 0
        assert peek(config, lambda js: js.stream_info(natsio.INTENTS_STREAM)).state.messages == 1


def test_tenant_leak_defect_lists_other_tenants_records(tmp_path) -> None:
    for defects, leaked in (((), False), (("tenant-leak",), True)):
        with serving(tmp_path / str(leaked), defects=defects) as (config, client):
            peek(config, lambda js: js.publish("exo.audit.tenant-01.abc", b'{"tenant_id": "tenant-01"}'), role="cell")
            headers, _ = peer_and_body(config, "tenant-00")
            records = client.get("/v1/audit", headers=headers).json()["records"]
            assert (records == [{"tenant_id": "tenant-01"}]) is leaked
