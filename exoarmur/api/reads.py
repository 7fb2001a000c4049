"""Reads: one intent's state by its idempotency key, and a tenant's audit listing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Query, Request
from nats.js.errors import NotFoundError

from exoarmur import natsio
from exoarmur.api.http import authenticate, error, scoped_tenant, state_of
from exoarmur.contracts import ReasonCode, key_digest
from exoarmur.defects import Defect
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline
from exoarmur.seams import Alternatives

MAX_SEQ = 2**63 - 2  # a stream sequence is a uint64 on the wire; past this a query is refused (422)


async def intent_status(idempotency_key: str, request: Request, tenant_id: str | None = None) -> Any:
    # TERMINAL with the audit record once there is one, else ACCEPTED with the intent, else 404.
    state = state_of(request)
    tenant = scoped_tenant(authenticate(state, request), tenant_id)
    digest = key_digest(tenant, idempotency_key)
    for stream, subject, state_name in (
        (natsio.AUDIT_STREAM, natsio.audit_subject(tenant, digest), "TERMINAL"),
        (natsio.INTENTS_STREAM, natsio.intent_subject(tenant, digest), "ACCEPTED"),
    ):
        try:
            msg = await with_deadline(TimeoutCategory.KV_GET, state.js.get_last_msg(stream, subject, direct=True))
        except NotFoundError:
            continue
        return {"state": state_name, "record": orjson.loads(msg.data)}
    return error(404, ReasonCode.NOT_FOUND, "no intent with that key for this tenant")


async def audit_listing(request: Request, tenant_id: str | None = None,
                        after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
                        limit: Annotated[int, Query(ge=1, le=MAX_SEQ)] = 100) -> Any:
    state = state_of(request)
    tenant = scoped_tenant(authenticate(state, request), tenant_id)
    limit = max(1, min(limit, state.config.bound("audit_list_page")))
    records, last_seq = await list_subject(state.js, state.audit_scope.subject_filter(tenant), after_seq, limit)
    return {"tenant_id": tenant, "records": records, "next_after_seq": last_seq}


async def list_subject(js, subject_filter: str, after_seq: int, limit: int) -> tuple[list[dict], int]:
    """Read up to ``limit`` messages matching a filter, in stream order, after a sequence."""
    records: list[dict] = []
    last_seq = after_seq
    next_seq = after_seq + 1
    while len(records) < limit:
        try:
            msg = await with_deadline(
                TimeoutCategory.KV_GET,
                js.get_msg(natsio.AUDIT_STREAM, seq=next_seq, next=True, subject=subject_filter, direct=True),
            )
        except NotFoundError:
            break
        records.append(orjson.loads(msg.data))
        last_seq = msg.seq
        next_seq = msg.seq + 1
    return records, last_seq


# --- the audit-scope seam: which records a tenant's listing reads -------------------------------

def own_tenant(tenant_id: str) -> str:
    return f"exo.audit.{tenant_id}.*"


def every_tenant(_tenant_id: str) -> str:
    """Defect ``tenant-leak``: the listing ignores the caller's tenant."""
    return "exo.audit.*.*"


@dataclass(frozen=True)
class AuditScope:
    subject_filter: Callable[[str], str] = own_tenant


AUDIT_SCOPE_DEFECTS: Alternatives = {Defect.TENANT_LEAK: {"subject_filter": every_tenant}}
