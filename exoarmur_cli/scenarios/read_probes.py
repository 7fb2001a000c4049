"""Tenant isolation over every read surface the api's OpenAPI document declares.

At scenario time the live document is fetched and its read surfaces discovered
(``read_surface.discover``); one intent is submitted in tenant B and settled, so B has a record and
a key to ask for; then a peer of tenant A probes every read surface for B's data
(``read_surface.plan_probes``). The history keeps the discovered operations (``read_surface``) and
every probe with what its answer held (``read_probe``); ``checkers/reads.py`` judges them.
"""

from __future__ import annotations

from dataclasses import asdict

from exoarmur import natsio
from exoarmur_cli.history import EXECUTED_OK
from exoarmur_cli.read_surface import discover, plan_probes
from exoarmur_cli.scenarios.base import Context


async def probe_read_surface(ctx: Context, own: str, other: str) -> None:
    status, spec = await ctx.client.openapi_document()
    if status != 200 or not isinstance(spec, dict):
        ctx.observe("read_surface", error=f"GET /openapi.json answered {status}")
        return
    reads, excluded = discover(spec)
    ctx.observe("read_surface", discovered=[r.path for r in reads], excluded=[asdict(e) for e in excluded],
                openapi_version=spec.get("info", {}).get("version"))
    peer_b, body_b = ctx.body(other)
    await ctx.settle([await ctx.client.submit(peer_b, body_b, tag=EXECUTED_OK)])
    last_seq = (await ctx.js.stream_info(natsio.AUDIT_STREAM)).state.last_seq
    ids_in_other = {"idempotency_key": body_b["idempotency_key"], "intent_id": body_b["intent_id"],
                    "node_id": body_b["node_id"], "peer_id": peer_b}
    tenant_of = {"other": other, "own": own, "unnamed": None}
    caller = ctx.peers_of(own)[0]
    for read in reads:
        for probe in plan_probes(read, own, other, ids_in_other, last_seq=last_seq,
                                 page_limit=ctx.config.bound("audit_list_page")):
            await ctx.client.read_probe(caller, probe, tenant_of[probe.target], markers=(body_b["idempotency_key"],))
