"""Snapshot revisions against the KV buckets' history (checkers/kv_revisions.py), on hand-made data."""

from __future__ import annotations

import base64

import orjson
import pytest
from builders import T0_WALL_MS, approval, audit_row, intent, intent_row, record, snapshot

from exoarmur.contracts import key_digest
from exoarmur_cli.checkers.kv_revisions import snapshot_revisions
from exoarmur_cli.recorded import Recorded

SUBMITTED = T0_WALL_MS + 1_000
DECIDED = SUBMITTED + 5
GLOBAL, TENANT = "$KV.safety.global", "$KV.safety.tenant.t1"


def kv_row(seq: int, subject: str, value, ts: int, operation: str = "PUT", kept: int = 5) -> dict:
    data = value if isinstance(value, bytes) else orjson.dumps(value) if value is not None else b""
    return {"seq": seq, "subject": subject, "timestamp_ms": ts, "operation": operation,
            "data_b64": base64.b64encode(data).decode(), "kept_per_key": kept}


def switch(engaged: bool) -> dict:
    return {"engaged": engaged, "reason": "", "set_by": "operator"}


def approval_subject(the_intent) -> str:
    return f"$KV.approvals.t1.{key_digest('t1', the_intent.idempotency_key)}"


def world(snap_fields: dict | None = None, *, safety=None, approvals=None, a2: bool = False,
          intent_ts: int = SUBMITTED) -> Recorded:
    """One record for one intent, and KV history: global engaged (1) then released (2) before
    the intent; the A2 intent's approval written (3) after it."""
    the_intent = intent("k1", action_class="A2" if a2 else "A1")
    grant = approval(the_intent)
    fields = {"global_revision": 2, "submitted_at_ms": intent_ts}
    if a2:
        fields.update(approval=grant, approval_revision=3)
    snap = snapshot(the_intent, DECIDED, **{**fields, **(snap_fields or {})})
    default_safety = [kv_row(1, GLOBAL, switch(True), T0_WALL_MS), kv_row(2, GLOBAL, switch(False), T0_WALL_MS + 10)]
    default_approvals = [kv_row(3, approval_subject(the_intent), grant.model_dump(mode="json"), SUBMITTED + 2)]
    return Recorded(audit=[audit_row(record(the_intent, snap), timestamp_ms=DECIDED + 1)],
                    intents=[intent_row(the_intent, timestamp_ms=intent_ts)],
                    kv_safety=default_safety if safety is None else safety,
                    kv_approvals=default_approvals if approvals is None else approvals)


def test_consistent_snapshots_check_clean():
    metrics, evidence = snapshot_revisions(world(a2=True))
    assert metrics == {"snapshot_revisions_checked": 2, "snapshot_revision_mismatches": 0,
                       "snapshot_stale_revisions": 0, "snapshot_revisions_unverifiable": 0}, evidence


def test_a_revision_holding_another_value_is_a_mismatch():
    metrics, evidence = snapshot_revisions(world({"global_revision": 1}))  # 1 holds engaged=True, snapshot says off
    assert metrics["snapshot_revision_mismatches"] == 1
    assert "holds True" in evidence["mismatches"][0]["why"]


def test_a_revision_of_another_key_is_a_mismatch():
    metrics, evidence = snapshot_revisions(world({"tenant_revision": 2}))  # 2 is a write of the global key
    assert metrics["snapshot_revision_mismatches"] == 1
    assert GLOBAL in evidence["mismatches"][0]["why"]


def test_a_revision_never_written_is_a_mismatch():
    assert snapshot_revisions(world({"global_revision": 7}))[0]["snapshot_revision_mismatches"] == 1


def test_a_revision_stored_after_the_record_is_a_mismatch():
    late = [kv_row(1, GLOBAL, switch(True), T0_WALL_MS), kv_row(2, GLOBAL, switch(False), DECIDED + 50)]
    metrics, evidence = snapshot_revisions(world(safety=late))
    assert metrics["snapshot_revision_mismatches"] == 1
    assert "after the record" in evidence["mismatches"][0]["why"]


