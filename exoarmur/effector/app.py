"""The effector's HTTP surface: its state object, the handlers, the app and the process."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from collections.abc import Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from exoarmur.contracts import DEADLINE_HEADER, DEADLINE_PASSED_STATUS, EFFECTOR_KEEP_ALIVE_S, EffectorReceipt, ReasonCode
from exoarmur.effector.auth import EFFECTOR_AUTH_DEFECTS, EffectorAuth
from exoarmur.effector.faults import FaultSettings, fault_delay_s, fault_errors, fault_rejects, hang
from exoarmur.effector.ledger import EffectRequest, GroupCommit, Ledger, LedgerSync, ledger_sync
from exoarmur.hotpath import HotPath
from exoarmur.seams import choose, injected

REJECTED_STATUS = 422  # an injected rejection: the request refused as it is, not applied
GRACEFUL_SHUTDOWN_S = 3  # so SIGTERM is not held up an hour by a request stuck in a hang


class EffectorState:
    """The ledger, its group-commit writer, the fault settings with their RNG, counters, and who
    may call (a token per caller, the auth seam chosen at start-up)."""

    def __init__(self, ledger_path: str | os.PathLike[str], seed: int, tokens: Mapping[str, str],
                 auth: EffectorAuth = EffectorAuth(), sync: LedgerSync = LedgerSync()) -> None:
        missing = {"cell", "harness"} - {name for name, token in tokens.items() if token}
        if missing:
            raise ValueError(f"effector tokens missing for {', '.join(sorted(missing))}")
        self.tokens = {name: token.encode() for name, token in tokens.items()}
        self.auth = auth
        self.ledger = Ledger(ledger_path, sync)
        self.writer = GroupCommit(self.ledger)
        self.faults = FaultSettings()
        self.rng = random.Random(seed)
        self.stats = {"requests": 0, "applied": 0, "replayed": 0, "faulted": 0, "late": 0}


def _state(request: Request) -> EffectorState:
    return request.app.state.effector


def _error(status: int, code: ReasonCode, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"reason_code": code.value, "detail": detail})


def _refused(request: Request, caller: str) -> JSONResponse | None:
    """A 401/403 answer unless the request carries ``caller``'s token (checked before anything)."""
    state = _state(request)
    refusal = state.auth.check(state.tokens, request.headers.get("authorization", ""), caller)
    return None if refusal is None else _error(*refusal)


async def healthz() -> dict[str, bool]:
    return {"ok": True}


async def get_faults(request: Request) -> Any:
    return _refused(request, "harness") or _state(request).faults.model_dump()


async def put_faults(request: Request) -> Any:
    refused = _refused(request, "harness")
    if refused is not None:
        return refused
    try:
        settings = FaultSettings.model_validate_json(await request.body())
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        return _error(422, ReasonCode.INVALID_INTENT, detail or "invalid fault settings")
    state = _state(request)
    state.faults = settings
    if settings.seed is not None:
        state.rng = random.Random(settings.seed)
    return settings.model_dump()


async def get_stats(request: Request) -> Any:
    return _refused(request, "harness") or dict(_state(request).stats)


async def get_effect(key: str, request: Request) -> Response:
    """Was this key applied? Lets a caller whose answers were lost learn the truth."""
    refused = _refused(request, "cell")
    if refused is not None:
        return refused
    state = _state(request)
    if state.faults.down:
        return _error(503, ReasonCode.EFFECTOR_ERROR, "down")
    receipt = await asyncio.to_thread(state.ledger.receipt, key)
    if receipt is None:
        return _error(404, ReasonCode.NOT_FOUND, "no effect under that key")
    return Response(receipt.canonical(), media_type="application/json")


async def get_ledger(request: Request) -> Response:
    # Serialised directly: FastAPI's encoder took ~1 s for a 10,000-row ledger.
    refused = _refused(request, "harness")
    if refused is not None:
        return refused
    rows = await asyncio.to_thread(_state(request).ledger.rows)
    return Response(orjson.dumps(rows), media_type="application/json")


async def post_effect(request: Request) -> JSONResponse:
    # Apply an effect at most once per Idempotency-Key, after the injected faults.
    refused = _refused(request, "cell")
    if refused is not None:
        return refused
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
    deadline_ms = None
    if (raw_deadline := request.headers.get(DEADLINE_HEADER)) is not None:
        try:
            deadline_ms = int(raw_deadline)
        except ValueError:
            return _error(400, ReasonCode.INVALID_INTENT, f"{DEADLINE_HEADER} must be an integer (epoch ms)")

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
    if fault_rejects(faults, state.rng):
        state.stats["faulted"] += 1
        return _error(REJECTED_STATUS, ReasonCode.EFFECTOR_ERROR, "injected rejection")

    # After every injected delay: the deadline is checked at the moment of writing the ledger.
    receipt = await state.writer.apply(key, req, deadline_ms)
    if receipt is None:
        state.stats["late"] += 1
        return _error(DEADLINE_PASSED_STATUS, ReasonCode.TIMEOUT_EFFECTOR_CALL,
                      "the caller's deadline passed before the effect was applied: not applied")
    if faults.lose_response_rate > 0 and state.rng.random() < faults.lose_response_rate:
        state.stats["faulted"] += 1
        return _error(503, ReasonCode.EFFECTOR_ERROR, "applied, response lost")
    state.stats["replayed" if receipt.replayed else "applied"] += 1
    return Response(receipt.canonical(), media_type="application/json")


@asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    app.state.effector.ledger.close()


def create_app(ledger_path: str | os.PathLike[str], seed: int, tokens: Mapping[str, str],
               defects: Iterable[str] = ()) -> HotPath:
    """An effector app over the ledger at ``ledger_path``; ``seed`` seeds the fault RNG; ``tokens``
    holds the ``cell`` and ``harness`` bearer tokens (``StackConfig.effector_tokens``)."""
    app = FastAPI(title="exoarmur-effector", lifespan=_lifespan)
    auth = choose(EffectorAuth(), EFFECTOR_AUTH_DEFECTS, injected(defects))
    app.state.effector = EffectorState(ledger_path, seed, tokens, auth, ledger_sync(injected(defects)))
    app.state.ledger = app.state.effector.ledger
    app.get("/healthz")(healthz)
    app.get("/v1/faults")(get_faults)
    app.put("/v1/faults")(put_faults)
    app.get("/v1/stats")(get_stats)
    app.get("/v1/effects/{key}", response_model=EffectorReceipt)(get_effect)
    app.get("/v1/ledger", response_model=list[dict[str, Any]])(get_ledger)
    app.post("/v1/effects")(post_effect)
    return HotPath(app, "POST", "/v1/effects", post_effect)


def run_effector(host: str, port: int, ledger_path: str, seed: int, tokens: Mapping[str, str],
                 defects: Iterable[str] = ()) -> None:
    """Serve the effector until SIGTERM/SIGINT (blocking); uvicorn shuts down gracefully."""
    app = create_app(ledger_path, seed, tokens, defects)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, timeout_keep_alive=EFFECTOR_KEEP_ALIVE_S,
    )
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    from exoarmur import effector

    parser = argparse.ArgumentParser(prog="python -m exoarmur.effector", description=effector.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ledger", required=True, help="path of the SQLite ledger file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument("--tokens", required=True,
                        help='JSON file {"cell": TOKEN, "harness": TOKEN}: who may call (owner-only mode)')
    args = parser.parse_args(argv)
    try:
        tokens = orjson.loads(Path(args.tokens).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        parser.error(f"cannot read --tokens {args.tokens}: {exc}")
    run_effector(args.host, args.port, args.ledger, args.seed, tokens)
