"""Every write to the safety and approvals KV buckets, recorded as the server stores it.

The buckets keep only the last few values of each key (``history=5``), so a switch cycled
more often than that has lost its older revisions by the time the run exports the buckets'
streams, and a snapshot naming one of them could not be checked. An ordered consumer on each
bucket's stream, started before any scenario, sees every revision with its stream sequence,
subject, server timestamp and KV operation; the export merges these rows with what the
stream still holds (``export.export_kv``).
"""

from __future__ import annotations

import base64

from nats.js import api as js_api

BUCKETS = ("safety", "approvals")


def kv_row(msg) -> dict:
    """One KV message as exported: the same shape from a live watch or a stream read."""
    meta = msg.metadata
    return {"seq": meta.sequence.stream, "subject": msg.subject,
            "timestamp_ms": int(meta.timestamp.timestamp() * 1000),
            "operation": (msg.headers or {}).get("KV-Operation", "PUT"),
            "data_b64": base64.b64encode(msg.data).decode()}


class KvWatch:
    """Collects each bucket's messages (by stream sequence) from ``start`` until ``stop``."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[int, dict]] = {bucket: {} for bucket in BUCKETS}
        self.errors: list[str] = []
        self._subs: list = []

    async def start(self, js) -> None:
        for bucket in BUCKETS:
            seen = self.rows[bucket]

            async def on_msg(msg, seen=seen) -> None:
                try:
                    row = kv_row(msg)
                except Exception as exc:  # a message without JetStream metadata: note it, keep going
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    return
                seen.setdefault(row["seq"], row)

            try:
                self._subs.append(await js.subscribe(f"$KV.{bucket}.>", stream=f"KV_{bucket}", cb=on_msg,
                                                     ordered_consumer=True,
                                                     deliver_policy=js_api.DeliverPolicy.ALL))
            except Exception as exc:  # no watch: the export still has what the streams keep
                self.errors.append(f"{bucket}: {type(exc).__name__}: {exc}")

    async def stop(self) -> dict[str, list[dict]]:
        """Stop watching; each bucket's rows in sequence order."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                self.errors.append(f"unsubscribe: {type(exc).__name__}: {exc}")
        self._subs = []
        return {bucket: [rows[s] for s in sorted(rows)] for bucket, rows in self.rows.items()}
