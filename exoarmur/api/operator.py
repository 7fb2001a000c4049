"""Operator routes: kill switches (read and set) and approvals of A2/A3 intents."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exoarmur import natsio
from exoarmur.api.http import error, parse, read_json, require_operator, state_of
from exoarmur.api.state import ApiState
from exoarmur.clock import now_ms
from exoarmur.contracts import ID_PATTERN, ApprovalStatus, ApprovalV1, KillSwitchState, ReasonCode, key_digest
from exoarmur.errors import ExoError
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline

MAX_APPROVAL_TTL_S = 30 * 86400.0


class SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engaged: bool
    reason: str = Field(default="", max_length=256)


class ApprovalBody(BaseModel):
    """An approval as the operator grants it: the fields of ``ApprovalV1``, with a time to live."""

    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(pattern=ID_PATTERN)
    idempotency_key: str = Field(min_length=1, max_length=128)
    intent_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    status: ApprovalStatus
    ttl_s: float = Field(default=300.0, gt=0, le=MAX_APPROVAL_TTL_S)


async def get_switches(request: Request) -> Any:
    """Each switch as stored; one that cannot be read says so (cells deny while it is)."""
    state = state_of(request)
    require_operator(state, request)
    out = {}
    for key in [natsio.GLOBAL_SWITCH_KEY] + [natsio.tenant_switch_key(t) for t in state.config.tenants]:
        try:
            raw, revision = await natsio.read_key(state.js, natsio.SAFETY_BUCKET, key, TimeoutCategory.KV_GET)
            switch = KillSwitchState.model_validate_json(raw) if raw is not None else KillSwitchState(engaged=False)
            out[key] = {"readable": True, "revision": revision, **switch.model_dump()}
        except (ExoError, ValidationError) as exc:
            out[key] = {"readable": False, "reason_code": ReasonCode.SAFETY_STATE_UNAVAILABLE.value,
                        "detail": type(exc).__name__}
    return out


async def _put_switch(state: ApiState, key: str, request: Request) -> Any:
    require_operator(state, request)
    body: SwitchBody = parse(SwitchBody, await read_json(state, request), "-")
    kv = await state.js.key_value(natsio.SAFETY_BUCKET)
    value = KillSwitchState(engaged=body.engaged, reason=body.reason)
    revision = await with_deadline(TimeoutCategory.KV_PUT, kv.put(key, value.canonical()))
    return {"key": key, "revision": revision, "engaged": body.engaged}


async def set_global_switch(request: Request) -> Any:
    return await _put_switch(state_of(request), natsio.GLOBAL_SWITCH_KEY, request)


async def set_tenant_switch(tenant_id: str, request: Request) -> Any:
    state = state_of(request)
    if tenant_id not in state.config.tenants:
        require_operator(state, request)
        return error(404, ReasonCode.NOT_FOUND, f"unknown tenant {tenant_id}")
    return await _put_switch(state, natsio.tenant_switch_key(tenant_id), request)


async def grant_approval(request: Request) -> Any:
    state = state_of(request)
    require_operator(state, request)
    body: ApprovalBody = parse(ApprovalBody, await read_json(state, request), "-")
    if body.tenant_id not in state.config.tenants:
        return error(404, ReasonCode.NOT_FOUND, f"unknown tenant {body.tenant_id}")
    granted_at_ms = now_ms()
    approval = ApprovalV1(
        tenant_id=body.tenant_id, idempotency_key=body.idempotency_key, intent_hash=body.intent_hash,
        status=body.status, expires_at_ms=granted_at_ms + int(body.ttl_s * 1000), granted_at_ms=granted_at_ms,
    )
    kv = await state.js.key_value(natsio.APPROVALS_BUCKET)
    key = natsio.approval_key(body.tenant_id, key_digest(body.tenant_id, body.idempotency_key))
    revision = await with_deadline(TimeoutCategory.APPROVAL_GRANT, kv.put(key, approval.canonical()))
    return {"revision": revision, "approval": approval.model_dump(mode="json")}
