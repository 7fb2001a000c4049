"""The submit path, ``POST /v1/intents``: authenticate, validate, admit or refuse, publish durably.

Every refusal is synchronous and carries a reason code (``http.Refusal``). An admitted intent
is published with ``Nats-Msg-Id`` = tenant:idempotency key, so a resubmission inside the
duplicate window is the same intent. This route is served around FastAPI's middleware
(``exoarmur.hotpath``): keep it lean.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from exoarmur import natsio
from exoarmur.api.http import OPERATOR, Refusal, accepted, authenticate, error, parse, read_json, state_of
from exoarmur.contracts import IntentV1, ReasonCode, SubmitResponse
from exoarmur.defects import Defect
from exoarmur.errors import DeadlineExceeded
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline


async def submit_intent(request: Request) -> Any:
    state = state_of(request)
    config = state.config
    caller = authenticate(state, request)
    if caller == OPERATOR:
        raise Refusal(403, ReasonCode.FORBIDDEN, "intents are submitted by peers, not the operator")
    tenant = caller.tenant_id
    intent: IntentV1 = parse(IntentV1, await read_json(state, request, tenant), tenant)
    if intent.peer_id != caller.peer_id:
        raise Refusal(403, ReasonCode.FORBIDDEN, "peer_id is not the caller's", tenant)
    if intent.tenant_id != tenant:
        raise Refusal(403, ReasonCode.TENANT_MISMATCH, "intent names another tenant", tenant)
    node_tenant = config.nodes.get(intent.node_id)
    if node_tenant is None:
        raise Refusal(404, ReasonCode.UNKNOWN_NODE, f"unknown node {intent.node_id}", tenant)
    if node_tenant != tenant:
        raise Refusal(403, ReasonCode.TENANT_MISMATCH, "node belongs to another tenant", tenant)
    limited = None if config.has_defect(Defect.NO_RATE_LIMIT) else state.limiter.admit(tenant, time.monotonic())
    if limited is not None:
        raise Refusal(429, limited, "rate limit", tenant)
    if state.pending_estimate >= state.max_pending:
        if config.has_defect(Defect.SILENT_DROP):  # "accepted", never published
            return accepted(SubmitResponse(intent_id=intent.intent_id, tenant_id=tenant, accepted=True,
                                           duplicate=False, idempotency_key=intent.idempotency_key, stream_seq=0))
        raise Refusal(503, ReasonCode.QUEUE_FULL, f"{state.pending_estimate} intents pending; bound {state.max_pending}", tenant)
    try:
        ack = await with_deadline(
            TimeoutCategory.NATS_PUBLISH,
            state.js.publish(
                natsio.intent_subject(tenant, intent.digest()),
                intent.canonical(),
                headers=None if config.has_defect(Defect.NO_IDEMPOTENCY)
                else {"Nats-Msg-Id": natsio.msg_id(tenant, intent.idempotency_key)},
            ),
        )
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
