"""Tenancy is enforced at the api, and bad input is refused with a 4xx and a reason code."""

from __future__ import annotations

import pytest

from exoarmur import natsio
from exoarmur.contracts import PARAMETERS_MAX_BYTES, ErrorBody, canonical_json
from exoarmur.reliability.bounds import BOUNDS

pytestmark = pytest.mark.integration


def intents_in_stream(exo) -> int:
    async def work(js):
        return (await js.stream_info(natsio.INTENTS_STREAM)).state.messages

    return exo.nats(work)


def assert_refused(response, status: int, reason: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = ErrorBody.model_validate(response.json())  # exactly {reason_code, detail}
    assert body.reason_code.value == reason, response.text


def test_a_peer_cannot_act_for_or_read_another_tenant(exo):
    tenant_a, tenant_b = exo.tenants[0], exo.tenants[1]
    peer_a, peer_b = exo.peer(0), exo.peer(1)
    # One record in each tenant, so "only A's records" is not trivially true.
    shared_key = exo.unique("shared")
    record_a = exo.run_one(peer_a, key=shared_key)
    record_b = exo.run_one(peer_b, key=shared_key)  # the same key, another tenant: another intent
    assert record_a["outcome"] == record_b["outcome"] == "EXECUTED"
    assert record_a["audit_id"] != record_b["audit_id"]

    before = intents_in_stream(exo)
    as_b = exo.intent(peer_a, tenant_id=tenant_b, node_id=exo.node(tenant_b))
    assert_refused(exo.submit(peer_a, as_b), 403, "TENANT_MISMATCH")
    onto_b = exo.intent(peer_a, node_id=exo.node(tenant_b))
    assert_refused(exo.submit(peer_a, onto_b), 403, "TENANT_MISMATCH")
    as_peer_b = exo.intent(peer_a, peer_id=peer_b.peer_id)
    assert_refused(exo.submit(peer_a, as_peer_b), 403, "FORBIDDEN")
    assert intents_in_stream(exo) == before

    response = exo.api.get("/v1/audit", params={"tenant_id": tenant_b}, headers=exo.auth(peer_a))
    assert_refused(response, 403, "TENANT_MISMATCH")
    response = exo.api.get(f"/v1/intents/{shared_key}", params={"tenant_id": tenant_b}, headers=exo.auth(peer_a))
    assert_refused(response, 403, "TENANT_MISMATCH")
    # B's keys are invisible to A: a key only B used does not exist for A.
    only_b = exo.run_one(peer_b)
    assert_refused(exo.status(peer_a, only_b["idempotency_key"]), 404, "NOT_FOUND")

    own = exo.audit(tenant_a, peer_a)
    assert own and {r["tenant_id"] for r in own} == {tenant_a}
    assert record_a in own and record_b not in own
    response = exo.api.get("/v1/audit", headers=exo.auth(peer_a))  # no tenant named: one's own
    assert response.status_code == 200
    assert {r["tenant_id"] for r in response.json()["records"]} == {tenant_a}
    assert exo.status(peer_a, shared_key).json()["record"] == record_a


def test_bad_input_is_refused_with_a_reason_and_never_written(exo):
    peer = exo.peer(2)
    good = exo.intent(peer)
    big = "x" * (PARAMETERS_MAX_BYTES + 1)
    assert len(canonical_json({"blob": big})) < BOUNDS["http_body_bytes"].limit  # the field bound bites
    too_big_body = exo.intent(peer, parameters={"blob": "y" * BOUNDS["http_body_bytes"].limit})
    cases = [
        ("malformed JSON", peer, b'{"intent_id": "i1", ', 400, "INVALID_INTENT"),
        ("not UTF-8", peer, b"\xff\xfe{}", 400, "INVALID_INTENT"),
        ("not an object", peer, b"[1, 2, 3]", 400, "INVALID_INTENT"),
        ("empty body", peer, b"", 400, "INVALID_INTENT"),
        ("unknown field", peer, {**good, "surprise": True}, 400, "INVALID_INTENT"),
        ("missing field", peer, {k: v for k, v in good.items() if k != "action"}, 400, "INVALID_INTENT"),
        ("bad action class", peer, {**good, "action_class": "A9"}, 400, "INVALID_INTENT"),
        ("bad id", peer, {**good, "intent_id": "has spaces"}, 400, "INVALID_INTENT"),
        ("oversized parameters", peer, {**good, "parameters": {"blob": big}}, 400, "INVALID_INTENT"),
        ("oversized body", peer, too_big_body, 413, "INVALID_INTENT"),
        ("wrong token", "not-a-token", good, 401, "UNAUTHENTICATED"),
        ("unknown node", peer, {**good, "node_id": "node-9999"}, 404, "UNKNOWN_NODE"),
    ]
    before = intents_in_stream(exo)
    for name, who, body, status, reason in cases:
        response = exo.submit(who, body)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert_refused(response, status, reason)

    missing = exo.api.post("/v1/intents", json=good)
    assert_refused(missing, 401, "UNAUTHENTICATED")
    not_bearer = exo.api.post("/v1/intents", json=good, headers={"authorization": f"Basic {peer.token}"})
    assert_refused(not_bearer, 401, "UNAUTHENTICATED")
    operator = exo.api.post("/v1/intents", json=good, headers=exo.operator)
    assert_refused(operator, 403, "FORBIDDEN")
    assert intents_in_stream(exo) == before, "a refused intent reached the INTENTS stream"

    # The same intent, well formed, is accepted: the refusals were about the input alone.
    assert exo.accept(peer, good)["duplicate"] is False
    assert intents_in_stream(exo) == before + 1
    assert exo.wait_terminal(peer, good["idempotency_key"])["outcome"] == "EXECUTED"

    spec = exo.api.get("/openapi.json")
    assert spec.status_code == 200
    assert "/v1/intents" in spec.json()["paths"]
