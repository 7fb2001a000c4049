"""Gate 1 under power loss: what was acknowledged before the power went must be there after.

Pure, over the ``power_loss`` scenario's observations: for each power loss, what was
acknowledged just before (``acknowledged_before``: AUDIT records by subject with their sha256,
ledger effect keys), what its disks dropped (``power_loss``), how the stores came back
(``power_restored``), what was stored right after (``stored_after``); and at the end the
intents the api acknowledged (``acked_intents``) and everything stored (``stored_final``).
Comparing right after a restart as well as at the end matters: redelivery may later re-create
a lost record, which must not hide that it was lost. Losses are counted once per record subject
and per effect key; the evidence says before which power loss each was last seen.
"""

from __future__ import annotations

from exoarmur.contracts import key_digest
from exoarmur_cli.checkers.common import first
from exoarmur_cli.recorded import Recorded

SCENARIO = "power_loss"
CANARY = ".power-loss-canary"  # the driver's canary file at each disk's root


def _observed(rec: Recorded) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for event in rec.history:
        if event.scenario == SCENARIO:
            found.setdefault(event.f, []).append(event.value)
    return found


def _by_round(values: list[dict]) -> dict[int, dict]:
    return {v["round"]: v for v in values}


def _lost_records(before: dict, afters: list[dict | None]) -> list[dict]:
    lost = []
    for subject, digest in (before.get("audit") or {}).items():
        for after in afters:
            held = None if after is None or after.get("audit") is None else after["audit"].get(subject)
            if held != digest:
                lost.append({"round": before["round"], "subject": subject,
                             "then": "missing" if held is None else "changed"})
                break
    return lost


def _lost_effects(before: dict, afters: list[dict | None]) -> list[dict]:
    held = [set((after or {}).get("ledger") or []) for after in afters]
    lost = []
    for key in before.get("ledger") or []:
        if any(key not in keys for keys in held):
            lost.append({"round": before["round"], "effect_key": key})
    return lost


def _stack_bytes(dropped: dict) -> int:
    """Unsynced bytes of the stores themselves: the drop without the harness's canary file."""
    return dropped.get("bytes_dropped", 0) - sum(f["bytes"] for f in dropped.get("files", [])
                                                 if f.get("path") == "/" + CANARY)


def power_loss(rec: Recorded) -> tuple[dict, dict]:
    seen = _observed(rec)
    losses = seen.get("power_loss", [])
    if not losses:
        return {}, {"note": "no power loss was recorded"}
    befores, afters = _by_round(seen.get("acknowledged_before", [])), _by_round(seen.get("stored_after", []))
    restores = _by_round(seen.get("power_restored", []))
    final = (seen.get("stored_final") or [None])[-1]
    acked = [tuple(p) for p in (seen.get("acked_intents") or [{"pairs": []}])[-1]["pairs"]]

    dropped = [sum(d.get("bytes_dropped", 0) for d in loss["dropped"].values()) for loss in losses]
    canaries_survived = sum(1 for r in restores.values() for left in r.get("canary_survived", {}).values() if left)
    lost_records, lost_effects = [], []
    for round_, before in sorted(befores.items()):
        lost_records += _lost_records(before, [afters.get(round_), final])
        lost_effects += _lost_effects(before, [afters.get(round_), final])
    final_ledger = set((final or {}).get("ledger") or [])
    executed_without_effect = sorted(set((final or {}).get("executed_effect_keys") or []) - final_ledger)
    final_intents = {tuple(p) for p in (final or {}).get("intents") or []}
    lost_intents = sorted(p for p in acked if p not in final_intents)
    final_audit = (final or {}).get("audit") or {}
    without_terminal = sorted(p for p in acked if f"exo.audit.{p[0]}.{key_digest(*p)}" not in final_audit)
    failed_restores = [r for r in restores.values() if not (r["ready"] and r.get("api_ready")
                                                           and all(r["started"].values())
                                                           and not r.get("streams_missing"))]
    problems = [line for r in restores.values() for line in r.get("nats_log_problems", [])]
    complete = final is not None and final.get("intents") is not None and final.get("audit") is not None

    metrics = {
        "power_losses": len(losses),
        "power_losses_without_dropped_bytes": sum(1 for d in dropped if d <= 0),
        "power_loss_unsynced_bytes_dropped_min": min(dropped),
        "power_loss_canaries_survived": canaries_survived if len(restores) == len(losses) else None,
        "power_loss_acked_intents": len(acked),
        "power_loss_acked_intents_lost": len(lost_intents) if complete else None,
        "power_loss_intents_without_terminal": len(without_terminal) if complete else None,
        "power_loss_records_compared": len({s for b in befores.values() for s in b.get("audit") or {}}),
        "power_loss_acked_records_lost": len({r["subject"] for r in lost_records}) if befores else None,
        "power_loss_effects_compared": len({k for b in befores.values() for k in b.get("ledger") or []}),
        "power_loss_acked_effects_lost": (len({e["effect_key"] for e in lost_effects} | set(executed_without_effect))
                                          if complete else None),
        "power_loss_restart_failures": len(failed_restores) + len(losses) - len(restores),
        "power_loss_store_errors": len(problems),
    }
    key_of = {f"exo.audit.{t}.{key_digest(t, k)}": f"{t}:{k}" for t, k in acked}
    for lost in lost_records:
        lost["intent"] = key_of.get(lost["subject"], "?")
    evidence = {
        "per_power_loss": [{"round": loss["round"], "target": loss["target"],
                            "unsynced_bytes_dropped": {h: d.get("bytes_dropped") for h, d in loss["dropped"].items()},
                            "stack_bytes_dropped": {h: _stack_bytes(d) for h, d in loss["dropped"].items()},
                            "files_dropped": {h: d.get("files_dropped") for h, d in loss["dropped"].items()},
                            "creates_dropped": {h: d.get("creates_dropped") for h, d in loss["dropped"].items()}}
                           for loss in losses],
        "lost_intents": first(lost_intents, 20), "lost_records": first(lost_records, 20),
        "lost_effects": first(lost_effects, 20), "executed_without_effect": first(executed_without_effect, 20),
        "acked_without_terminal": first(without_terminal, 20),
        "failed_restarts": first(failed_restores), "store_errors": first(problems),
    }
    return metrics, evidence
