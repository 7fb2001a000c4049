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
        "acked_intents_checked": len(acked),
        "nats_restarts_sigterm": restarts.count("SIGTERM"),
        "nats_restarts_sigkill": restarts.count("SIGKILL"),
    }
    return metrics, {"lost": first(lost), "intents_changed": first(changed["intents"]),
                     "audit_changed": first(changed["audit"]), "snapshots": [s["label"] for s in snapshots]}


def restarts(rec: Recorded) -> tuple[dict, dict]:
    kills = [e.value["target"] for e in rec.history if e.scenario == "restart" and e.f == "kill"]
    return {
        "restart_cell_kills": sum(1 for k in kills if k.startswith("cell")),
        "restart_api_kills": kills.count("api"),
    }, {"kills": kills}


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
