"""The submit path, ``POST /v1/intents``: authenticate, validate, admit or refuse, publish durably.

Every refusal is synchronous and carries a reason code (``http.Refusal``). Admission is two
checks, the token buckets (per tenant, then global) and the bound on pending work; an admitted
intent goes to the ``Publisher``. This route is served around FastAPI's middleware
(``exoarmur.hotpath``): keep it lean.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from exoarmur.api.http import OPERATOR, Refusal, accepted, authenticate, error, parse, read_json, state_of
from exoarmur.api.state import ApiState
from exoarmur.contracts import IntentV1, ReasonCode, SubmitResponse
from exoarmur.defects import Defect
from exoarmur.errors import DeadlineExceeded
from exoarmur.seams import Alternatives


async def submit_intent(request: Request) -> Any:
    state = state_of(request)
    caller = authenticate(state, request)
    if caller == OPERATOR:
        raise Refusal(403, ReasonCode.FORBIDDEN, "intents are submitted by peers, not the operator")
    tenant = caller.tenant_id
    intent: IntentV1 = parse(IntentV1, await read_json(state, request, tenant), tenant)
    if intent.peer_id != caller.peer_id:
        raise Refusal(403, ReasonCode.FORBIDDEN, "peer_id is not the caller's", tenant)
    if intent.tenant_id != tenant:
        raise Refusal(403, ReasonCode.TENANT_MISMATCH, "intent names another tenant", tenant)
    node_tenant = state.config.nodes.get(intent.node_id)
    if node_tenant is None:
        raise Refusal(404, ReasonCode.UNKNOWN_NODE, f"unknown node {intent.node_id}", tenant)
    if node_tenant != tenant:
        raise Refusal(403, ReasonCode.TENANT_MISMATCH, "node belongs to another tenant", tenant)
    state.admission.rate_limit(state, tenant)
    if state.pending_estimate >= state.max_pending:
        return state.admission.when_full(state, intent)
    try:
        ack = await state.publisher.publish(state.js, intent)
    except DeadlineExceeded:
        raise
    except Exception as exc:
        return error(503, ReasonCode.STACK_UNAVAILABLE, f"publish failed: {type(exc).__name__}")
    state.pending_estimate += 0 if ack.duplicate else 1
    state.submitted += 1
    state.duplicates += 1 if ack.duplicate else 0
    return accepted(SubmitResponse(
        intent_id=intent.intent_id, tenant_id=tenant, idempotency_key=intent.idempotency_key,
        accepted=True, duplicate=bool(ack.duplicate), stream_seq=ack.seq,
    ))


# --- the admission seam: production checks, and the defects that break them ---------------------

def token_buckets(state: ApiState, tenant: str) -> None:
    """Refuse (429) when the tenant's bucket or the global one is empty."""
    limited = state.limiter.admit(tenant, time.monotonic())
    if limited is not None:
        raise Refusal(429, limited, "rate limit", tenant)


def no_rate_limit(_state: ApiState, _tenant: str) -> None:
    """Defect ``no-rate-limit``: the token buckets are never consulted."""


def refuse_queue_full(state: ApiState, intent: IntentV1) -> Response:
    """The pending-work bound is reached: refuse visibly (503 QUEUE_FULL), never drop."""
    raise Refusal(503, ReasonCode.QUEUE_FULL, f"{state.pending_estimate} intents pending; bound {state.max_pending}",
                  intent.tenant_id)


def silent_drop(_state: ApiState, intent: IntentV1) -> Response:
    """Defect ``silent-drop``: a full queue answers 202 "accepted" and the intent is never published."""
    return accepted(SubmitResponse(intent_id=intent.intent_id, tenant_id=intent.tenant_id, accepted=True,
                                   duplicate=False, idempotency_key=intent.idempotency_key, stream_seq=0))


@dataclass(frozen=True)
class Admission:
    """What stands between a valid intent and its publish."""

    rate_limit: Callable[[ApiState, str], None] = token_buckets
    when_full: Callable[[ApiState, IntentV1], Response] = refuse_queue_full


ADMISSION_DEFECTS: Alternatives = {
    Defect.NO_RATE_LIMIT: {"rate_limit": no_rate_limit},
    Defect.SILENT_DROP: {"when_full": silent_drop},
}
