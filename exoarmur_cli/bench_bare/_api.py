"""The bare api: accept a POST, publish its body durably, answer 202 — nothing checked.

The real api's server settings (uvicorn with ``BoundedHttp``, log level, no access log, graceful
shutdown) and its hot-route serving (``HotPath``, around FastAPI's middleware)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

from exoarmur import natsio
from exoarmur.api.transport import KEEP_ALIVE_S, BoundedHttp
from exoarmur.hotpath import HotPath
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.bench_bare import _wire

PATH = "/v1/intents"  # the client posts to the same path it posts ExoArmur's intents to


async def submit(request: Request) -> Response:
    body = await request.body()
    fields = orjson.loads(body)  # only to name the subject, as the real api names it by key digest
    ack = await request.app.state.js.publish(_wire.intent_subject(fields), body)
    return Response(orjson.dumps({"intent_id": fields.get("intent_id"), "accepted": True, "stream_seq": ack.seq}),
                    status_code=202, media_type="application/json")


async def healthz() -> dict:
    return {"ok": True}


def create_app(config: StackConfig) -> HotPath:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nc = await natsio.connect_as(config, _wire.ROLE, "exoarmur-bench-bare-api")
        app.state.js = nc.jetstream()
        try:
            yield
        finally:
            await nc.drain()

    app = FastAPI(title="bare api", lifespan=lifespan)
    app.post(PATH, status_code=202)(submit)
    app.get("/healthz")(healthz)
    return HotPath(app, "POST", PATH, submit)


def run(config: StackConfig, port: int) -> None:
    # uvicorn.Config as exoarmur.api.app.run_api has it.
    uvicorn.Server(uvicorn.Config(create_app(config), host=config.host, port=port, log_level="warning",
                                  access_log=False, timeout_graceful_shutdown=3, http=BoundedHttp,
                                  timeout_keep_alive=KEEP_ALIVE_S)).run()
