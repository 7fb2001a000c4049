"""The api process: HTTP ingress. Authenticate, validate, admit or refuse, publish durably.

Every refusal is synchronous, carries a reason code, and is counted per (tenant, reason);
the counters are flushed to the EVENTS stream on an interval so overload cannot flood the
audit log. An admitted intent is published with ``Nats-Msg-Id`` = tenant:idempotency key, so a
resubmission inside the duplicate window is the same intent.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, ValidationError

from exoarmur import natsio
from exoarmur.contracts import (
    ApprovalStatus,
    ApprovalV1,
    IntentV1,
    KillSwitchState,
    ReasonCode,
    RefusalCounterV1,
    SubmitResponse,
    key_digest,
)
from exoarmur.defects import Defect
from exoarmur.errors import DeadlineExceeded, ExoError
from exoarmur.hotpath import HotPath
from exoarmur.metrics import process_rss_bytes
from exoarmur.reliability.rate_limit import RATE_LIMITS, RateLimitPolicy, TenantLimiter
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline
from exoarmur.stackconfig import Peer, StackConfig

OPERATOR = "operator"
PENDING_REFRESH_S = 0.05  # how stale the pending-work estimate may be


class Refusal(ExoError):
    """A request answered with an error status and a reason code."""

    def __init__(self, status: int, reason: ReasonCode, detail: str, tenant_id: str = "-") -> None:
        super().__init__(detail, reason)
        self.status = status
        self.tenant_id = tenant_id


class SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engaged: bool
    reason: str = ""


class ApprovalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str
    idempotency_key: str
    intent_hash: str
    status: ApprovalStatus
    ttl_s: float = 300.0


def _rate_policy(name: str, config: StackConfig) -> RateLimitPolicy:
    """The table's policy, unless this stack's config overrides it (``rate_<name>_per_s/_burst``)."""
    base = RATE_LIMITS[name]
    return replace(
        base,
        rate_per_s=float(config.overrides.get(f"rate_{name}_per_s", base.rate_per_s)),
        burst=int(config.overrides.get(f"rate_{name}_burst", base.burst)),
    )


class ApiState:
    """What one api process holds: its NATS connection, limiter and refusal counters."""

    def __init__(self, config: StackConfig, nats_url: str | None) -> None:
        self.config = config
        self.nats_url = nats_url or config.nats_url
        self.api_id = f"api-{os.getpid()}"
        self.peers_by_token = config.peer_by_token()
        self.limiter = TenantLimiter(_rate_policy("tenant", config), _rate_policy("global", config))
        self.max_pending = config.bound("pending_intents")
        self.pending_estimate = 0
        self.refusals: dict[tuple[str, ReasonCode], int] = {}
        self.refusals_total: dict[tuple[str, str], int] = {}
        self.window_start_ms = _now_ms()
        self.flush_seq = 0
        self.submitted = 0
        self.duplicates = 0
        self.nc = None
        self.js = None

    def refuse(self, refusal: Refusal) -> JSONResponse:
        key = (refusal.tenant_id, refusal.reason_code)
        self.refusals[key] = self.refusals.get(key, 0) + 1
        total_key = (refusal.tenant_id, refusal.reason_code.value)
        self.refusals_total[total_key] = self.refusals_total.get(total_key, 0) + 1
        return _error(refusal.status, refusal.reason_code, str(refusal))

    async def flush_refusals(self) -> None:
        if not self.refusals or self.js is None:
            return
        batch, self.refusals = self.refusals, {}
        end_ms = _now_ms()
        self.flush_seq += 1
        for (tenant_id, reason), count in sorted(batch.items()):
            record = RefusalCounterV1(
                api_id=self.api_id, tenant_id=tenant_id, reason_code=reason, count=count,
                window_start_ms=self.window_start_ms, window_end_ms=end_ms,
            )
            try:
                await with_deadline(
                    TimeoutCategory.NATS_PUBLISH,
                    self.js.publish(
                        f"exo.events.refusals.{tenant_id}",
                        record.canonical(),
                        headers={"Nats-Msg-Id": f"{self.api_id}:{self.flush_seq}:{tenant_id}:{reason.value}"},
                    ),
                )
            except Exception:  # keep the count: it goes out with the next flush
                self.refusals[(tenant_id, reason)] = self.refusals.get((tenant_id, reason), 0) + count
        self.window_start_ms = end_ms

    async def refresh_pending(self) -> None:
        info = await with_deadline(
            TimeoutCategory.NATS_SUBSCRIBE,
            self.js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER),
        )
        self.pending_estimate = info.num_pending + info.num_ack_pending


def _now_ms() -> int:
    return int(time.time() * 1000)


def _accepted(body: SubmitResponse) -> Response:
    """202 with the body already serialised: returning a Response skips FastAPI's response-model
    pass, which on this hot path cost more than the durable publish itself (profiled)."""
    return Response(body.canonical(), status_code=202, media_type="application/json")


def _error(status: int, reason: ReasonCode, detail: str) -> JSONResponse:
    return JSONResponse({"reason_code": reason.value, "detail": detail}, status_code=status)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_app(config: StackConfig, nats_url: str | None = None) -> HotPath:
    state = ApiState(config, nats_url)

    async def background() -> None:
        flush_s = config.bound("refusal_flush_interval_ms") / 1000
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(PENDING_REFRESH_S)
            try:
                await state.refresh_pending()
            except Exception:  # NATS away: keep the last estimate, the publish path fails closed
                pass
            if time.monotonic() - last_flush >= flush_s:
                last_flush = time.monotonic()
                await state.flush_refusals()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        state.nc = await natsio.connect(state.nats_url, state.api_id)
        state.js = state.nc.jetstream()
        await natsio.provision(state.js, memory_storage=config.has_defect(Defect.MEMORY_STORAGE))
        task = asyncio.create_task(background())
        try:
            yield
        finally:
            task.cancel()
            await state.flush_refusals()
            await state.nc.drain()

    app = FastAPI(title="ExoArmur API", version="1.0", lifespan=lifespan)
    app.state.exo = state

    # How errors become answers: one table, used by the app and by the hot path alike.
    errors = {
        Refusal: state.refuse,
        DeadlineExceeded: lambda exc: _error(503, exc.reason_code, str(exc)),
    }
    for kind, to_response in errors.items():
        async def handler(_request: Request, exc: Exception, to_response=to_response) -> Response:
            return to_response(exc)

        app.add_exception_handler(kind, handler)

    def authenticate(request: Request) -> Peer | str:
        token = _bearer(request)
        if token is None:
            raise Refusal(401, ReasonCode.UNAUTHENTICATED, "missing bearer token")
        if token == config.operator_token:
            return OPERATOR
        peer = state.peers_by_token.get(token)
        if peer is None:
            raise Refusal(401, ReasonCode.UNAUTHENTICATED, "unknown bearer token")
        return peer

    def require_operator(request: Request) -> None:
        if authenticate(request) != OPERATOR:
            raise Refusal(403, ReasonCode.FORBIDDEN, "operator token required")

    async def read_json(request: Request, tenant_id: str = "-") -> Any:
        body = await request.body()
        limit = config.bound("http_body_bytes")
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

    @app.post("/v1/intents", status_code=202, response_model=SubmitResponse)
    async def submit_intent(request: Request) -> Any:
        caller = authenticate(request)
        if caller == OPERATOR:
            raise Refusal(403, ReasonCode.FORBIDDEN, "intents are submitted by peers, not the operator")
        tenant = caller.tenant_id
        intent: IntentV1 = parse(IntentV1, await read_json(request, tenant), tenant)
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
                return _accepted(SubmitResponse(intent_id=intent.intent_id, tenant_id=tenant, accepted=True,
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
            return _error(503, ReasonCode.STACK_UNAVAILABLE, f"publish failed: {type(exc).__name__}")
        state.pending_estimate += 0 if ack.duplicate else 1
        state.submitted += 1
        state.duplicates += 1 if ack.duplicate else 0
        return _accepted(SubmitResponse(
            intent_id=intent.intent_id, tenant_id=tenant, idempotency_key=intent.idempotency_key,
            accepted=True, duplicate=bool(ack.duplicate), stream_seq=ack.seq,
        ))

    def scoped_tenant(caller: Peer | str, tenant_id: str | None) -> str:
        if caller == OPERATOR:
            if tenant_id is None:
                raise Refusal(400, ReasonCode.INVALID_INTENT, "operator must name tenant_id")
            return tenant_id
        if tenant_id is not None and tenant_id != caller.tenant_id:
            raise Refusal(403, ReasonCode.TENANT_MISMATCH, "cannot read another tenant", caller.tenant_id)
        return caller.tenant_id

    @app.get("/v1/intents/{idempotency_key}")
    async def intent_status(idempotency_key: str, request: Request, tenant_id: str | None = None) -> Any:
        tenant = scoped_tenant(authenticate(request), tenant_id)
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
        return _error(404, ReasonCode.NOT_FOUND, "no intent with that key for this tenant")

    @app.get("/v1/audit")
    async def audit_listing(request: Request, tenant_id: str | None = None, after_seq: int = 0, limit: int = 100) -> Any:
        tenant = scoped_tenant(authenticate(request), tenant_id)
        limit = max(1, min(limit, config.bound("audit_list_page")))
        scope = "*" if config.has_defect(Defect.TENANT_LEAK) else tenant
        records, last_seq = await list_subject(state.js, f"exo.audit.{scope}.*", after_seq, limit)
        return {"tenant_id": tenant, "records": records, "next_after_seq": last_seq}

    @app.get("/v1/killswitches")
    async def get_switches(request: Request) -> Any:
        """Each switch as stored; one that cannot be read says so (cells deny while it is)."""
        require_operator(request)
        out = {}
        for key in [natsio.GLOBAL_SWITCH_KEY] + [natsio.tenant_switch_key(t) for t in config.tenants]:
            try:
                raw, revision = await natsio.read_key(state.js, natsio.SAFETY_BUCKET, key, TimeoutCategory.KV_GET)
                switch = KillSwitchState.model_validate_json(raw) if raw is not None else KillSwitchState(engaged=False)
                out[key] = {"readable": True, "revision": revision, **switch.model_dump()}
            except (ExoError, ValidationError) as exc:
                out[key] = {"readable": False, "reason_code": ReasonCode.SAFETY_STATE_UNAVAILABLE.value,
                            "detail": type(exc).__name__}
        return out

    async def put_switch(key: str, request: Request) -> Any:
        require_operator(request)
        body: SwitchBody = parse(SwitchBody, await read_json(request), "-")
        kv = await state.js.key_value(natsio.SAFETY_BUCKET)
        value = KillSwitchState(engaged=body.engaged, reason=body.reason)
        revision = await with_deadline(TimeoutCategory.KV_PUT, kv.put(key, value.canonical()))
        return {"key": key, "revision": revision, "engaged": body.engaged}

    @app.put("/v1/killswitches/global")
    async def set_global_switch(request: Request) -> Any:
        return await put_switch(natsio.GLOBAL_SWITCH_KEY, request)

    @app.put("/v1/killswitches/tenants/{tenant_id}")
    async def set_tenant_switch(tenant_id: str, request: Request) -> Any:
        if tenant_id not in config.tenants:
            require_operator(request)
            return _error(404, ReasonCode.NOT_FOUND, f"unknown tenant {tenant_id}")
        return await put_switch(natsio.tenant_switch_key(tenant_id), request)

    @app.post("/v1/approvals")
    async def grant_approval(request: Request) -> Any:
        require_operator(request)
        body: ApprovalBody = parse(ApprovalBody, await read_json(request), "-")
        approval = ApprovalV1(
            tenant_id=body.tenant_id, idempotency_key=body.idempotency_key, intent_hash=body.intent_hash,
            status=body.status, expires_at_ms=_now_ms() + int(body.ttl_s * 1000),
        )
        kv = await state.js.key_value(natsio.APPROVALS_BUCKET)
        key = natsio.approval_key(body.tenant_id, key_digest(body.tenant_id, body.idempotency_key))
        revision = await with_deadline(TimeoutCategory.APPROVAL_GRANT, kv.put(key, approval.canonical()))
        return {"revision": revision, "approval": approval.model_dump(mode="json")}

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"ok": True, "api_id": state.api_id}

    @app.get("/readyz")
    async def readyz() -> Any:
        if state.nc is None or not state.nc.is_connected:
            return _error(503, ReasonCode.STACK_UNAVAILABLE, "not connected to NATS")
        try:
            await with_deadline(TimeoutCategory.NATS_SUBSCRIBE, state.js.stream_info(natsio.INTENTS_STREAM))
        except Exception as exc:
            return _error(503, ReasonCode.STACK_UNAVAILABLE, f"intent stream unavailable: {type(exc).__name__}")
        return {"ready": True}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        lines = [
            f"exoarmur_api_submitted_total {state.submitted}",
            f"exoarmur_api_duplicates_total {state.duplicates}",
            f"exoarmur_api_pending_intents {state.pending_estimate}",
            f"exoarmur_api_pending_bound {state.max_pending}",
            f"exoarmur_api_rss_bytes {process_rss_bytes()}",
        ]
        for (tenant, reason), count in sorted(state.refusals_total.items()):
            lines.append(f'exoarmur_api_refusals_total{{tenant="{tenant}",reason="{reason}"}} {count}')
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return HotPath(app, "POST", "/v1/intents", submit_intent, errors)


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


def run_api(config: StackConfig, nats_url: str | None = None) -> None:
    app = create_app(config, nats_url)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.api_port, log_level="warning", access_log=False,
                       timeout_graceful_shutdown=3)
    )
    server.run()