def test_a_readable_snapshot_of_an_unparseable_value_is_a_mismatch():
    corrupt = [kv_row(1, GLOBAL, switch(True), T0_WALL_MS), kv_row(2, GLOBAL, b"\x00 not json", T0_WALL_MS + 10)]
    assert snapshot_revisions(world(safety=corrupt))[0]["snapshot_revision_mismatches"] == 1


def test_a_deleted_key_reads_as_off():
    deleted = [kv_row(1, GLOBAL, switch(True), T0_WALL_MS), kv_row(2, GLOBAL, None, T0_WALL_MS + 10, "DEL")]
    assert snapshot_revisions(world(safety=deleted))[0]["snapshot_revision_mismatches"] == 0


def test_an_approval_other_than_stored_is_a_mismatch():
    """The stack reports an APPROVED approval where the bucket holds a DENIED one (approval bypass)."""
    the_intent = intent("k1", action_class="A2")
    denied = approval(the_intent, status="DENIED").model_dump(mode="json")
    metrics, evidence = snapshot_revisions(world(a2=True, approvals=[kv_row(3, approval_subject(the_intent), denied,
                                                                              SUBMITTED + 2)]))
    assert metrics["snapshot_revision_mismatches"] == 1
    assert evidence["mismatches"][0]["key"] == approval_subject(the_intent)


def test_revision_zero_for_a_key_written_before_the_intent_is_stale():
    metrics, evidence = snapshot_revisions(world({"global_revision": 0}))  # a cache, or switches ignored
    assert metrics["snapshot_stale_revisions"] == 1
    assert evidence["stale_at_revision_0"] == 1
    assert evidence["stale"][0]["written_before_intent"] == 2


def test_an_older_revision_than_one_stored_before_the_intent_is_stale():
    metrics, _ = snapshot_revisions(world({"global_revision": 1, "global_switch": True}))
    assert (metrics["snapshot_stale_revisions"], metrics["snapshot_revision_mismatches"]) == (1, 0)


@pytest.mark.parametrize("release_ms, stale", [(SUBMITTED, 0), (SUBMITTED - 1, 0), (SUBMITTED - 2, 1)])
def test_only_a_write_clearly_before_the_intent_makes_a_stale_read(release_ms, stale):
    """Within the clock slack (1 ms) the order of two stores is not proven, so not judged."""
    writes = [kv_row(1, GLOBAL, switch(True), T0_WALL_MS), kv_row(2, GLOBAL, switch(False), release_ms)]
    metrics, _ = snapshot_revisions(world({"global_revision": 1, "global_switch": True}, safety=writes))
    assert metrics["snapshot_stale_revisions"] == stale


def test_a_revision_discarded_by_the_history_limit_is_unverifiable_not_a_mismatch():
    kept = [kv_row(seq, GLOBAL, switch(seq % 2 == 1), DECIDED + seq, kept=2) for seq in (5, 6)]
    metrics, evidence = snapshot_revisions(world(safety=kept))
    assert (metrics["snapshot_revisions_unverifiable"], metrics["snapshot_revision_mismatches"]) == (1, 0)
    under_limit = [kv_row(6, GLOBAL, switch(False), DECIDED + 6, kept=2)]  # one kept of two: nothing discarded
    assert snapshot_revisions(world(safety=under_limit))[0]["snapshot_revision_mismatches"] == 1


def test_unreadable_snapshots_are_skipped_and_no_export_is_no_measurement():
    blind = world({"readable": False, "global_revision": 0})
    metrics, evidence = snapshot_revisions(blind)
    assert metrics["snapshot_revisions_checked"] == 0 and evidence["unreadable_skipped"] == 1
    data = world()
    metrics, evidence = snapshot_revisions(Recorded(audit=data.audit, intents=data.intents))
    assert metrics == {} and "no KV history" in evidence["missing"]
