"""The effector's durable ledger: at most one application per ``Idempotency-Key``.

The insert-or-increment is one SQLite statement in one transaction (WAL, ``synchronous=FULL``),
so neither concurrent calls nor a crash can apply an effect twice. ``GroupCommit`` batches
concurrent calls into one transaction (one fsync) off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from exoarmur.clock import now_ms
from exoarmur.contracts import EffectorReceipt, sha256_hex
from exoarmur.defects import Defect
from exoarmur.seams import Alternatives, choose

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



class EffectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Which intent this effect is for, independent of the Idempotency-Key the caller chose:
    # it is how an auditor counts effects per intent even if a caller varied its keys.
    intent_ref: str = Field(default="", max_length=256)
    tenant_id: str = Field(min_length=1, max_length=128)
    node_id: str = Field(min_length=1, max_length=128)
    action: str = Field(min_length=1, max_length=128)
    parameters: dict[str, Any] = Field(default_factory=dict)



def receipt_id_for(idempotency_key: str) -> str:
    return "rcpt-" + sha256_hex(idempotency_key.encode())[:24]



# --- the ledger-sync seam: when a commit counts as done --------------------------------------------

@dataclass(frozen=True)
class LedgerSync:
    synchronous: str = "FULL"  # SQLite fsyncs before a commit returns: an acknowledged effect is on disk


LEDGER_SYNC_DEFECTS: Alternatives = {
    # Defect ``ledger-no-fsync``: commits return before they reach the disk; a power loss forgets them.
    Defect.LEDGER_NO_FSYNC: {"synchronous": "OFF"},
}


def ledger_sync(defects: Iterable[Defect] = ()) -> LedgerSync:
    return choose(LedgerSync(), LEDGER_SYNC_DEFECTS, defects)


class Ledger:
    """One SQLite connection, guarded by a lock; each call is one short transaction."""

    def __init__(self, path: str | os.PathLike[str], sync: LedgerSync = LedgerSync()) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(os.fspath(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={sync.synchronous}")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute(_SCHEMA)

    def apply(self, key: str, req: EffectRequest, deadline_ms: int | None = None) -> EffectorReceipt | None:
        return self.apply_many([(key, req, deadline_ms)])[0]

    def apply_many(self, requests: list[tuple[str, EffectRequest, int | None]]) -> list[EffectorReceipt | None]:
        """Apply a batch in one transaction: one fsync for all of them (group commit).

        The deadline fence: a request whose caller's deadline (wall-clock ms) has passed is not
        applied (None in its place). The clock is read under the lock that ``receipt`` also
        takes, so once a reader has seen a key absent after its deadline, no write can add it."""
        receipts: list[EffectorReceipt | None] = []
        with self._lock:
            now = now_ms()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for key, req, deadline_ms in requests:
                    if deadline_ms is not None and now > deadline_ms:
                        receipts.append(None)
                        continue
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
        self.pending: list[tuple[str, EffectRequest, int | None, asyncio.Future]] = []
        self.writer: asyncio.Task | None = None

    async def apply(self, key: str, req: EffectRequest, deadline_ms: int | None = None) -> EffectorReceipt | None:
        """The receipt, or None if ``deadline_ms`` had passed when the batch was written."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((key, req, deadline_ms, future))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[: self.MAX_BATCH], self.pending[self.MAX_BATCH :]
            try:
                receipts = await asyncio.to_thread(self.ledger.apply_many, [(k, r, d) for k, r, d, _ in batch])
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), receipt in zip(batch, receipts):
                if not future.done():
                    future.set_result(receipt)
