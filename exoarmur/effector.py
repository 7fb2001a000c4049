"""The effector: the external dependency ExoArmur cells act upon (isolate a host, block an IP...).

A small FastAPI app over a durable SQLite ledger. ``POST /v1/effects`` applies an effect at most
once per ``Idempotency-Key``: the first call records it, every later call with the same key only
increments ``calls`` and returns the same receipt with ``replayed: true``. The insert-or-increment
is one SQLite statement in one transaction (WAL, ``synchronous=FULL``), so neither concurrent
calls nor a crash can apply an effect twice.

Faults (latency, jitter, error rate, hang, down) are set at run time with ``PUT /v1/faults`` and
act on ``/v1/effects`` only, before the ledger write. Run it as a process with
``python -m exoarmur.effector --port P --ledger L --seed S``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exoarmur.contracts import EffectorReceipt, ReasonCode, sha256_hex
from exoarmur.hotpath import HotPath

HANG_S = 3600.0  # a hung effector answers only when the caller's deadline has given up on it
HANG_POLL_S = 0.05
GRACEFUL_SHUTDOWN_S = 3  # so SIGTERM is not held up an hour by a request stuck in a hang

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    idempotency_key TEXT PRIMARY KEY,
    intent_ref TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    action TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    first_applied_at_ms INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    last_call_at_ms INTEGER NOT NULL
)
"""

_UPSERT = """
INSERT INTO ledger (idempotency_key, intent_ref, tenant_id, node_id, action, receipt_id,
                    first_applied_at_ms, calls, last_call_at_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (idempotency_key) DO UPDATE SET
    calls = calls + 1,
    last_call_at_ms = excluded.last_call_at_ms
RETURNING receipt_id, first_applied_at_ms, calls
"""

_COLUMNS = (
    "idempotency_key", "intent_ref", "tenant_id", "node_id", "action", "receipt_id",
    "first_applied_at_ms", "calls", "last_call_at_ms",
)


class FaultSettings(BaseModel):
    """The faults the effector injects into ``/v1/effects``; all off by default."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    # Applied, then the answer is lost (503 after the ledger write): the caller cannot tell
    # this from a failure before the write, so only the idempotency key keeps it to one effect.
    lose_response_rate: float = Field(default=0.0, ge=0, le=1)
    hang: bool = False
    down: bool = False
    seed: int | None = None


class EffectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Which intent this effect is for, independent of the Idempotency-Key the caller chose:
    # it is how an auditor counts effects per intent even if a caller varied its keys.
    intent_ref: str = Field(default="", max_length=256)
    tenant_id: str = Field(min_length=1, max_length=128)
    node_id: str = Field(min_length=1, max_length=128)
    action: str = Field(min_length=1, max_length=128)
    parameters: dict[str, Any] = Field(default_factory=dict)


def fault_delay_s(settings: FaultSettings, rng: random.Random) -> float:
    """The injected delay in seconds: latency plus a uniform draw of jitter from ``rng``.

    Draws from ``rng`` only when there is jitter, so the sequence is reproducible per seed.
    """
    delay_ms = settings.latency_ms
    if settings.jitter_ms > 0:
        delay_ms += rng.uniform(0.0, settings.jitter_ms)
    return delay_ms / 1000.0


def fault_errors(settings: FaultSettings, rng: random.Random) -> bool:
    """Whether this call fails with an injected error; draws from ``rng`` only if it may."""
    return settings.error_rate > 0 and rng.random() < settings.error_rate


def receipt_id_for(idempotency_key: str) -> str:
    return "rcpt-" + sha256_hex(idempotency_key.encode())[:24]


def _now_ms() -> int:
    return int(time.time() * 1000)


class Ledger:
    """One SQLite connection, guarded by a lock; each call is one short transaction."""

    def __init__(self, path: str | os.PathLike[str], synchronous: str = "FULL") -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(os.fspath(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")  # OFF only as an injected defect
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute(_SCHEMA)

    def apply(self, key: str, req: EffectRequest) -> EffectorReceipt:
        return self.apply_many([(key, req)])[0]

    def apply_many(self, requests: list[tuple[str, EffectRequest]]) -> list[EffectorReceipt]:
        """Apply a batch in one transaction: one fsync for all of them (group commit)."""
        now = _now_ms()
        receipts = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for key, req in requests:
                    params = (key, req.intent_ref or key, req.tenant_id, req.node_id, req.action, receipt_id_for(key), now, now)
                    receipt_id, first_ms, calls = self._conn.execute(_UPSERT, params).fetchone()
                    receipts.append(EffectorReceipt(
                        idempotency_key=key, receipt_id=receipt_id, first_applied_at_ms=first_ms,
                        calls=calls, replayed=calls > 1,
                    ))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return receipts

    def receipt(self, key: str) -> EffectorReceipt | None:
        """What was applied under ``key`` (a read: ``calls`` does not change), or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT receipt_id, first_applied_at_ms, calls FROM ledger WHERE idempotency_key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return EffectorReceipt(idempotency_key=key, receipt_id=row[0], first_applied_at_ms=row[1], calls=row[2],
                               replayed=True)

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM ledger "
                "ORDER BY first_applied_at_ms, idempotency_key"
            )
            return [dict(zip(_COLUMNS, row)) for row in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class GroupCommit:
    """Funnels concurrent ``apply`` calls into batched transactions run off the event loop.

    An answer is sent only after its batch has committed (``synchronous=FULL``), so durability
    is unchanged; what changes is that N concurrent effects cost one fsync, not N, and the
    event loop never blocks on the disk."""

    MAX_BATCH = 256

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.pending: list[tuple[str, EffectRequest, asyncio.Future]] = []
        self.writer: asyncio.Task | None = None

    async def apply(self, key: str, req: EffectRequest) -> EffectorReceipt:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((key, req, future))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[: self.MAX_BATCH], self.pending[self.MAX_BATCH :]
            try:
                receipts = await asyncio.to_thread(self.ledger.apply_many, [(k, r) for k, r, _ in batch])
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), receipt in zip(batch, receipts):
                if not future.done():
                    future.set_result(receipt)


