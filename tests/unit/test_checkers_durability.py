"""durability checkers: content survives restarts (by sha256), kills are counted, cold start."""

from __future__ import annotations

import hashlib

from builders import Hist, audit_row, intent, intent_row, record, recorded

from exoarmur.contracts import canonical_json
from exoarmur_cli.checkers.durability import cold_start, persistence, restarts

KEYS = [f"persistence-{n:05d}" for n in range(1, 4)]


def digests(rows: list[dict], field: str) -> dict[str, str]:
    """What ``stream_snapshot`` records: sha256 of each message's bytes (canonical JSON), by subject."""
    return {r["subject"]: hashlib.sha256(canonical_json(r[field])).hexdigest() for r in rows}


def exported() -> tuple[list[dict], list[dict]]:
    intents = [intent(k) for k in KEYS]
    return [intent_row(i, seq=n) for n, i in enumerate(intents, 1)], \
        [audit_row(record(i), seq=n) for n, i in enumerate(intents, 1)]


STREAMS = {"EVENTS": {"1": ["exo.events.breaker.cell-0", "aa"]},
           "KV_safety": {"3": ["$KV.safety.global", "bb"], "4": ["$KV.safety.tenant.t1", "cc"]}}


def run(intents: list[dict], audit: list[dict], final_intents=None, final_audit=None,
        streams_after: dict | None = None) -> Hist:
    """A persistence scenario: acks, a snapshot, both restarts each followed by a snapshot."""
    hist = Hist()
    for key in KEYS:
        hist.submit(key)
    snap = dict(intents=digests(intents, "intent"), audit=digests(audit, "record"))
    hist.observe("stream_snapshot", "persistence", label="before", **snap, streams=STREAMS)
    for mode in ("SIGTERM", "SIGKILL"):
        hist.nemesis("restart_nats", "persistence", mode=mode)
        hist.observe("stream_snapshot", "persistence", label=f"after_{mode}", **snap,
                     streams=STREAMS if streams_after is None or mode == "SIGTERM" else streams_after)
    return hist


def test_unchanged_content_across_restarts():
    intents, audit = exported()
    metrics, evidence = persistence(recorded(run(intents, audit), intents=intents, audit=audit))
    assert metrics == {"acked_intents_lost": 0, "intents_changed_or_lost": 0, "audit_records_changed_or_lost": 0,
                       "audit_records_compared": 3, "nats_restarts_sigterm": 1, "nats_restarts_sigkill": 1,
                       "intents_compared": 3, "acked_intents_checked": 3,
                       "stream_messages_changed_or_lost": 0, "stream_messages_compared": 9}
    assert evidence["snapshots"] == ["before", "after_SIGTERM", "after_SIGKILL"]


def test_events_and_kv_messages_lost_or_changed_across_restarts():
    intents, audit = exported()
    lost_event = {**STREAMS, "EVENTS": {}}
    changed_kv = {**STREAMS, "KV_safety": {"3": ["$KV.safety.global", "XX"], "4": STREAMS["KV_safety"]["4"]}}
    for after in (lost_event, changed_kv):
        metrics, evidence = persistence(recorded(run(intents, audit, streams_after=after), intents=intents,
                                                 audit=audit))
        assert metrics["stream_messages_changed_or_lost"] == 2, after  # before->after and SIGTERM->after
        assert evidence["stream_messages_changed"][0]["then"] == "after_SIGKILL"


def test_a_kv_revision_superseded_by_a_newer_one_may_roll_off():
    intents, audit = exported()
    rolled = {**STREAMS, "KV_safety": {"4": STREAMS["KV_safety"]["4"], "9": ["$KV.safety.global", "dd"]}}
    metrics, _ = persistence(recorded(run(intents, audit, streams_after=rolled), intents=intents, audit=audit))
    assert metrics["stream_messages_changed_or_lost"] == 0


def test_record_changed_in_the_final_export():
    intents, audit = exported()
    hist = run(intents, audit)
    audit[1] = {**audit[1], "record": {**audit[1]["record"], "attempts": 2}}
    metrics, evidence = persistence(recorded(hist, intents=intents, audit=audit))
    # Each of the three snapshots disagrees with the final export about that one subject.
    assert metrics["audit_records_changed_or_lost"] == 3
    assert {c["subject"] for c in evidence["audit_changed"]} == {audit[1]["subject"]}
    assert {c["then"] for c in evidence["audit_changed"]} == {"final_export"}


def test_record_lost_from_the_final_export():
    intents, audit = exported()
    metrics, _ = persistence(recorded(run(intents, audit), intents=intents, audit=audit[:-1]))
    assert metrics["audit_records_changed_or_lost"] == 3


