"""Gate 3: each recorded snapshot's switch and approval revisions, checked against KV history.

A snapshot names the revision it read of up to three keys (the global switch, the intent's
tenant's switch and, for A2/A3, the intent's approval). The KV buckets' own history (streams
``KV_safety`` and ``KV_approvals``, exported after the run) says what each revision holds:

- a non-zero revision must be a message on that very key, stored no later than the record,
  whose value is the one the snapshot reports (switch engaged or not; the whole approval);
- a revision older than a write the server had stored before the intent itself is a stale
  read (revision 0 for a key already written is the plain case): the cell reads the state
  only after the intent was delivered to it from INTENTS, so any write stored before the
  intent must be visible to that read.

Why timestamps for "before": KV messages and INTENTS messages live in different streams, so
their sequence numbers do not compare; their timestamps do, because one nats-server stamps
both from one clock when it stores them. Exported timestamps are whole milliseconds, converted
from the server's nanoseconds by two client paths (consumer metadata, message get) that may
round a boundary differently, so order is taken as proven only when the two differ by more
than ``CLOCK_SLACK_MS``; anything closer is not judged (never a false stale read).

A revision the bucket's history limit has discarded (older than every value still kept for
its key, with the key at its limit) cannot be checked and is counted apart, not as a mismatch.
Unreadable snapshots (fail closed, revisions 0 by contract) name no revision and are skipped.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from dataclasses import dataclass

import orjson

from exoarmur.contracts import key_digest
from exoarmur_cli.checkers.common import audit_rows, first
from exoarmur_cli.recorded import Recorded

APPROVAL_CLASSES = frozenset({"A2", "A3"})
CLOCK_SLACK_MS = 1  # whole-millisecond truncation of one server clock, read through two conversions
UNPARSEABLE = object()  # a stored value no reader could have taken as a switch or an approval


@dataclass(frozen=True)
class KvMessage:
    seq: int
    subject: str
    timestamp_ms: int
    value: object  # None for DEL/PURGE, else the parsed JSON, or UNPARSEABLE


@dataclass(frozen=True)
class Bucket:
    """One bucket's exported history, indexed by revision and by key."""

    by_seq: dict[int, KvMessage]
    by_subject: dict[str, list[KvMessage]]  # ascending seq
    kept_per_key: int | None

    @classmethod
    def of(cls, rows: list[dict]) -> "Bucket":
        by_seq, by_subject, kept = {}, defaultdict(list), None
        for row in sorted(rows, key=lambda r: r["seq"]):
            msg = KvMessage(row["seq"], row["subject"], row["timestamp_ms"], _value(row))
            by_seq[msg.seq] = msg
            by_subject[msg.subject].append(msg)
            kept = row.get("kept_per_key", kept)
        return cls(by_seq, dict(by_subject), kept)

    def discarded(self, subject: str, revision: int) -> bool:
        """The history limit explains why ``revision`` is gone: the key is at its limit and
        every value kept is newer."""
        kept = self.by_subject.get(subject, [])
        return self.kept_per_key is not None and len(kept) >= self.kept_per_key and revision < kept[0].seq

    def latest_before(self, subject: str, before_ms: int) -> KvMessage | None:
        older = [m for m in self.by_subject.get(subject, []) if m.timestamp_ms < before_ms - CLOCK_SLACK_MS]
        return older[-1] if older else None


def _value(row: dict) -> object:
    if row.get("operation", "PUT") in ("DEL", "PURGE"):
        return None
    try:
        parsed = orjson.loads(base64.b64decode(row["data_b64"], validate=True))
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        return UNPARSEABLE
    return parsed if isinstance(parsed, dict) else UNPARSEABLE


def _switch_value(value: object) -> object:
    """A switch value as read: absent -> off; a state without a boolean ``engaged`` -> unparseable."""
    if value is None:
        return False
    if value is UNPARSEABLE or not isinstance(value.get("engaged"), bool):
        return UNPARSEABLE
    return value["engaged"]


