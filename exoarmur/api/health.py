"""Liveness, readiness and the api's Prometheus-style metrics."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response

from exoarmur import natsio
from exoarmur.api.http import error, state_of
from exoarmur.contracts import ReasonCode
from exoarmur.metrics import process_rss_bytes
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline


async def healthz(request: Request) -> Any:
    return {"ok": True, "api_id": state_of(request).api_id}


async def readyz(request: Request) -> Any:
    state = state_of(request)
    if state.nc is None or not state.nc.is_connected:
        return error(503, ReasonCode.STACK_UNAVAILABLE, "not connected to NATS")
    try:
        await with_deadline(TimeoutCategory.NATS_SUBSCRIBE, state.js.stream_info(natsio.INTENTS_STREAM))
    except Exception as exc:
        return error(503, ReasonCode.STACK_UNAVAILABLE, f"intent stream unavailable: {type(exc).__name__}")
    return {"ready": True}


async def metrics(request: Request) -> Response:
    state = state_of(request)
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
