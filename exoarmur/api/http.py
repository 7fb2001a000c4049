"""The api's request plumbing: who is calling, reading a bounded JSON body, and how errors
become answers (one table, used by the app and by the hot path alike)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from exoarmur.api.state import ApiState
from exoarmur.contracts import ReasonCode, SubmitResponse
from exoarmur.errors import DeadlineExceeded, ExoError
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline
from exoarmur.stackconfig import Peer

OPERATOR = "operator"


class Refusal(ExoError):
    """A request answered with an error status and a reason code."""

    def __init__(self, status: int, reason: ReasonCode, detail: str, tenant_id: str = "-") -> None:
        super().__init__(detail, reason)
        self.status = status
        self.tenant_id = tenant_id


def state_of(request: Request) -> ApiState:
    return request.app.state.exo


def accepted(body: SubmitResponse) -> Response:
    """202 with the body already serialised: returning a Response skips FastAPI's response-model
    pass, which on this hot path cost more than the durable publish itself (profiled)."""
    return Response(body.canonical(), status_code=202, media_type="application/json")


def error(status: int, reason: ReasonCode, detail: str) -> JSONResponse:
    return JSONResponse({"reason_code": reason.value, "detail": detail}, status_code=status)


async def on_refusal(request: Request, exc: Refusal) -> Response:
    """A refusal is counted per (tenant, reason) — the counters are flushed to EVENTS — and answered."""
    state_of(request).count_refusal(exc.tenant_id, exc.reason_code)
    response = error(exc.status, exc.reason_code, str(exc))
    if exc.status == 408:  # the rest of a late body would be read as the next request: close
        response.headers["connection"] = "close"
    return response


async def on_deadline(_request: Request, exc: DeadlineExceeded) -> Response:
    return error(503, exc.reason_code, str(exc))


ERRORS = {Refusal: on_refusal, DeadlineExceeded: on_deadline}


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(state: ApiState, request: Request) -> Peer | str:
    """The calling peer, or ``OPERATOR``; a missing or unknown token is refused (401)."""
    token = _bearer(request)
    if token is None:
        raise Refusal(401, ReasonCode.UNAUTHENTICATED, "missing bearer token")
    if token == state.config.operator_token:
        return OPERATOR
    peer = state.peers_by_token.get(token)
    if peer is None:
        raise Refusal(401, ReasonCode.UNAUTHENTICATED, "unknown bearer token")
    return peer


def require_operator(state: ApiState, request: Request) -> None:
    if authenticate(state, request) != OPERATOR:
        raise Refusal(403, ReasonCode.FORBIDDEN, "operator token required")


def scoped_tenant(caller: Peer | str, tenant_id: str | None) -> str:
    """The tenant a read is about: a peer reads only its own, the operator must name one."""
    if caller == OPERATOR:
        if tenant_id is None:
            raise Refusal(400, ReasonCode.INVALID_INTENT, "operator must name tenant_id")
        return tenant_id
    if tenant_id is not None and tenant_id != caller.tenant_id:
        raise Refusal(403, ReasonCode.TENANT_MISMATCH, "cannot read another tenant", caller.tenant_id)
    return caller.tenant_id


async def read_json(state: ApiState, request: Request, tenant_id: str = "-") -> Any:
    """The JSON body, read within the API_REQUEST deadline (a trickled body is 408) and the size bound."""
    try:
        body = await with_deadline(TimeoutCategory.API_REQUEST, request.body())
    except DeadlineExceeded:
        raise Refusal(408, ReasonCode.TIMEOUT_API_REQUEST, "the body did not arrive in time", tenant_id) from None
    limit = state.config.bound("http_body_bytes")
    if len(body) > limit:
        raise Refusal(413, ReasonCode.INVALID_INTENT, f"body is {len(body)} bytes; the bound is {limit}", tenant_id)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refusal(400, ReasonCode.INVALID_INTENT, f"malformed JSON: {exc}", tenant_id) from None


def parse(model: type[BaseModel], data: Any, tenant_id: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise Refusal(400, ReasonCode.INVALID_INTENT, problems, tenant_id) from None
