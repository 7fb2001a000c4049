"""The effector app in-process: at-most-once per Idempotency-Key, faults, a durable ledger."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient

from exoarmur.contracts import EffectorReceipt, sha256_hex
from exoarmur.effector import FaultSettings, create_app, fault_delay_s, fault_errors

BODY = {"tenant_id": "t1", "node_id": "n1", "action": "isolate_host", "parameters": {"x": 1}}
TOKENS = {"cell": "cell-token", "harness": "harness-token"}


class Caller(TestClient):
    """Sends each route the credential it takes (the cells' for effects, the harness's otherwise)."""

    def request(self, method, url, **kwargs):
        headers = dict(kwargs.pop("headers", None) or {})
        caller = "cell" if str(url).startswith("/v1/effects") else "harness"
        headers.setdefault("Authorization", f"Bearer {TOKENS[caller]}")
        return super().request(method, url, headers=headers, **kwargs)


def effector(path, seed: int, defects=()) -> Caller:
    return Caller(create_app(path, seed=seed, tokens=TOKENS, defects=defects))


@pytest.fixture
def client(tmp_path):
    with effector(tmp_path / "l.db", seed=1) as c:
        yield c


def post(client: TestClient, key: str | None, body: dict | None = None):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post("/v1/effects", json=BODY if body is None else body, headers=headers)


def test_healthz(client):
    assert client.get("/healthz").json() == {"ok": True}


def test_same_key_twice_applies_once(client):
    first = post(client, "k-1")
    second = post(client, "k-1")
    assert first.status_code == second.status_code == 200
    r1 = EffectorReceipt.model_validate(first.json())
    r2 = EffectorReceipt.model_validate(second.json())
    assert r1.receipt_id == r2.receipt_id == "rcpt-" + sha256_hex(b"k-1")[:24]
    assert r1.first_applied_at_ms == r2.first_applied_at_ms
    assert (r1.calls, r1.replayed) == (1, False)
    assert (r2.calls, r2.replayed) == (2, True)

    rows = client.get("/v1/ledger").json()
    assert len(rows) == 1
    row = rows[0]
    assert row["idempotency_key"] == "k-1"
    assert row["calls"] == 2
    assert (row["tenant_id"], row["node_id"], row["action"]) == ("t1", "n1", "isolate_host")
    assert row["receipt_id"] == r1.receipt_id
    assert row["last_call_at_ms"] >= row["first_applied_at_ms"]
    assert client.get("/v1/stats").json() == {
        "requests": 2, "applied": 1, "replayed": 1, "faulted": 0, "late": 0,
    }


def test_different_keys_two_rows(client):
    a = post(client, "k-a").json()
    b = post(client, "k-b").json()
    assert a["receipt_id"] != b["receipt_id"]
    assert not a["replayed"] and not b["replayed"]
    rows = client.get("/v1/ledger").json()
    assert sorted(r["idempotency_key"] for r in rows) == ["k-a", "k-b"]
    assert all(r["calls"] == 1 for r in rows)


def test_missing_idempotency_key_is_400(client):
    resp = post(client, None)
    assert resp.status_code == 400
    assert resp.json()["reason_code"] == "INVALID_INTENT"
    assert resp.json()["detail"]
    assert client.get("/v1/ledger").json() == []


def test_invalid_body_is_400(client):
    resp = post(client, "k-bad", {"tenant_id": "t1"})
    assert resp.status_code == 400
    assert resp.json()["reason_code"] == "INVALID_INTENT"
    assert client.get("/v1/ledger").json() == []


def test_down_is_503_and_applies_nothing(client):
    assert client.put("/v1/faults", json={"down": True}).status_code == 200
    assert client.get("/v1/faults").json()["down"] is True
    resp = post(client, "k-down")
    assert resp.status_code == 503
    assert resp.json() == {"reason_code": "EFFECTOR_ERROR", "detail": "down"}
    assert client.get("/v1/ledger").json() == []
    assert client.get("/v1/stats").json()["faulted"] == 1

    client.put("/v1/faults", json={})
    assert post(client, "k-down").json()["calls"] == 1


def test_error_rate_one_is_500_and_applies_nothing(client):
    client.put("/v1/faults", json={"error_rate": 1.0})
    resp = post(client, "k-err")
    assert resp.status_code == 500
    assert resp.json()["reason_code"] == "EFFECTOR_ERROR"
    assert client.get("/v1/ledger").json() == []


def test_reject_rate_one_is_422_and_applies_nothing(client):
    client.put("/v1/faults", json={"reject_rate": 1.0})
    resp = post(client, "k-rejected")
    assert resp.status_code == 422
    assert resp.json() == {"reason_code": "EFFECTOR_ERROR", "detail": "injected rejection"}
    assert client.get("/v1/ledger").json() == []


def test_fault_settings_validation(client):
    assert client.put("/v1/faults", json={"error_rate": 1.5}).status_code == 422
    assert client.put("/v1/faults", json={"bogus": 1}).status_code == 422
    assert client.get("/v1/faults").json() == FaultSettings().model_dump()


def test_latency_and_jitter_are_deterministic_per_seed():
    settings = FaultSettings(latency_ms=10, jitter_ms=50)
    a, b, c = random.Random(7), random.Random(7), random.Random(8)
    seq_a = [fault_delay_s(settings, a) for _ in range(20)]
    seq_b = [fault_delay_s(settings, b) for _ in range(20)]
    seq_c = [fault_delay_s(settings, c) for _ in range(20)]
    assert seq_a == seq_b
    assert seq_a != seq_c
    assert all(0.010 <= d <= 0.060 for d in seq_a)
    assert fault_delay_s(FaultSettings(latency_ms=25), random.Random(0)) == 0.025
    assert fault_delay_s(FaultSettings(), random.Random(0)) == 0.0


def test_error_draws_are_deterministic_per_seed():
    settings = FaultSettings(error_rate=0.5)
    a, b = random.Random(3), random.Random(3)
    assert [fault_errors(settings, a) for _ in range(50)] == [
        fault_errors(settings, b) for _ in range(50)
    ]
    assert not fault_errors(FaultSettings(), random.Random(3))


def test_same_seed_apps_fault_identically(tmp_path):
    """Two apps with the same seed inject errors on the same calls."""
    outcomes = []
    for name in ("a.db", "b.db"):
        with effector(tmp_path / name, seed=5) as c:
            c.put("/v1/faults", json={"error_rate": 0.5})
            outcomes.append([post(c, f"k-{i}").status_code for i in range(30)])
    assert outcomes[0] == outcomes[1]
    assert {200, 500} <= set(outcomes[0])


def test_put_seed_reseeds_the_rng(client):
    runs = []
    for _ in range(2):
        client.put("/v1/faults", json={"error_rate": 0.5, "seed": 11})
        runs.append([post(client, f"s-{i}").status_code for i in range(20)])
    assert runs[0] == runs[1]


def test_ledger_survives_reopen(tmp_path):
    path = tmp_path / "l.db"
    with effector(path, seed=1) as c:
        first = post(c, "k-keep").json()
    with effector(path, seed=1) as c:
        rows = c.get("/v1/ledger").json()
        assert [r["idempotency_key"] for r in rows] == ["k-keep"]
        again = post(c, "k-keep").json()
    assert again["receipt_id"] == first["receipt_id"]
    assert again["first_applied_at_ms"] == first["first_applied_at_ms"]
    assert (again["calls"], again["replayed"]) == (2, True)


def test_an_applied_key_can_be_looked_up_without_applying_again(client):
    """A caller whose answer was lost asks whether its key was applied; asking changes nothing."""
    assert client.get("/v1/effects/t1%3Ak-lost").status_code == 404
    client.put("/v1/faults", json={"lose_response_rate": 1.0})
    lost = post(client, "t1:k-lost")
    assert lost.status_code == 503 and lost.json()["detail"] == "applied, response lost"
    client.put("/v1/faults", json={})
    found = client.get("/v1/effects/t1%3Ak-lost")
    assert found.status_code == 200
    receipt = EffectorReceipt.model_validate(found.json())
    assert receipt.calls == 1 and receipt.idempotency_key == "t1:k-lost"
    assert client.get("/v1/effects/t1%3Ak-lost").json()["calls"] == 1  # a read, not a call
    assert [row["calls"] for row in client.get("/v1/ledger").json()] == [1]


# --- who may call ------------------------------------------------------------------------------

def bare(path) -> TestClient:
    """A client that sends only the headers a test gives it."""
    return TestClient(create_app(path, seed=1, tokens=TOKENS))


@pytest.mark.parametrize("header,status,reason", [
    (None, 401, "UNAUTHENTICATED"),
    ("Bearer nope", 401, "UNAUTHENTICATED"),
    ("Basic cell-token", 401, "UNAUTHENTICATED"),
    ("Bearer harness-token", 403, "FORBIDDEN"),
])
def test_effects_need_the_cells_token_and_nothing_is_applied_without_it(tmp_path, header, status, reason):
    with bare(tmp_path / "l.db") as client:
        headers = {"Idempotency-Key": "k-auth"} | ({"Authorization": header} if header else {})
        refused = client.post("/v1/effects", json=BODY, headers=headers)
        assert (refused.status_code, refused.json()["reason_code"]) == (status, reason)
        read = client.get("/v1/effects/k-auth", headers={"Authorization": header} if header else {})
        assert read.status_code == status
        harness = {"Authorization": "Bearer harness-token"}
        assert client.get("/v1/ledger", headers=harness).json() == []
        assert client.get("/v1/stats", headers=harness).json()["requests"] == 0


@pytest.mark.parametrize("header,status", [(None, 401), ("Bearer nope", 401), ("Bearer cell-token", 403)])
def test_faults_ledger_and_stats_need_the_harness_token_and_nothing_changes(tmp_path, header, status):
    with bare(tmp_path / "l.db") as client:
        headers = {"Authorization": header} if header else {}
        assert client.put("/v1/faults", json={"down": True}, headers=headers).status_code == status
        assert client.get("/v1/faults", headers=headers).status_code == status
        assert client.get("/v1/ledger", headers=headers).status_code == status
        assert client.get("/v1/stats", headers=headers).status_code == status
        faults = client.get("/v1/faults", headers={"Authorization": "Bearer harness-token"}).json()
        assert faults == FaultSettings().model_dump()
        assert client.get("/healthz").status_code == 200  # liveness stays open (compose healthcheck)


def test_effector_no_auth_defect_serves_anyone(tmp_path):
    with TestClient(create_app(tmp_path / "l.db", seed=1, tokens=TOKENS, defects=["effector-no-auth"])) as client:
        assert client.post("/v1/effects", json=BODY, headers={"Idempotency-Key": "k-open"}).status_code == 200
        assert client.put("/v1/faults", json={"down": True}).status_code == 200


def test_an_effector_without_both_tokens_does_not_start(tmp_path):
    with pytest.raises(ValueError, match="harness"):
        create_app(tmp_path / "l.db", seed=1, tokens={"cell": "c"})
