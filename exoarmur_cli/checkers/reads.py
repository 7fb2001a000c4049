"""Gate 6 (reads): no read surface answered a peer with another tenant's data, and every read
surface the api's OpenAPI document declared was probed.

Judged from the recorded ``read_surface`` observation (what the live document declared, by the
rule in ``read_surface.py``) and the ``read_probe`` events (what each answer's body held). A probe
leaks when a 2xx body names a tenant other than the caller's, or holds an identifier that exists
only in the other tenant. Audit listings recorded by older harnesses (``read_audit``) are judged too.
"""

from __future__ import annotations

from collections import Counter

from exoarmur_cli.checkers.common import first
from exoarmur_cli.history import FAIL, INFO, OK, Event
from exoarmur_cli.recorded import Recorded


def _probe_leak(event: Event) -> list[str]:
    """What of another tenant's a probe's answer held: its tenants, and its markers."""
    if event.type != OK:
        return []
    value = event.value
    return [t for t in value.get("tenants_in_body", []) if t != value["caller_tenant"]] + value.get("markers_seen", [])


def _legacy_leak(event: Event) -> bool:
    value = event.value
    return event.type == OK and (value["target_tenant"] != value["caller_tenant"]
                                 or any(t != value["caller_tenant"] for t in value["record_tenants"]))


def read_isolation(rec: Recorded) -> tuple[dict, dict]:
    surfaces = [e.value for e in rec.history if e.f == "read_surface" and "discovered" in e.value]
    probes = [e for e in rec.history if e.f == "read_probe" and e.type in (OK, FAIL, INFO)]
    legacy = [e for e in rec.history if e.f == "read_audit" and e.type in (OK, FAIL)]
    leaks = [{"index": e.index, "path": e.value["path"], "query": e.value["query"], "edge": e.value["edge"],
              "target": e.value["target"], "status": e.value["status"], "held": _probe_leak(e)}
             for e in probes if _probe_leak(e)]
    leaks += [{"index": e.index, "path": "/v1/audit", "record_tenants": e.value["record_tenants"]}
              for e in legacy if _legacy_leak(e)]
    answered = [e for e in probes if e.value.get("status")]
    discovered = set(surfaces[-1]["discovered"]) if surfaces else None
    probed = {e.value["path"] for e in answered}
    unprobed = None if discovered is None else sorted(discovered - probed)
    return {
        "cross_tenant_read_endpoints_discovered": None if discovered is None else len(discovered),
        "cross_tenant_read_endpoints_probed": None if discovered is None else len(discovered & probed),
        "cross_tenant_read_endpoints_unprobed": None if unprobed is None else len(unprobed),
        "cross_tenant_read_probes": len(answered),
        "cross_tenant_reads": sum(1 for e in answered if e.value["target"] == "other")
        + sum(1 for e in legacy if e.value["target_tenant"] != e.value["caller_tenant"]),
        "cross_tenant_reads_leaked": len(leaks),
    }, {"leaked": first(leaks), "leaked_reads": first([f"#{leak['index']} {leak['path']}" for leak in leaks]),
        "unprobed": unprobed, "discovered": sorted(discovered or []),
        "excluded": surfaces[-1].get("excluded", []) if surfaces else [],
        "statuses": {path: dict(Counter(str(e.value["status"]) for e in answered if e.value["path"] == path))
                     for path in sorted(probed)}}
