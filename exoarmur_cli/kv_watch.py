"""Every write to the safety and approvals KV buckets, recorded while the run goes.

The buckets keep only the last few values of each key (``history=5``), so a switch cycled
more often than that has lost its older revisions by the time the run exports the buckets'
streams, and a snapshot naming one of them could not be checked. This watch polls each
bucket's stream every ``interval_s`` and reads every new sequence number (a stream message
get, which returns sequence, subject, server timestamp and the KV operation header). The
export merges these rows with what the stream still holds (``export.export_kv``).

Why polling and not an ordered push consumer: a consumer dies with a nats-server restart and
is only re-created after missed heartbeats (and not at all if the server is still down when
it tries), losing exactly the writes this watch exists for; a poll simply resumes from the
next sequence once the server answers again. Nothing is lost unless one key is written more
than the bucket keeps between two polls.
"""

from __future__ import annotations

import asyncio
import base64
from contextlib import suppress

from nats.js.errors import NotFoundError

BUCKETS = ("safety", "approvals")
REQUEST_S = 1.0
MAX_ERRORS_KEPT = 10


def raw_row(msg) -> dict:
    """One stream message (``js.get_msg``) as exported: the shape ``export.export_kv`` writes."""
    return {"seq": msg.seq, "subject": msg.subject, "timestamp_ms": int(msg.time.timestamp() * 1000),
            "operation": (msg.headers or {}).get("KV-Operation", "PUT"),
            "data_b64": base64.b64encode(msg.data or b"").decode()}


class KvWatch:
    """Collects each bucket's messages, by stream sequence, from ``start`` until ``stop``."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.rows: dict[str, dict[int, dict]] = {bucket: {} for bucket in BUCKETS}
        self.errors: list[str] = []
        self.error_count = 0
        self._next = {bucket: 1 for bucket in BUCKETS}
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self, js) -> None:
        self._task = asyncio.create_task(self._run(js))

    async def stop(self) -> dict[str, list[dict]]:
        """One last poll, then stop; each bucket's rows in sequence order."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return {bucket: [rows[s] for s in sorted(rows)] for bucket, rows in self.rows.items()}

    async def _run(self, js) -> None:
        while True:
            last_round = self._stop.is_set()
            for bucket in BUCKETS:
                try:
                    await self._catch_up(js, bucket)
                except Exception as exc:  # NATS away or slow: the next poll resumes where this stopped
                    self._note(f"{bucket}: {type(exc).__name__}: {exc}")
            if last_round:
                return
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)

    async def _catch_up(self, js, bucket: str) -> None:
        stream = f"KV_{bucket}"
        try:
            state = (await asyncio.wait_for(js.stream_info(stream), REQUEST_S)).state
        except NotFoundError:
            return  # not provisioned (yet): nothing written
        if state.last_seq < self._next[bucket] - 1:  # the stream was recreated: sequences restarted
            self._note(f"{bucket}: stream restarted at sequence {state.last_seq} after {self._next[bucket] - 1}")
            self._next[bucket] = 1
        seq = max(self._next[bucket], state.first_seq or 1)
        while seq <= state.last_seq:
            try:
                msg = await asyncio.wait_for(js.get_msg(stream, seq=seq), REQUEST_S)
                self.rows[bucket].setdefault(seq, raw_row(msg))
            except NotFoundError:
                pass  # already discarded by the bucket's history limit
            seq += 1
            self._next[bucket] = seq

    def _note(self, error: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(error)
