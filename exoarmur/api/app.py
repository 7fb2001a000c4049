"""Wiring: the routes of each concern on one FastAPI app, its lifespan, and the process."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from exoarmur import natsio
from exoarmur.api import admission, health, operator, reads
from exoarmur.api.admission import ADMISSION_DEFECTS, Admission
from exoarmur.api.http import ERRORS
from exoarmur.api.publisher import PUBLISHER_DEFECTS, Publisher
from exoarmur.api.reads import AUDIT_SCOPE_DEFECTS, AuditScope
from exoarmur.api.state import ApiState
from exoarmur.api.transport import KEEP_ALIVE_S, BoundedHttp
from exoarmur.api.openapi import body, errors, install, secured
from exoarmur.contracts import IntentV1, SubmitResponse
from exoarmur.hotpath import HotPath
from exoarmur.seams import choose, injected
from exoarmur.stackconfig import StackConfig

PENDING_REFRESH_S = 0.05  # how stale the pending-work estimate may be


async def _background(state: ApiState) -> None:
    """Keep the pending-work estimate fresh and flush the refusal counters on their interval."""
    flush_s = state.config.bound("refusal_flush_interval_ms") / 1000
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
async def _lifespan(app: FastAPI):
    state: ApiState = app.state.exo
    # As the api's own NATS user; streams and buckets were provisioned before it started
    # (``python -m exoarmur provision``): this user may not create them.
    state.nc = await natsio.connect_as(state.config, "api", state.api_id, state.nats_url)
    state.js = state.nc.jetstream()
    task = asyncio.create_task(_background(state))
    try:
        yield
    finally:
        task.cancel()
        await state.flush_refusals()
        await state.nc.drain()


def create_app(config: StackConfig, nats_url: str | None = None) -> HotPath:
    """The api app; ``POST /v1/intents`` is served around the middleware (``HotPath``)."""
    app = FastAPI(title="ExoArmur API", version="1.0", lifespan=_lifespan)
    defects = injected(config.defects)
    app.state.exo = ApiState(
        config, nats_url,
        admission=choose(Admission(), ADMISSION_DEFECTS, defects),
        publisher=choose(Publisher(), PUBLISHER_DEFECTS, defects),
        audit_scope=choose(AuditScope(), AUDIT_SCOPE_DEFECTS, defects),
    )
    for kind, handler in ERRORS.items():
        app.add_exception_handler(kind, handler)

    read = errors(400, 401, 403, 404, 503)
    write = errors(400, 401, 403, 408, 413, 503)
    app.post("/v1/intents", status_code=202, response_model=SubmitResponse,
             responses=errors(400, 401, 403, 404, 408, 413, 429, 503),
             openapi_extra=secured(body(IntentV1)))(admission.submit_intent)
    app.get("/v1/intents/{idempotency_key}", responses=read, openapi_extra=secured())(reads.intent_status)
    app.get("/v1/audit", responses=read, openapi_extra=secured())(reads.audit_listing)
    app.get("/v1/killswitches", responses=errors(401, 403), openapi_extra=secured())(operator.get_switches)
    app.put("/v1/killswitches/global", responses=write,
            openapi_extra=secured(body(operator.SwitchBody)))(operator.set_global_switch)
    app.put("/v1/killswitches/tenants/{tenant_id}", responses={**write, **errors(404)},
            openapi_extra=secured(body(operator.SwitchBody)))(operator.set_tenant_switch)
    app.post("/v1/approvals", responses={**write, **errors(404)},
             openapi_extra=secured(body(operator.ApprovalBody)))(operator.grant_approval)
    app.get("/healthz")(health.healthz)
    app.get("/readyz", responses=errors(503))(health.readyz)
    app.get("/metrics", response_class=PlainTextResponse)(health.metrics)
    install(app, [IntentV1, operator.SwitchBody, operator.ApprovalBody])
    return HotPath(app, "POST", "/v1/intents", admission.submit_intent, ERRORS)


def run_api(config: StackConfig, nats_url: str | None = None) -> None:
    app = create_app(config, nats_url)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.api_port, log_level="warning", access_log=False,
                       timeout_graceful_shutdown=3, http=BoundedHttp,
                       timeout_keep_alive=KEEP_ALIVE_S)
    )
    server.run()