def test_intent_changed_between_snapshots():
    intents, audit = exported()
    hist = Hist()
    before = dict(intents=digests(intents, "intent"), audit=digests(audit, "record"))
    after = dict(before, intents={**before["intents"], intents[0]["subject"]: "0" * 64})
    hist.observe("stream_snapshot", "persistence", label="before", **before)
    hist.observe("stream_snapshot", "persistence", label="after_SIGKILL", **after)
    metrics, evidence = persistence(recorded(hist, intents=intents, audit=audit))
    assert metrics["intents_changed_or_lost"] == 2  # before→after, and after→final export
    assert evidence["intents_changed"][0] == {"subject": intents[0]["subject"], "in": "before",
                                              "then": "after_SIGKILL"}


def test_acked_intent_missing_from_the_intent_stream():
    intents, audit = exported()
    hist = run(intents, audit)
    hist.submit("persistence-00099")  # acked while nats restarted, never in the snapshot
    metrics, evidence = persistence(recorded(hist, intents=intents, audit=audit))
    assert metrics["acked_intents_lost"] == 1
    assert evidence["lost"] == ["persistence-00099"]


def test_without_snapshots_the_measurements_are_missing():
    intents, audit = exported()
    hist = Hist()
    hist.submit(KEYS[0])
    metrics, _ = persistence(recorded(hist, intents=intents, audit=audit))
    for name in ("acked_intents_lost", "intents_changed_or_lost", "audit_records_changed_or_lost",
                 "audit_records_compared"):
        assert metrics[name] is None
    assert metrics["nats_restarts_sigterm"] == 0


def test_restart_kills_are_counted_by_target():
    hist = Hist()
    for target in ("cell-0", "cell-1", "api"):
        hist.nemesis("kill", "restart", target=target)
        hist.nemesis("start", "restart", target=target)
    hist.nemesis("kill", "chaos", target="cell-0")  # another scenario's kill
    metrics, evidence = restarts(recorded(hist))
    assert metrics == {"restart_cell_kills": 2, "restart_api_kills": 1, "restart_effector_kills": 0,
                       "restart_both_cells_kills": 0, "restart_nats_pauses": 0, "restart_nats_longest_pause_s": None}
    assert evidence["kills"] == ["cell-0", "cell-1", "api"]


def test_restart_effector_kill_both_cells_down_and_nats_pause():
    hist = Hist()
    hist.nemesis("kill", "restart", target="effector")
    hist.nemesis("start", "restart", target="effector")
    hist.nemesis("kill", "restart", target="cell-0")
    hist.nemesis("kill", "restart", target="cell-1")  # both down at once
    hist.nemesis("start", "restart", target="cell-0")
    hist.nemesis("start", "restart", target="cell-1")
    hist.nemesis("pause", "restart", target="nats", time_ms=10_000)
    hist.nemesis("resume", "restart", target="nats", time_ms=11_600)
    hist.nemesis("pause", "chaos", target="nats", time_ms=20_000)  # another scenario's pause
    hist.nemesis("resume", "chaos", target="nats", time_ms=25_000)
    metrics, evidence = restarts(recorded(hist))
    assert metrics["restart_effector_kills"] == 1
    assert metrics["restart_both_cells_kills"] == 1
    assert metrics["restart_nats_pauses"] == 1 and metrics["restart_nats_longest_pause_s"] == 1.6
    assert evidence["nats_pauses_s"] == [1.6]


def test_restart_cells_killed_one_after_another_are_not_both_down():
    hist = Hist()
    for target in ("cell-0", "cell-1"):
        hist.nemesis("kill", "restart", target=target)
        hist.nemesis("start", "restart", target=target)
    hist.nemesis("pause", "restart", target="nats")  # never resumed: not a measured pause
    metrics, _ = restarts(recorded(hist))
    assert metrics["restart_both_cells_kills"] == 0 and metrics["restart_nats_pauses"] == 0


def test_cold_start_not_observed_measures_nothing():
    metrics, evidence = cold_start(recorded())
    assert metrics == {} and "note" in evidence


def test_cold_start_observation():
    hist = Hist()
    hist.observe("cold_start", "deployment", ready_s=4.2, status_exit=0, down_exit=0,
                 first_intent_outcome="DENIED", first_intent_terminal_s=0.3, processes_left=1)
    metrics, _ = cold_start(recorded(hist))
    assert metrics == {"cold_start_ready_s": 4.2, "stack_status_exit_code": 0, "stack_down_exit_code": 0,
                       "first_intent_executed": 0, "first_intent_terminal_s": 0.3, "processes_left_after_down": 1}


def test_snapshot_digest_of_published_bytes_equals_digest_of_exported_json():
    """Snapshots hash the bytes a service published; the final export re-serialises parsed JSON:
    the comparison is only meaningful because both are the same canonical form."""
    from exoarmur.contracts import AuditRecordV1
    the_intent = intent("persistence-00001")
    rec = record(the_intent)
    assert AuditRecordV1.model_validate(rec).canonical() == canonical_json(rec)
    assert the_intent.canonical() == canonical_json(intent_row(the_intent)["intent"])
