"""Copy what the stack holds into ``raw/``: streams, the effector ledger, server state, logs.

The export is what checkers judge and what a bundle carries, so it is read through the
stack's public surfaces only (JetStream, the effector's ledger endpoint, the monitor port).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import time
from pathlib import Path

import aiohttp
import orjson
from nats.js import api as js_api
from nats.js.errors import NotFoundError, ServiceUnavailableError

from exoarmur_cli import recorded

FETCH_BATCH = 1000


UNAVAILABLE_RETRIES = 25  # x 0.2 s: longer than a stream leader election on loopback
UNAVAILABLE_BOUND_S = 20.0  # a meta leader election: Raft's 4-9 s timeout, twice, and the answer


async def _while_unavailable(call):
    """``call()``, asked again while JetStream answers 503 (on a cluster, "JetStream system
    temporarily unavailable" while the meta leader is being elected, e.g. after a server comes
    back from a pause), for at most ``UNAVAILABLE_BOUND_S``."""
    deadline = time.monotonic() + UNAVAILABLE_BOUND_S
    while time.monotonic() < deadline:
        try:
            return await call()
        except ServiceUnavailableError:
            await asyncio.sleep(0.2)
    return await call()


async def read_stream(js, stream: str) -> list[dict]:
    """Every message of a stream, in sequence order, as {seq, subject, timestamp_ms, data, headers}.

    A stream that no longer exists reads as empty: that is evidence (of loss), not an error."""
    try:
        info = await _while_unavailable(lambda: js.stream_info(stream))
    except NotFoundError:
        return []
    last_seq = info.state.last_seq
    if info.state.messages == 0:
        return []
    sub = await _while_unavailable(lambda: js.pull_subscribe(
        "", stream=stream,
        config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.NONE, deliver_policy=js_api.DeliverPolicy.ALL,
                                     inactive_threshold=30.0, filter_subject=None),
    ))
    rows: list[dict] = []
    unavailable = 0  # 503s in a row: on a cluster, a new consumer's first pulls can find no responder
    try:
        while True:
            # Ask for no more than remain: a lingering fetch waits out its expiry for a batch
            # that cannot fill.
            want = min(FETCH_BATCH, max(1, info.state.messages - len(rows)))
            try:
                msgs = await sub.fetch(want, timeout=2.0)
            except asyncio.TimeoutError:
                break
            except ServiceUnavailableError:
                unavailable += 1
                if unavailable > UNAVAILABLE_RETRIES:
                    raise
                await asyncio.sleep(0.2)
                continue
            unavailable = 0
            for msg in msgs:
                meta = msg.metadata
                rows.append({
                    "seq": meta.sequence.stream, "subject": msg.subject,
                    "timestamp_ms": int(meta.timestamp.timestamp() * 1000),
                    "data": msg.data, "headers": dict(msg.headers or {}),
                })
            if rows and rows[-1]["seq"] >= last_seq:
                break
    finally:
        await sub.unsubscribe()
    return [r for r in rows if r["seq"] <= last_seq]


async def export_kv(js, bucket: str, watched: list[dict] | None = None) -> tuple[list[dict], dict]:
    """A KV bucket's history, one row per revision: what its stream ``KV_<bucket>`` still holds,
    plus the revisions the run's live watch saw that the bucket's history limit has since
    discarded (``kv_watch.py``). Returns (rows in sequence order, counts).

    ``operation`` is the KV-Operation header (PUT unless DEL/PURGE); ``data_b64`` the value's
    bytes, kept exact because a corrupted value is evidence too; ``kept_per_key`` the bucket's
    history limit; ``source`` "stream" or "watch". Where both saw a revision the stream's row
    is kept, and a disagreement between them is counted (a bucket recreated mid-run)."""
    stream = f"KV_{bucket}"
    try:
        kept = (await js.stream_info(stream)).config.max_msgs_per_subject
    except NotFoundError:
        kept = None
    rows = {r["seq"]: {"seq": r["seq"], "subject": r["subject"], "timestamp_ms": r["timestamp_ms"],
                       "operation": r["headers"].get("KV-Operation", "PUT"),
                       "data_b64": base64.b64encode(r["data"]).decode(), "kept_per_key": kept, "source": "stream"}
            for r in await read_stream(js, stream)}
    in_stream, conflicts = len(rows), 0
    for row in watched or []:
        have = rows.get(row["seq"])
        if have is None:
            rows[row["seq"]] = {**row, "kept_per_key": kept, "source": "watch"}
        elif (have["subject"], have["data_b64"], have["operation"]) != (row["subject"], row["data_b64"],
                                                                       row["operation"]):
            conflicts += 1
    return [rows[s] for s in sorted(rows)], {"stream": in_stream, "watch_only": len(rows) - in_stream,
                                             "conflicts": conflicts}


async def export_all(js, raw_dir: Path, effector_url: str, effector_token: str, monitor_url: str | None,
                     logs_dir: Path | None, kv_watched: dict[str, list[dict]] | None = None) -> dict:
    """Write every raw export; returns counts for the run metadata."""
    watched = kv_watched or {}
    audit, intents, events, (kv_safety, safety_counts), (kv_approvals, approvals_counts) = await asyncio.gather(
        read_stream(js, "AUDIT"), read_stream(js, "INTENTS"), read_stream(js, "EVENTS"),
        export_kv(js, "safety", watched.get("safety")), export_kv(js, "approvals", watched.get("approvals")))
    recorded.write_jsonl(raw_dir / recorded.KV_SAFETY, kv_safety)
    recorded.write_jsonl(raw_dir / recorded.KV_APPROVALS, kv_approvals)
    recorded.write_jsonl(raw_dir / recorded.AUDIT, (
        {"seq": r["seq"], "subject": r["subject"], "timestamp_ms": r["timestamp_ms"], "record": orjson.loads(r["data"])}
        for r in audit))
    recorded.write_jsonl(raw_dir / recorded.INTENTS, (
        {"seq": r["seq"], "subject": r["subject"], "timestamp_ms": r["timestamp_ms"],
         "msg_id": r["headers"].get("Nats-Msg-Id"), "intent": orjson.loads(r["data"])}
        for r in intents))
    recorded.write_jsonl(raw_dir / recorded.EVENTS, (
        {"seq": r["seq"], "subject": r["subject"], "timestamp_ms": r["timestamp_ms"], "data": orjson.loads(r["data"])}
        for r in events))
    # Every value ever put in the buckets (history kept), as raw bytes: a forged or corrupted
    # value is evidence, not something to parse.
    recorded.write_jsonl(raw_dir / recorded.KV, (
        {"bucket": bucket, "seq": r["seq"], "subject": r["subject"], "timestamp_ms": r["timestamp_ms"],
         "operation": r["operation"], "data": base64.b64decode(r["data_b64"]).decode(errors="replace")}
        for bucket, rows in (("safety", kv_safety), ("approvals", kv_approvals)) for r in rows))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(f"{effector_url}/v1/ledger",
                               headers={"Authorization": f"Bearer {effector_token}"}) as response:
            ledger = await response.json()
        recorded.write_jsonl(raw_dir / recorded.LEDGER, ledger)
        if monitor_url:
            server = {}
            for page in ("varz", "jsz"):
                try:
                    async with session.get(f"{monitor_url}/{page}") as response:
                        server[page] = await response.json()
                except aiohttp.ClientError as exc:
                    server[page] = {"error": type(exc).__name__}
            (raw_dir / "nats_server.json").write_bytes(orjson.dumps(server, option=orjson.OPT_INDENT_2))
    if logs_dir is not None and logs_dir.exists():
        shutil.copytree(logs_dir, raw_dir / "logs", dirs_exist_ok=True)
    return {"audit_records": len(audit), "intents": len(intents), "events": len(events), "ledger_rows": len(ledger),
            "kv_safety": safety_counts, "kv_approvals": approvals_counts}
