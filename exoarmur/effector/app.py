"""The effector's HTTP surface: its state object, the handlers, the app and the process."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from collections.abc import Iterable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from exoarmur.contracts import EffectorReceipt, ReasonCode
from exoarmur.defects import Defect
from exoarmur.effector.faults import FaultSettings, fault_delay_s, fault_errors, hang
from exoarmur.effector.ledger import EffectRequest, GroupCommit, Ledger, LedgerSync, ledger_sync
from exoarmur.hotpath import HotPath

GRACEFUL_SHUTDOWN_S = 3  # so SIGTERM is not held up an hour by a request stuck in a hang


class EffectorState:
    """The ledger, its group-commit writer, the fault settings with their RNG, and counters."""

    def __init__(self, ledger_path: str | os.PathLike[str], seed: int, sync: LedgerSync = LedgerSync()) -> None:
        self.ledger = Ledger(ledger_path, sync)
        self.writer = GroupCommit(self.ledger)
        self.faults = FaultSettings()
        self.rng = random.Random(seed)
        self.stats = {"requests": 0, "applied": 0, "replayed": 0, "faulted": 0}


def _state(request: Request) -> EffectorState:
    return request.app.state.effector


def _error(status: int, code: ReasonCode, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"reason_code": code.value, "detail": detail})


async def healthz() -> dict[str, bool]:
    return {"ok": True}


async def get_faults(request: Request) -> dict[str, Any]:
    return _state(request).faults.model_dump()


async def put_faults(settings: FaultSettings, request: Request) -> dict[str, Any]:
    state = _state(request)
    state.faults = settings
    if settings.seed is not None:
        state.rng = random.Random(settings.seed)
    return settings.model_dump()


async def get_stats(request: Request) -> dict[str, int]:
    return dict(_state(request).stats)


async def get_effect(key: str, request: Request) -> Response:
    """Was this key applied? Lets a caller whose answers were lost learn the truth."""
    state = _state(request)
    if state.faults.down:
        return _error(503, ReasonCode.EFFECTOR_ERROR, "down")
    receipt = await asyncio.to_thread(state.ledger.receipt, key)
    if receipt is None:
        return _error(404, ReasonCode.NOT_FOUND, "no effect under that key")
    return Response(receipt.canonical(), media_type="application/json")


async def get_ledger(request: Request) -> Response:
    # Serialised directly: FastAPI's encoder took ~1 s for a 10,000-row ledger.
    rows = await asyncio.to_thread(_state(request).ledger.rows)
    return Response(orjson.dumps(rows), media_type="application/json")


async def post_effect(request: Request) -> JSONResponse:
    # Apply an effect at most once per Idempotency-Key, after the injected faults.
    state = _state(request)
    state.stats["requests"] += 1
    faults = state.faults
    if faults.down:
        state.stats["faulted"] += 1
        return _error(503, ReasonCode.EFFECTOR_ERROR, "down")

    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > 256:
        return _error(400, ReasonCode.INVALID_INTENT, "Idempotency-Key header is required")
    try:
        req = EffectRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(400, ReasonCode.INVALID_INTENT, detail or "invalid body")

    if faults.hang:
        state.stats["faulted"] += 1
        await hang(request)
        return _error(503, ReasonCode.EFFECTOR_ERROR, "hang")
    delay = fault_delay_s(faults, state.rng)
    if delay > 0:
        await asyncio.sleep(delay)
    if fault_errors(faults, state.rng):
        state.stats["faulted"] += 1
        return _error(500, ReasonCode.EFFECTOR_ERROR, "injected error")

    receipt = await state.writer.apply(key, req)
    if faults.lose_response_rate > 0 and state.rng.random() < faults.lose_response_rate:
        state.stats["faulted"] += 1
        return _error(503, ReasonCode.EFFECTOR_ERROR, "applied, response lost")
    state.stats["replayed" if receipt.replayed else "applied"] += 1
    return Response(receipt.canonical(), media_type="application/json")


@asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    app.state.effector.ledger.close()


def create_app(ledger_path: str | os.PathLike[str], seed: int, sync: LedgerSync = LedgerSync()) -> HotPath:
    """An effector app over the ledger at ``ledger_path``; ``seed`` seeds the fault RNG."""
    app = FastAPI(title="exoarmur-effector", lifespan=_lifespan)
    app.state.effector = EffectorState(ledger_path, seed, sync)
    app.state.ledger = app.state.effector.ledger
    app.get("/healthz")(healthz)
    app.get("/v1/faults")(get_faults)
    app.put("/v1/faults")(put_faults)
    app.get("/v1/stats")(get_stats)
    app.get("/v1/effects/{key}", response_model=EffectorReceipt)(get_effect)
    app.get("/v1/ledger", response_model=list[dict[str, Any]])(get_ledger)
    app.post("/v1/effects")(post_effect)
    return HotPath(app, "POST", "/v1/effects", post_effect)


def run_effector(host: str, port: int, ledger_path: str, seed: int, defects: Iterable[Defect] = ()) -> None:
    """Serve the effector until SIGTERM/SIGINT (blocking); uvicorn shuts down gracefully."""
    app = create_app(ledger_path, seed, ledger_sync(defects))
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    from exoarmur import effector

    parser = argparse.ArgumentParser(prog="python -m exoarmur.effector", description=effector.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ledger", required=True, help="path of the SQLite ledger file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    args = parser.parse_args(argv)
    run_effector(args.host, args.port, args.ledger, args.seed)
