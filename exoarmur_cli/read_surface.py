"""The api's read surface, as its OpenAPI document declares it, and the cross-tenant probes of it. Pure.

The rule for which operations are probed (``discover``): every GET operation that

- takes a tenant-bearing parameter (``tenant_id`` or ``tenant``, in the path or the query), or
- requires a caller (a ``security`` requirement, its own or the document's default), or
- lies under ``/v1/``

is a *tenant read surface*: it may answer with some tenant's data, so a peer of tenant A asks it
for tenant B's. Operator-only reads are in (a peer must be refused; an answer holding another
tenant's data is a leak all the same). Out are the public GETs outside ``/v1/`` that take neither a
caller nor a tenant (health, readiness, metrics, the document itself): "another tenant's" has no
meaning where nobody is asked who they are. A new endpoint is probed without a line changing here.

The probes (``plan_probes``): each read surface, as A, with B's tenant in its tenant parameter, with
A's own, and (query parameters only) without one; path parameters other than the tenant are filled
with identifiers that exist in B (an idempotency key submitted there first). A paginated listing
(``after_seq`` or ``limit`` in its query) is also probed at the pagination edges, one at a time:
``after_seq`` 0, -1, the largest the document allows and the stream's last sequence; ``limit`` 1, the
api's page bound, one past it, and one past the largest the document allows.

What an answer holds (``tenants_mentioned``) is read from the body, not the status: every known
tenant id found in any key or string value of a 2xx body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

TENANT_PARAMS = ("tenant_id", "tenant")
PAGINATION_PARAMS = ("after_seq", "limit")
UINT63_MAX = 2**63 - 1  # the edge used when the document declares no maximum


@dataclass(frozen=True)
class QueryParam:
    name: str
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class ReadOperation:
    """One GET operation of the document that may return tenant data."""

    path: str  # the template, e.g. /v1/intents/{idempotency_key}
    path_params: tuple[str, ...] = ()
    query_params: tuple[QueryParam, ...] = ()

    @property
    def tenant_in_path(self) -> str | None:
        return next((p for p in self.path_params if p in TENANT_PARAMS), None)

    @property
    def tenant_in_query(self) -> str | None:
        return next((q.name for q in self.query_params if q.name in TENANT_PARAMS), None)

    def query(self, name: str) -> QueryParam | None:
        return next((q for q in self.query_params if q.name == name), None)


@dataclass(frozen=True)
class Excluded:
    path: str
    reason: str


@dataclass(frozen=True)
class Probe:
    """One request of a peer of ``own`` asking for ``other``'s data."""

    path: str  # the template, as the document names the operation
    url_path: str  # the template filled in
    query: dict[str, Any] = field(default_factory=dict)
    target: str = "unnamed"  # which tenant the request names: other | own | unnamed
    edge: str = "-"  # the pagination edge probed, e.g. after_seq=last; "-" for none


def _bounds(schema: dict) -> tuple[int | None, int | None]:
    minimum = schema.get("minimum", schema.get("exclusiveMinimum"))
    maximum = schema.get("maximum", schema.get("exclusiveMaximum"))
    for option in schema.get("anyOf", []):  # Optional[int] is anyOf [integer, null]
        minimum = option.get("minimum", minimum)
        maximum = option.get("maximum", maximum)
    return minimum, maximum


def _operation(path: str, op: dict, path_item: dict) -> ReadOperation:
    params = [*path_item.get("parameters", []), *op.get("parameters", [])]
    in_path = tuple(p["name"] for p in params if p.get("in") == "path")
    in_query = tuple(QueryParam(p["name"], *_bounds(p.get("schema", {}))) for p in params if p.get("in") == "query")
    return ReadOperation(path, in_path, in_query)


def discover(spec: dict) -> tuple[list[ReadOperation], list[Excluded]]:
    """The GET operations that are tenant read surfaces (the module's rule), and the others with why."""
    default_security = spec.get("security") or []
    found, excluded = [], []
    for path, item in sorted(spec.get("paths", {}).items()):
        op = item.get("get")
        if op is None:
            continue
        read = _operation(path, op, item)
        secured = bool(op.get("security", default_security))
        tenant_param = read.tenant_in_path or read.tenant_in_query
        if tenant_param or secured or path.startswith("/v1/"):
            found.append(read)
        else:
            excluded.append(Excluded(path, "public: takes neither a caller nor a tenant"))
    return found, excluded


def _pagination_edges(read: ReadOperation, last_seq: int, page_limit: int) -> list[tuple[str, dict]]:
    edges: list[tuple[str, dict]] = []
    after = read.query("after_seq")
    if after is not None:
        edges += [("after_seq=0", {"after_seq": 0}), ("after_seq=-1", {"after_seq": -1}),
                  ("after_seq=max", {"after_seq": after.maximum if after.maximum is not None else UINT63_MAX}),
                  ("after_seq=last", {"after_seq": last_seq})]
    limit = read.query("limit")
    if limit is not None:
        over_max = (limit.maximum if limit.maximum is not None else UINT63_MAX) + 1
        edges += [("limit=1", {"limit": 1}), ("limit=page", {"limit": page_limit}),
                  ("limit=page+1", {"limit": page_limit + 1}), ("limit=over_max", {"limit": over_max})]
    return edges


def plan_probes(read: ReadOperation, own: str, other: str, ids_in_other: dict[str, str], *,
                last_seq: int, page_limit: int) -> list[Probe]:
    """Every probe of one read surface by a peer of ``own`` for ``other``'s data (the module's rule).

    ``ids_in_other`` fills path parameters other than the tenant (by name, else its
    ``idempotency_key``): identifiers that exist in ``other``."""
    tenants = {"other": other, "own": own}
    targets = ["other", "own"] + ([] if read.tenant_in_path else ["unnamed"])
    probes = []
    for target in targets:
        fill = {name: ids_in_other.get(name, ids_in_other.get("idempotency_key", "x")) for name in read.path_params}
        query: dict[str, Any] = {}
        if read.tenant_in_path and target != "unnamed":
            fill[read.tenant_in_path] = tenants[target]
        elif read.tenant_in_query and target != "unnamed":
            query[read.tenant_in_query] = tenants[target]
        elif target != "unnamed":
            continue  # nowhere to name a tenant: the unnamed probe is the only one
        url_path = read.path
        for name, value in fill.items():
            url_path = url_path.replace("{" + name + "}", quote(str(value), safe=""))
        probes.append(Probe(read.path, url_path, query, target))
        probes += [Probe(read.path, url_path, {**query, **edge}, target, label)
                   for label, edge in _pagination_edges(read, last_seq, page_limit)]
    return probes


def tenants_mentioned(body: Any, tenants: list[str]) -> set[str]:
    """Every tenant of ``tenants`` named in any key or string value of ``body`` (as a whole token:
    ``tenant-1`` is not found inside ``tenant-10``)."""
    if not tenants:
        return set()
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(tenants, key=len, reverse=True)))
                         + r")(?![\w-])")
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            found.update(pattern.findall(node))

    walk(body)
    return found