def _reads(record: dict, action_class: str) -> list[tuple[str, str, int, object]]:
    """(bucket, subject, revision, value the snapshot reports) for each key the snapshot read."""
    snap, tenant = record["snapshot"], record["tenant_id"]
    reads = [("safety", "$KV.safety.global", snap["global_revision"], bool(snap["global_switch"])),
             ("safety", f"$KV.safety.tenant.{tenant}", snap["tenant_revision"], bool(snap["tenant_switch"]))]
    if action_class in APPROVAL_CLASSES:
        digest = key_digest(tenant, record["idempotency_key"])
        reads.append(("approvals", f"$KV.approvals.{tenant}.{digest}", snap["approval_revision"],
                      snap.get("approval")))
    return reads


def _problem(bucket: Bucket, kind: str, subject: str, revision: int, reported: object,
             recorded_at_ms: int | None) -> str | None:
    """Why a non-zero revision does not back the snapshot, or None when it does."""
    msg = bucket.by_seq[revision]
    if msg.subject != subject:
        return f"revision {revision} is a write of {msg.subject}"
    if recorded_at_ms is not None and msg.timestamp_ms > recorded_at_ms + CLOCK_SLACK_MS:
        return f"revision {revision} was stored after the record ({msg.timestamp_ms} > {recorded_at_ms})"
    stored = msg.value if kind == "approvals" else _switch_value(msg.value)
    if stored is UNPARSEABLE:
        return f"revision {revision} holds no valid value, yet the snapshot is readable"
    if stored != reported:
        return f"revision {revision} holds {stored!r}, the snapshot reports {reported!r}"
    return None


def snapshot_revisions(rec: Recorded) -> tuple[dict, dict]:
    if rec.kv_safety is None or rec.kv_approvals is None:
        return {}, {"missing": "no KV history export in raw/: snapshot revisions cannot be checked"}
    buckets = {"safety": Bucket.of(rec.kv_safety), "approvals": Bucket.of(rec.kv_approvals)}
    intents = {}
    for row in rec.intents:
        intent = row.get("intent") or {}
        intents.setdefault((intent.get("tenant_id"), intent.get("idempotency_key")), row)
    checked, unverifiable, skipped = 0, [], 0
    mismatches, stale = [], []
    for row in audit_rows(rec):
        record = row["record"]
        if not record["snapshot"]["readable"]:
            skipped += 1
            continue
        ref = f"{record['tenant_id']}:{record['idempotency_key']}"
        source = intents.get((record["tenant_id"], record["idempotency_key"]))
        action_class = (source or {}).get("intent", {}).get("action_class", record["action_class"])
        for kind, subject, revision, reported in _reads(record, action_class):
            bucket = buckets[kind]
            if source is not None:
                written = bucket.latest_before(subject, source["timestamp_ms"])
                if written is not None and revision < written.seq:
                    stale.append({"intent": ref, "key": subject, "revision": revision,
                                  "written_before_intent": written.seq})
            if revision == 0:
                continue
            if revision not in bucket.by_seq:
                if bucket.discarded(subject, revision):
                    unverifiable.append({"intent": ref, "key": subject, "revision": revision})
                else:
                    mismatches.append({"intent": ref, "key": subject, "why": f"no revision {revision} in KV history"})
                continue
            checked += 1
            why = _problem(bucket, kind, subject, revision, reported, row.get("timestamp_ms"))
            if why is not None:
                mismatches.append({"intent": ref, "key": subject, "why": why})
    return {
        "snapshot_revisions_checked": checked,
        "snapshot_revision_mismatches": len(mismatches),
        "snapshot_stale_revisions": len(stale),
        "snapshot_revisions_unverifiable": len(unverifiable),
    }, {"mismatches": first(mismatches), "stale": first(stale), "unverifiable": first(unverifiable),
        "stale_at_revision_0": sum(1 for s in stale if s["revision"] == 0), "unreadable_skipped": skipped,
        "kv_rows": {name: len(b.by_seq) for name, b in buckets.items()},
        "kept_per_key": {name: b.kept_per_key for name, b in buckets.items()}}