async def _hang(request: Request) -> None:
    """Hold the call up to ``HANG_S``, ending as soon as the caller gives up on it.

    Polling for the disconnect (rather than one long sleep) leaves no orphaned task behind
    a timed-out caller, so a graceful shutdown has nothing to wait for or cancel.
    """
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(HANG_POLL_S)


def _error(status: int, code: ReasonCode, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"reason_code": code.value, "detail": detail})


def create_app(ledger_path: str | os.PathLike[str], seed: int, synchronous: str = "FULL") -> HotPath:
    """An effector app over the ledger at ``ledger_path``; ``seed`` seeds the fault RNG."""
    ledger = Ledger(ledger_path, synchronous)
    writer = GroupCommit(ledger)
    state: dict[str, Any] = {"faults": FaultSettings(), "rng": random.Random(seed)}
    stats = {"requests": 0, "applied": 0, "replayed": 0, "faulted": 0}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        ledger.close()

    app = FastAPI(title="exoarmur-effector", lifespan=lifespan)
    app.state.ledger = ledger

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/v1/faults")
    async def get_faults() -> dict[str, Any]:
        return state["faults"].model_dump()

    @app.put("/v1/faults")
    async def put_faults(settings: FaultSettings) -> dict[str, Any]:
        state["faults"] = settings
        if settings.seed is not None:
            state["rng"] = random.Random(settings.seed)
        return settings.model_dump()

    @app.get("/v1/stats")
    async def get_stats() -> dict[str, int]:
        return dict(stats)

    @app.get("/v1/effects/{key}", response_model=EffectorReceipt)
    async def get_effect(key: str) -> Response:
        """Was this key applied? Lets a caller whose answers were lost learn the truth."""
        if state["faults"].down:
            return _error(503, ReasonCode.EFFECTOR_ERROR, "down")
        receipt = await asyncio.to_thread(ledger.receipt, key)
        if receipt is None:
            return _error(404, ReasonCode.NOT_FOUND, "no effect under that key")
        return Response(receipt.canonical(), media_type="application/json")

    @app.get("/v1/ledger", response_model=list[dict[str, Any]])
    async def get_ledger() -> Response:
        # Serialised directly: FastAPI's encoder took ~1 s for a 10,000-row ledger.
        return Response(orjson.dumps(await asyncio.to_thread(ledger.rows)), media_type="application/json")

    @app.post("/v1/effects")
    async def post_effect(request: Request) -> JSONResponse:
        stats["requests"] += 1
        faults: FaultSettings = state["faults"]
        if faults.down:
            stats["faulted"] += 1
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
            stats["faulted"] += 1
            await _hang(request)
            return _error(503, ReasonCode.EFFECTOR_ERROR, "hang")
        delay = fault_delay_s(faults, state["rng"])
        if delay > 0:
            await asyncio.sleep(delay)
        if fault_errors(faults, state["rng"]):
            stats["faulted"] += 1
            return _error(500, ReasonCode.EFFECTOR_ERROR, "injected error")

        receipt = await writer.apply(key, req)
        if faults.lose_response_rate > 0 and state["rng"].random() < faults.lose_response_rate:
            stats["faulted"] += 1
            return _error(503, ReasonCode.EFFECTOR_ERROR, "applied, response lost")
        stats["replayed" if receipt.replayed else "applied"] += 1
        return Response(receipt.canonical(), media_type="application/json")

    return HotPath(app, "POST", "/v1/effects", post_effect)


def run_effector(host: str, port: int, ledger_path: str, seed: int, synchronous: str = "FULL") -> None:
    """Serve the effector until SIGTERM/SIGINT (blocking); uvicorn shuts down gracefully."""
    app = create_app(ledger_path, seed, synchronous)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m exoarmur.effector", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ledger", required=True, help="path of the SQLite ledger file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    args = parser.parse_args(argv)
    run_effector(args.host, args.port, args.ledger, args.seed)


if __name__ == "__main__":
    main()
