"""The no-op effector: read the request, answer a receipt — no ledger, no faults, no auth.

The effector's server settings (uvicorn defaults, log level, no access log, graceful shutdown)
and its hot-route serving (``HotPath``)."""

from __future__ import annotations

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

from exoarmur.effector.app import GRACEFUL_SHUTDOWN_S
from exoarmur.hotpath import HotPath

PATH = "/v1/effects"


async def post_effect(request: Request) -> Response:
    await request.body()
    key = request.headers.get("idempotency-key", "")
    return Response(orjson.dumps({"idempotency_key": key, "applied": True, "replayed": False}),
                    media_type="application/json")


async def healthz() -> dict:
    return {"ok": True}


def create_app() -> HotPath:
    app = FastAPI(title="bare effector")
    app.post(PATH)(post_effect)
    app.get("/healthz")(healthz)
    return HotPath(app, "POST", PATH, post_effect)


def run(host: str, port: int) -> None:
    # uvicorn.Config as exoarmur.effector.app.run_effector has it.
    uvicorn.Server(uvicorn.Config(create_app(), host=host, port=port, log_level="warning", access_log=False,
                                  timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)).run()
