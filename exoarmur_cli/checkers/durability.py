"""Gates 1, 2, 4: content survives NATS restarts; kills converge; a cold start works."""

from __future__ import annotations

import hashlib

from exoarmur.contracts import canonical_json
from exoarmur_cli.checkers.common import first
from exoarmur_cli.recorded import Recorded


def persistence(rec: Recorded) -> tuple[dict, dict]:
    """Every message in an earlier snapshot must be byte-identical in every later one and in
    the final export (compared by sha256 of content, not by count)."""
    snapshots = [e.value for e in rec.history if e.scenario == "persistence" and e.f == "stream_snapshot"]
    restarts = [e.value["mode"] for e in rec.history if e.scenario == "persistence" and e.f == "restart_nats"]
    final = {
        "intents": {r["subject"]: hashlib.sha256(canonical_json(r["intent"])).hexdigest() for r in rec.intents},
        "audit": {r["subject"]: hashlib.sha256(canonical_json(r["record"])).hexdigest() for r in rec.audit},
    }
    changed = {"intents": [], "audit": []}
    for i, snap in enumerate(snapshots):
        for later in snapshots[i + 1:] + [dict(final, label="final_export")]:
            for stream in ("intents", "audit"):
                for subject, digest in snap[stream].items():
                    if later[stream].get(subject) != digest:
                        changed[stream].append({"subject": subject, "in": snap["label"], "then": later["label"]})
    streams_changed = _whole_streams_changed(snapshots)
    acked = {e.value["key"] for e in rec.history if e.scenario == "persistence" and e.f == "submit" and e.type == "ok"}
    in_export = {r["intent"]["idempotency_key"] for r in rec.intents}
    lost = sorted(acked - in_export)
    compared = len(snapshots[0]["audit"]) if snapshots else None
    metrics = {
        "acked_intents_lost": len(lost) if snapshots else None,
        "intents_changed_or_lost": len(changed["intents"]) if snapshots else None,
        "audit_records_changed_or_lost": len(changed["audit"]) if snapshots else None,
        "audit_records_compared": compared,
        "intents_compared": len(snapshots[0]["intents"]) if snapshots else None,
        "stream_messages_changed_or_lost": len(streams_changed) if snapshots and "streams" in snapshots[0] else None,
        # each message counts once per later snapshot it was compared against
        "stream_messages_compared": sum(len(m) * (len(snapshots) - 1 - i) for i, snap in enumerate(snapshots)
                                        for m in snap.get("streams", {}).values()),
        "acked_intents_checked": len(acked),
        "nats_restarts_sigterm": restarts.count("SIGTERM"),
        "nats_restarts_sigkill": restarts.count("SIGKILL"),
    }
    return metrics, {"lost": first(lost), "intents_changed": first(changed["intents"]),
                     "stream_messages_changed": first(streams_changed),
                     "audit_changed": first(changed["audit"]), "snapshots": [s["label"] for s in snapshots]}


def _whole_streams_changed(snapshots: list[dict]) -> list[dict]:
    """Messages of EVENTS and the KV buckets that a later snapshot lost or changed.

    A KV bucket keeps a few revisions per key, so an old revision may roll off: only the latest
    message of each subject must survive, unless a later snapshot holds a newer one of it."""
    changed = []
    for i, snap in enumerate(snapshots):
        for later in snapshots[i + 1:]:
            for stream, messages in snap.get("streams", {}).items():
                after = later.get("streams", {}).get(stream, {})
                newest = {}
                for seq, (subject, _) in after.items():
                    newest[subject] = max(newest.get(subject, 0), int(seq))
                for seq, (subject, digest) in messages.items():
                    superseded = stream.startswith("KV_") and newest.get(subject, 0) > int(seq)
                    if after.get(seq) != [subject, digest] and not superseded:
                        changed.append({"stream": stream, "seq": int(seq), "in": snap["label"], "then": later["label"]})
    return changed


def restarts(rec: Recorded) -> tuple[dict, dict]:
    """The faults the restart scenario applied, counted from its nemesis events: single kills by
    target, moments when both cells were down at once, and nats-server pauses (with the longest
    one, from its ``pause`` to its ``resume`` event: the recorded window covers the fault)."""
    events = [e for e in rec.history if e.scenario == "restart" and e.process == "nemesis"]
    kills = [e.value["target"] for e in events if e.f == "kill"]
    down: set[str] = set()
    both_cells = 0
    paused_at: dict[str, float] = {}
    pauses: list[float] = []
    for e in events:
        target = e.value.get("target", "")
        if e.f == "kill" and target.startswith("cell"):
            down.add(target)
            both_cells += len(down) == 2
        elif e.f == "start":
            down.discard(target)
        elif e.f == "pause" and target == "nats":
            paused_at[target] = e.time_ms
        elif e.f == "resume" and target in paused_at:
            pauses.append((e.time_ms - paused_at.pop(target)) / 1000)
    return {
        "restart_cell_kills": sum(1 for k in kills if k.startswith("cell")),
        "restart_api_kills": kills.count("api"),
        "restart_effector_kills": kills.count("effector"),
        "restart_both_cells_kills": both_cells,
        "restart_nats_pauses": len(pauses),
        "restart_nats_longest_pause_s": round(max(pauses), 3) if pauses else None,
    }, {"kills": kills, "nats_pauses_s": [round(p, 3) for p in pauses]}


def cold_start(rec: Recorded) -> tuple[dict, dict]:
    observed = [e.value for e in rec.history if e.scenario == "deployment" and e.f == "cold_start"]
    if not observed:
        return {}, {"note": "no cold start was observed"}
    o = observed[-1]
    return {
        "cold_start_ready_s": o.get("ready_s"),
        "stack_status_exit_code": o.get("status_exit"),
        "stack_down_exit_code": o.get("down_exit"),
        "first_intent_executed": None if o.get("first_intent_outcome") is None else int(o["first_intent_outcome"] == "EXECUTED"),
        "first_intent_terminal_s": o.get("first_intent_terminal_s"),
        "processes_left_after_down": o.get("processes_left"),
    }, {"cold_start": o}
