"""Check 2, decisions: every recorded decision re-derived from the recorded intent and snapshot
with ``replay_decisions`` (the one implementation gate 3 uses)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exoarmur_cli.checkers.replay import replay_decisions
from exoarmur_cli.verify.checks import INTENTS_PATH, Check


def check_decisions(audit_rows: list[dict], intent_rows: list[dict], intents_unreadable: list[int]) -> Check:
    result = replay_decisions(audit_rows, intent_rows)
    problems = [{"kind": "mismatch", **m,
                 "text": f"{m['intent']}: recorded {_pair(m['recorded'])} (decision "
                         f"{_pair(m['recorded']['decision'])}), replayed {_pair(m['replayed'])}"}
                for m in result.mismatches]
    problems += [{"kind": "intent_hash", "audit_id": a,
                  "text": f"{a}: the recorded intent's sha256 is not the record's intent_hash"}
                 for a in result.intent_hash_mismatches]
    problems += [{"kind": "missing_intent", "audit_id": a, "text": f"{a}: no recorded intent to replay it from"}
                 for a in result.missing_intents]
    problems += [{"kind": "intents_unreadable", "line": n, "text": f"{INTENTS_PATH} line {n}: not a JSON object"}
                 for n in intents_unreadable]
    counts = {"records": len(audit_rows), "replayed": result.replayed, "mismatches": len(result.mismatches),
              "intent_hash_mismatches": len(result.intent_hash_mismatches),
              "missing_intents": len(result.missing_intents), "unreadable": result.unreadable_records,
              "reasons_covered": len(result.reasons_covered)}
    summary = (f"{result.replayed} replayed, {len(result.mismatches)} mismatches, "
               f"{len(result.reasons_covered)} decision reasons")
    extra = [f"{v} {k.replace('_', ' ')}" for k, v in counts.items()
             if k in ("intent_hash_mismatches", "missing_intents", "unreadable") and v]
    return Check("decisions", not problems, ", ".join([summary, *extra]), counts, tuple(problems))


def _pair(value: Mapping[str, Any]) -> str:
    return f"{value['outcome']}/{value['reason_code']}"
