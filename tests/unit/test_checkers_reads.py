"""Cross-tenant reads over the discovered read surface: each metric goes red on hand-made data."""

from __future__ import annotations

from builders import Hist, recorded

from exoarmur_cli.checkers.reads import read_isolation

READS = ["/v1/audit", "/v1/intents/{idempotency_key}"]


def probe(hist: Hist, path: str, *, answer: str = "fail", target: str = "other", status: int = 403,
          tenants: list[str] = (), markers: list[str] = (), edge: str = "-", caller: str = "t1") -> None:
    value = {"method": "GET", "path": path, "url_path": path, "query": {}, "target": target,
             "target_tenant": {"other": "t2", "own": caller}.get(target), "edge": edge, "caller_tenant": caller}
    hist.add("invoke", "read_probe", "p1", "tenancy", **value)
    if answer == "ok":
        hist.add("ok", "read_probe", "p1", "tenancy", **value, status=200, tenants_in_body=list(tenants),
                 markers_seen=list(markers), items=1)
    elif answer == "fail":
        hist.add("fail", "read_probe", "p1", "tenancy", **value, status=status, reason_code="TENANT_MISMATCH")
    else:
        hist.add("info", "read_probe", "p1", "tenancy", **value, status=0, error="TimeoutError")


def clean_probes(discovered: list[str] = READS) -> Hist:
    hist = Hist()
    hist.add("info", "read_surface", "observer", "tenancy", discovered=discovered,
             excluded=[{"path": "/healthz", "reason": "public"}])
    probe(hist, "/v1/audit")  # B named: refused
    probe(hist, "/v1/audit", answer="ok", target="unnamed", tenants=["t1"], edge="limit=1")  # one's own
    probe(hist, "/v1/intents/{idempotency_key}", status=404)  # B's key, unnamed: not found for A
    return hist


def test_every_discovered_read_probed_and_nothing_leaked():
    metrics, evidence = read_isolation(recorded(clean_probes()))
    assert metrics == {"cross_tenant_read_endpoints_discovered": 2, "cross_tenant_read_endpoints_probed": 2,
                       "cross_tenant_read_endpoints_unprobed": 0, "cross_tenant_read_probes": 3,
                       "cross_tenant_reads": 2, "cross_tenant_reads_leaked": 0}
    assert evidence["statuses"] == {"/v1/audit": {"403": 1, "200": 1}, "/v1/intents/{idempotency_key}": {"404": 1}}


def test_a_body_naming_another_tenant_leaks_whatever_the_request_named():
    hist = clean_probes()
    probe(hist, "/v1/audit", answer="ok", target="unnamed", tenants=["t1", "t2"], edge="after_seq=0")
    metrics, evidence = read_isolation(recorded(hist))
    assert metrics["cross_tenant_reads_leaked"] == 1
    assert evidence["leaked"][0]["held"] == ["t2"] and evidence["leaked"][0]["edge"] == "after_seq=0"


def test_a_body_holding_the_other_tenants_key_leaks_even_without_a_tenant_field():
    hist = clean_probes()
    probe(hist, "/v1/intents/{idempotency_key}", answer="ok", target="unnamed", markers=["tenancy-00042"])
    metrics, _ = read_isolation(recorded(hist))
    assert metrics["cross_tenant_reads_leaked"] == 1


def test_a_refusal_is_judged_by_its_body_not_only_its_status():
    hist = clean_probes()
    probe(hist, "/v1/audit", answer="ok", target="other", tenants=["t2"])  # 200 for B's listing
    metrics, _ = read_isolation(recorded(hist))
    assert metrics["cross_tenant_reads_leaked"] == 1


def test_a_discovered_read_never_answered_is_unprobed():
    hist = Hist()
    hist.add("info", "read_surface", "observer", "tenancy", discovered=READS + ["/v1/new"], excluded=[])
    probe(hist, "/v1/audit")
    probe(hist, "/v1/intents/{idempotency_key}", status=404)
    probe(hist, "/v1/new", answer=None)  # no answer: not probed
    metrics, evidence = read_isolation(recorded(hist))
    assert metrics["cross_tenant_read_endpoints_discovered"] == 3
    assert metrics["cross_tenant_read_endpoints_probed"] == 2
    assert metrics["cross_tenant_read_endpoints_unprobed"] == 1
    assert evidence["unprobed"] == ["/v1/new"]


def test_no_document_means_no_measurement_never_zero():
    hist = Hist()
    hist.add("info", "read_surface", "observer", "tenancy", error="GET /openapi.json answered 0")
    metrics, _ = read_isolation(recorded(hist))
    assert metrics["cross_tenant_read_endpoints_discovered"] is None
    assert metrics["cross_tenant_read_endpoints_probed"] is None
    assert metrics["cross_tenant_read_endpoints_unprobed"] is None


def test_probes_of_operations_not_discovered_do_not_count_as_coverage():
    hist = Hist()
    hist.add("info", "read_surface", "observer", "tenancy", discovered=READS, excluded=[])
    probe(hist, "/v1/other")
    metrics, _ = read_isolation(recorded(hist))
    assert metrics["cross_tenant_read_endpoints_probed"] == 0
    assert metrics["cross_tenant_read_endpoints_unprobed"] == 2


# --- audit listings recorded by older harnesses (``read_audit``) --------------------------------

def legacy(hist: Hist, target: str, record_tenants: list[str], answer: str = "ok") -> None:
    hist.add("invoke", "read_audit", "p1", "tenancy", caller_tenant="t1", target_tenant=target)
    if answer == "ok":
        hist.add("ok", "read_audit", "p1", "tenancy", caller_tenant="t1", target_tenant=target, status=200,
                 record_tenants=record_tenants, records=len(record_tenants))
    else:
        hist.add("fail", "read_audit", "p1", "tenancy", caller_tenant="t1", target_tenant=target, status=403,
                 reason_code="TENANT_MISMATCH")


def test_older_audit_reads_are_still_judged():
    hist = Hist()
    legacy(hist, "t2", [], answer="fail")
    legacy(hist, "t1", ["t1"])
    assert read_isolation(recorded(hist))[0]["cross_tenant_reads_leaked"] == 0
    legacy(hist, "t1", ["t1", "t2"])  # another tenant's record in one's own listing
    legacy(hist, "t2", [])  # another tenant's listing answered, even empty
    metrics, _ = read_isolation(recorded(hist))
    assert metrics["cross_tenant_reads"] == 2
    assert metrics["cross_tenant_reads_leaked"] == 2
