"""Which GET operations of an OpenAPI document are tenant read surfaces, the probes planned for
each, and which tenants a body names."""

from __future__ import annotations

from fastapi.testclient import TestClient

from exoarmur import stackconfig
from exoarmur.api import create_app
from exoarmur_cli.read_surface import QueryParam, ReadOperation, discover, plan_probes, tenants_mentioned

SECURED = [{"bearer": []}]


def spec(paths: dict, security: list | None = None) -> dict:
    return {"openapi": "3.1.0", "paths": paths, **({"security": security} if security is not None else {})}


def param(name: str, where: str = "query", **schema) -> dict:
    return {"name": name, "in": where, "schema": {"type": "integer", **schema}}


def test_the_rule_takes_tenant_parameters_callers_and_v1_and_leaves_public_health_out():
    found, excluded = discover(spec({
        "/public/by-tenant": {"get": {"parameters": [param("tenant_id")]}},
        "/things/{tenant}": {"get": {"parameters": [param("tenant", "path")]}},
        "/secured": {"get": {"security": SECURED}},
        "/v1/open": {"get": {}},
        "/v1/intents": {"post": {"security": SECURED}},  # not a GET
        "/healthz": {"get": {}},
    }))
    assert [r.path for r in found] == ["/public/by-tenant", "/secured", "/things/{tenant}", "/v1/open"]
    assert [e.path for e in excluded] == ["/healthz"]


def test_a_document_wide_security_requirement_counts():
    found, _ = discover(spec({"/status": {"get": {}}}, security=SECURED))
    assert [r.path for r in found] == ["/status"]


def test_the_live_api_document_yields_its_three_reads(tmp_path):
    config = stackconfig.generate(tmp_path / "stack", tenants=2, nodes_per_tenant=2, peers_per_tenant=2)
    found, excluded = discover(TestClient(create_app(config)).get("/openapi.json").json())
    assert [r.path for r in found] == ["/v1/audit", "/v1/intents/{idempotency_key}", "/v1/killswitches"]
    assert {e.path for e in excluded} == {"/healthz", "/readyz", "/metrics"}
    listing = found[0]
    assert listing.tenant_in_query == "tenant_id" and listing.query("after_seq").minimum == 0
    assert listing.query("limit").maximum == 2**63 - 2


LISTING = ReadOperation("/v1/audit", (), (QueryParam("tenant_id"), QueryParam("after_seq", 0, 100),
                                          QueryParam("limit", 1, 1000)))


def test_a_listing_is_probed_with_each_tenant_naming_and_every_pagination_edge():
    probes = plan_probes(LISTING, "A", "B", {"idempotency_key": "kb"}, last_seq=42, page_limit=500)
    assert [p.target for p in probes].count("other") == [p.target for p in probes].count("unnamed") == 9
    named_b = [p for p in probes if p.target == "other"]
    assert all(p.query["tenant_id"] == "B" for p in named_b)
    assert {p.edge: {k: v for k, v in p.query.items() if k != "tenant_id"} for p in named_b} == {
        "-": {}, "after_seq=0": {"after_seq": 0}, "after_seq=-1": {"after_seq": -1},
        "after_seq=max": {"after_seq": 100}, "after_seq=last": {"after_seq": 42},
        "limit=1": {"limit": 1}, "limit=page": {"limit": 500}, "limit=page+1": {"limit": 501},
        "limit=over_max": {"limit": 1001}}
    assert all("tenant_id" not in p.query for p in probes if p.target == "unnamed")


def test_a_status_by_key_is_asked_for_the_other_tenants_key():
    status = ReadOperation("/v1/intents/{idempotency_key}", ("idempotency_key",), (QueryParam("tenant_id"),))
    probes = plan_probes(status, "A", "B", {"idempotency_key": "key in/B"}, last_seq=0, page_limit=10)
    assert [(p.url_path, p.query, p.target) for p in probes] == [
        ("/v1/intents/key%20in%2FB", {"tenant_id": "B"}, "other"),
        ("/v1/intents/key%20in%2FB", {"tenant_id": "A"}, "own"),
        ("/v1/intents/key%20in%2FB", {}, "unnamed")]


def test_a_tenant_in_the_path_is_filled_and_never_left_out():
    read = ReadOperation("/v1/tenants/{tenant_id}/nodes/{node_id}", ("tenant_id", "node_id"))
    probes = plan_probes(read, "A", "B", {"idempotency_key": "kb", "node_id": "nb"}, last_seq=0, page_limit=10)
    assert [p.url_path for p in probes] == ["/v1/tenants/B/nodes/nb", "/v1/tenants/A/nodes/nb"]


def test_an_operation_without_a_tenant_parameter_gets_one_probe():
    assert [p.target for p in plan_probes(ReadOperation("/v1/killswitches"), "A", "B", {}, last_seq=0,
                                          page_limit=1)] == ["unnamed"]


def test_tenants_are_found_anywhere_in_a_body_as_whole_tokens():
    tenants = ["tenant-1", "tenant-10", "tenant-2"]
    body = {"tenant_id": "tenant-1", "records": [{"subject": "exo.audit.tenant-10.abc"}],
            "switches": {"tenant.tenant-2": {"engaged": False}}, "note": "tenant-100 is not a tenant"}
    assert tenants_mentioned(body, tenants) == {"tenant-1", "tenant-10", "tenant-2"}
    assert tenants_mentioned({"records": []}, tenants) == set()
    assert tenants_mentioned(None, tenants) == set()
