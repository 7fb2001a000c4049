"""The api app in-process, without NATS: authentication, validation, tenancy, admission and
refusal accounting — everything the api decides before it publishes. (Publishing, reads of the
streams and the lifespan are covered against a real nats-server in tests/integration.)"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from exoarmur import stackconfig
from exoarmur.api import create_app

# Small buckets so a test can empty one; no NATS here, so every admitted intent would fail to
# publish: tests that reach admission fill the pending bound first.
OVERRIDES = {"rate_tenant_per_s": 0.001, "rate_tenant_burst": 3, "pending_intents": 5}


def make(tmp_path, defects=(), overrides=OVERRIDES):
    config = stackconfig.generate(tmp_path / "stack", tenants=2, nodes_per_tenant=2, peers_per_tenant=2,
                                  overrides=dict(overrides), defects=list(defects))
    hot = create_app(config)
    return config, hot, TestClient(hot)  # not entered: the lifespan (NATS) does not run


@pytest.fixture
def api(tmp_path):
    return make(tmp_path)


def peer_of(config, tenant="tenant-00"):
    return next(p for p in config.peers.values() if p.tenant_id == tenant)


def node_of(config, tenant="tenant-00"):
    return next(n for n, owner in config.nodes.items() if owner == tenant)


def body(config, peer, node=None, key="k-1", **changes):
    fields = dict(intent_id="i-1", tenant_id=peer.tenant_id, peer_id=peer.peer_id,
                  node_id=node or node_of(config, peer.tenant_id), action="isolate_host",
                  action_class="A1", idempotency_key=key)
    return {**fields, **changes}


def auth(token):
    return {"authorization": f"Bearer {token}"}


def reason(response):
    return response.status_code, response.json()["reason_code"]


def fill_pending(hot):
    hot.state.exo.pending_estimate = hot.state.exo.max_pending


def test_health_and_readiness_without_nats(api) -> None:
    _, hot, client = api
    assert client.get("/healthz").json() == {"ok": True, "api_id": hot.state.exo.api_id}
    assert reason(client.get("/readyz")) == (503, "STACK_UNAVAILABLE")


@pytest.mark.parametrize("headers", [{}, {"authorization": "Basic abc"}, {"authorization": "Bearer "},
                                     {"authorization": "Bearer nope"}])
def test_submit_needs_a_known_bearer_token(api, headers) -> None:
    config, _, client = api
    response = client.post("/v1/intents", json=body(config, peer_of(config)), headers=headers)
    assert reason(response) == (401, "UNAUTHENTICATED")


def test_the_operator_does_not_submit(api) -> None:
    config, _, client = api
    response = client.post("/v1/intents", json=body(config, peer_of(config)), headers=auth(config.operator_token))
    assert reason(response) == (403, "FORBIDDEN")


def test_malformed_oversized_and_invalid_bodies(api) -> None:
    config, _, client = api
    peer = peer_of(config)
    headers = {**auth(peer.token), "content-type": "application/json"}
    assert reason(client.post("/v1/intents", content=b"{nope", headers=headers)) == (400, "INVALID_INTENT")
    big = b'{"x": "' + b"y" * config.bound("http_body_bytes") + b'"}'
    response = client.post("/v1/intents", content=big, headers=headers)
    assert reason(response) == (413, "INVALID_INTENT") and "the bound is" in response.json()["detail"]
    response = client.post("/v1/intents", json=body(config, peer, action_class="A9", extra=1), headers=headers)
    assert reason(response) == (400, "INVALID_INTENT")
    assert "action_class" in response.json()["detail"] and "extra" in response.json()["detail"]


def test_tenancy_is_enforced(api) -> None:
    config, _, client = api
    peer, other = peer_of(config, "tenant-00"), peer_of(config, "tenant-01")
    cases = [
        (body(config, peer, peer_id=other.peer_id), (403, "FORBIDDEN")),
        (body(config, peer, tenant_id="tenant-01"), (403, "TENANT_MISMATCH")),
        (body(config, peer, node="node-9999"), (404, "UNKNOWN_NODE")),
        (body(config, peer, node=node_of(config, "tenant-01")), (403, "TENANT_MISMATCH")),
    ]
    for sent, expected in cases:
        assert reason(client.post("/v1/intents", json=sent, headers=auth(peer.token))) == expected, sent


def test_a_full_queue_is_refused_visibly(api) -> None:
    config, hot, client = api
    fill_pending(hot)
    response = client.post("/v1/intents", json=body(config, peer_of(config)), headers=auth(peer_of(config).token))
    assert reason(response) == (503, "QUEUE_FULL")
    assert response.json()["detail"] == "5 intents pending; bound 5"


def test_the_tenant_bucket_refuses_once_empty(api) -> None:
    config, hot, client = api
    fill_pending(hot)
    peer, other = peer_of(config, "tenant-00"), peer_of(config, "tenant-01")
    answers = [reason(client.post("/v1/intents", json=body(config, peer, key=f"k-{i}"), headers=auth(peer.token)))
               for i in range(5)]
    assert answers == [(503, "QUEUE_FULL")] * 3 + [(429, "RATE_LIMITED_TENANT")] * 2
    # Another tenant has its own bucket.
    assert reason(client.post("/v1/intents", json=body(config, other), headers=auth(other.token)))[1] == "QUEUE_FULL"


def test_refusals_are_counted_per_tenant_and_reason(api) -> None:
    config, hot, client = api
    fill_pending(hot)
    peer = peer_of(config)
    for i in range(4):
        client.post("/v1/intents", json=body(config, peer, key=f"k-{i}"), headers=auth(peer.token))
    client.post("/v1/intents", json=body(config, peer), headers={})
    state = hot.state.exo
    assert state.refusals == {("tenant-00", "QUEUE_FULL"): 3, ("tenant-00", "RATE_LIMITED_TENANT"): 1,
                              ("-", "UNAUTHENTICATED"): 1}
    metrics = client.get("/metrics").text
    assert 'exoarmur_api_refusals_total{tenant="tenant-00",reason="QUEUE_FULL"} 3' in metrics
    assert 'exoarmur_api_refusals_total{tenant="-",reason="UNAUTHENTICATED"} 1' in metrics
    assert "exoarmur_api_pending_bound 5" in metrics and "exoarmur_api_submitted_total 0" in metrics


def test_the_app_and_the_hot_path_answer_alike(api) -> None:
    config, hot, client = api
    fill_pending(hot)
    peer = peer_of(config)
    direct = TestClient(hot.app)  # the same route through FastAPI's middleware stack
    for sent, headers in [(body(config, peer), {}), (body(config, peer, node="node-9999"), auth(peer.token)),
                          (body(config, peer), auth(peer.token))]:
        a = client.post("/v1/intents", json=sent, headers=headers)
        b = direct.post("/v1/intents", json=sent, headers=headers)
        assert (a.status_code, a.json()) == (b.status_code, b.json())


def test_silent_drop_defect_answers_202_without_publishing(tmp_path) -> None:
    config, hot, client = make(tmp_path, defects=["silent-drop"])
    fill_pending(hot)
    peer = peer_of(config)
    response = client.post("/v1/intents", json=body(config, peer), headers=auth(peer.token))
    assert response.status_code == 202
    assert response.json()["accepted"] is True and response.json()["stream_seq"] == 0
    assert hot.state.exo.submitted == 0  # nothing was published (there is no NATS to publish to)


def test_no_rate_limit_defect_never_refuses_for_rate(tmp_path) -> None:
    config, hot, client = make(tmp_path, defects=["no-rate-limit"])
    fill_pending(hot)
    peer = peer_of(config)
    answers = {reason(client.post("/v1/intents", json=body(config, peer, key=f"k-{i}"), headers=auth(peer.token)))
               for i in range(10)}
    assert answers == {(503, "QUEUE_FULL")}


def test_reads_are_scoped_to_the_callers_tenant(api) -> None:
    config, _, client = api
    peer = peer_of(config, "tenant-00")
    for path in ("/v1/intents/k-1", "/v1/audit"):
        assert reason(client.get(path, headers=auth(config.operator_token))) == (400, "INVALID_INTENT")
        assert reason(client.get(path, params={"tenant_id": "tenant-01"}, headers=auth(peer.token))) == (
            403, "TENANT_MISMATCH")
        assert reason(client.get(path)) == (401, "UNAUTHENTICATED")


def test_operator_routes_need_the_operator(api) -> None:
    config, _, client = api
    peer = peer_of(config)
    assert reason(client.get("/v1/killswitches", headers=auth(peer.token))) == (403, "FORBIDDEN")
    assert reason(client.put("/v1/killswitches/global", json={"engaged": True}, headers=auth(peer.token))) == (
        403, "FORBIDDEN")
    assert reason(client.put("/v1/killswitches/tenants/tenant-00", json={"engaged": True},
                             headers=auth(peer.token))) == (403, "FORBIDDEN")
    assert reason(client.put("/v1/killswitches/tenants/nope", json={"engaged": True},
                             headers=auth(peer.token))) == (403, "FORBIDDEN")
    assert reason(client.put("/v1/killswitches/tenants/nope", json={"engaged": True},
                             headers=auth(config.operator_token))) == (404, "NOT_FOUND")
    assert reason(client.post("/v1/approvals", json={}, headers=auth(peer.token))) == (403, "FORBIDDEN")


def test_operator_bodies_are_validated(api) -> None:
    config, _, client = api
    op = auth(config.operator_token)
    assert reason(client.put("/v1/killswitches/global", json={"engaged": "maybe"}, headers=op)) == (
        400, "INVALID_INTENT")
    assert reason(client.put("/v1/killswitches/global", json={"engaged": True, "x": 1}, headers=op)) == (
        400, "INVALID_INTENT")
    response = client.post("/v1/approvals", json={"tenant_id": "tenant-00", "status": "MAYBE"}, headers=op)
    assert reason(response) == (400, "INVALID_INTENT") and "status" in response.json()["detail"]


def test_openapi_lists_every_route(api) -> None:
    _, _, client = api
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/v1/intents", "/v1/intents/{idempotency_key}", "/v1/audit", "/v1/killswitches",
                          "/v1/killswitches/global", "/v1/killswitches/tenants/{tenant_id}", "/v1/approvals",
                          "/healthz", "/readyz", "/metrics"}


def test_openapi_describes_bodies_statuses_and_the_bearer_scheme(api):
    _, _, client = api
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"]["description"]}
    submit = spec["paths"]["/v1/intents"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/IntentV1"}
    assert {"202", "400", "401", "403", "404", "408", "413", "429", "503"} <= set(submit["responses"])
    assert submit["security"] == [{"bearer": []}]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert op["security"] == [{"bearer": []}] and "401" in op["responses"], (method, path)
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")) and status != "422":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    for name in ("IntentV1", "SwitchBody", "ApprovalBody", "ErrorBody"):
        assert name in spec["components"]["schemas"]
