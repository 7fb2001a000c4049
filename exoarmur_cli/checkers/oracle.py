"""Gate 3's second oracle: the safety contract as a decision table, written in the harness.

Replay (``replay.py``) re-runs the stack's own ``decide()``, so a bug in ``decide()`` or a
snapshot the stack misreports replays "identically". This module judges every recorded
decision against a table written from the contract instead, fed with the harness's own facts
wherever it has them:

- the node's owner comes from the harness's run parameters (``node_owners``), not from the
  snapshot's ``node_tenant``;
- the intent (tenant, action class, hash) comes from the INTENTS export, hashed here;
- the submission time is the INTENTS message's server timestamp (what the contract calls
  ``submitted_at_ms``), and the approval wait is the harness's declared policy;
- switch and approval values come from the snapshot; ``kv_revisions.py`` checks those
  against the KV buckets' own history;
- an approval is late when it was granted once the approval wait had run out: by the snapshot's
  ``granted_at_ms``, or by the harness's own log of when it asked for that grant (a grant is made
  no earlier than it was asked for, so a snapshot that lost its grant time cannot hide it).

The contract, in precedence order (the broadest refusal first; exactly one row applies):

1. the intent's node has no owner                          -> DENIED  UNKNOWN_NODE
2. the node belongs to another tenant                      -> DENIED  TENANT_MISMATCH
3. the safety state could not be read (fail closed)        -> DENIED  SAFETY_STATE_UNAVAILABLE
4. the global kill switch is engaged                       -> DENIED  KILL_SWITCH_GLOBAL
5. the intent's tenant's kill switch is engaged            -> DENIED  KILL_SWITCH_TENANT
6. A0/A1 (no approval needed)                              -> EXECUTE OK
7. A2/A3, no approval yet, waited < the approval wait      -> PENDING_APPROVAL APPROVAL_REQUIRED
8. A2/A3, no approval yet, waited >= the approval wait     -> EXPIRED APPROVAL_EXPIRED
9. A2/A3, approval granted after the approval wait ran out -> EXPIRED APPROVAL_EXPIRED
10. A2/A3, approval bound to another intent hash           -> DENIED  APPROVAL_MISMATCH
11. A2/A3, approval for this hash, status DENIED           -> DENIED  APPROVAL_DENIED
12. A2/A3, APPROVED for this hash, expires_at <= now        -> EXPIRED APPROVAL_EXPIRED
13. A2/A3, APPROVED for this hash, expires_at > now         -> EXECUTE OK

"EXECUTE" is the decision to act (``outcome=EXECUTED, reason_code=OK, execute=true``); the
record's final outcome is then EXECUTED/OK, or FAILED with the reason the effect failed.
"""

from __future__ import annotations

from itertools import product
from typing import Any

from pydantic import ValidationError

from exoarmur.contracts import IntentV1
from exoarmur_cli.checkers.common import first
from exoarmur_cli.history import INVOKE
from exoarmur_cli.recorded import Recorded

ANY = "-"
COLUMNS = ("node", "readable", "global_switch", "tenant_switch", "needs_approval",
           "approval", "late", "hash", "status", "expired", "waited")
# The values each column can take; an absent approval has no grant time, hash, status or expiry.
DOMAIN: dict[str, tuple] = {
    "node": ("unknown", "own", "foreign"), "readable": (True, False), "global_switch": (True, False),
    "tenant_switch": (True, False), "needs_approval": (True, False), "approval": ("absent", "present"),
    "late": (True, False), "hash": ("match", "differs"), "status": ("APPROVED", "DENIED"), "expired": (True, False),
    "waited": (True, False),
}
EXECUTE = ("EXECUTED", "OK")

# node     readable glob   tenant A2/A3  approval   late   hash       status      expired waited -> (outcome, reason)
TABLE: tuple[tuple, ...] = (
    ("unknown", ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ("DENIED", "UNKNOWN_NODE")),
    ("foreign", ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ("DENIED", "TENANT_MISMATCH")),
    ("own", False, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ("DENIED", "SAFETY_STATE_UNAVAILABLE")),
    ("own", True, True, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ("DENIED", "KILL_SWITCH_GLOBAL")),
    ("own", True, False, True, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ("DENIED", "KILL_SWITCH_TENANT")),
    ("own", True, False, False, False, ANY, ANY, ANY, ANY, ANY, ANY, EXECUTE),
    ("own", True, False, False, True, "absent", ANY, ANY, ANY, ANY, False, ("PENDING_APPROVAL", "APPROVAL_REQUIRED")),
    ("own", True, False, False, True, "absent", ANY, ANY, ANY, ANY, True, ("EXPIRED", "APPROVAL_EXPIRED")),
    ("own", True, False, False, True, "present", True, ANY, ANY, ANY, ANY, ("EXPIRED", "APPROVAL_EXPIRED")),
    ("own", True, False, False, True, "present", False, "differs", ANY, ANY, ANY, ("DENIED", "APPROVAL_MISMATCH")),
    ("own", True, False, False, True, "present", False, "match", "DENIED", ANY, ANY, ("DENIED", "APPROVAL_DENIED")),
    ("own", True, False, False, True, "present", False, "match", "APPROVED", True, ANY, ("EXPIRED", "APPROVAL_EXPIRED")),
    ("own", True, False, False, True, "present", False, "match", "APPROVED", False, ANY, EXECUTE),
)
APPROVAL_CLASSES = frozenset({"A2", "A3"})


class TableError(ValueError):
    """The facts match no row, or more than one: the table is incomplete or ambiguous."""


def lookup(facts: dict[str, Any]) -> tuple[str, str]:
    """The (outcome, reason) of the one row matching ``facts`` (a value per column)."""
    hits = [row[-1] for row in TABLE
            if all(want == ANY or facts[col] == want for col, want in zip(COLUMNS, row[:-1]))]
    if len(hits) != 1:
        raise TableError(f"{len(hits)} rows match {facts}")
    return hits[0]


def all_facts():
    """Every combination of the columns' values (an absent approval has no hash/status/expiry)."""
    for combo in product(*(DOMAIN[c] for c in COLUMNS)):
        facts = dict(zip(COLUMNS, combo))
        if facts["approval"] == "absent":
            if (facts["late"], facts["hash"], facts["status"], facts["expired"]) != (False, "match", "APPROVED", False):
                continue  # one representative: the four columns do not exist then
            facts.update(late=None, hash=None, status=None, expired=None)
        yield facts


def facts_of(intent: dict, snapshot: dict, node_owner: str | None, *, submitted_at_ms: int | None = None,
             approval_wait_ms: int | None = None, grant_asked_ms: float | None = None) -> dict[str, Any]:
    """The table's columns for one decision. Harness facts (node owner, intent, submission
    time, approval wait, when it asked for the approval) take precedence; the snapshot
    supplies the state that was read."""
    now = snapshot["now_ms"]
    submitted = snapshot["submitted_at_ms"] if submitted_at_ms is None else submitted_at_ms
    wait = snapshot["approval_wait_ms"] if approval_wait_ms is None else approval_wait_ms
    approval = snapshot.get("approval")
    own_hash = IntentV1.model_validate(intent).intent_hash()
    granted = [t for t in (grant_asked_ms, (approval or {}).get("granted_at_ms")) if t is not None]
    return {
        "node": "unknown" if node_owner is None else "own" if node_owner == intent["tenant_id"] else "foreign",
        "readable": bool(snapshot["readable"]),
        "global_switch": bool(snapshot.get("global_switch")),
        "tenant_switch": bool(snapshot.get("tenant_switch")),
        "needs_approval": intent["action_class"] in APPROVAL_CLASSES,
        "approval": "absent" if approval is None else "present",
        "late": None if approval is None else any(t - submitted >= wait for t in granted),
        "hash": None if approval is None else "match" if approval["intent_hash"] == own_hash else "differs",
        "status": None if approval is None else approval["status"],
        "expired": None if approval is None else approval["expires_at_ms"] <= now,
        "waited": now - submitted >= wait,
    }


def expected(intent: dict, snapshot: dict, node_owner: str | None, *, submitted_at_ms: int | None = None,
             approval_wait_ms: int | None = None, grant_asked_ms: float | None = None) -> tuple[str, str]:
    """(outcome, reason) the contract demands for ``intent`` decided on ``snapshot``."""
    return lookup(facts_of(intent, snapshot, node_owner, submitted_at_ms=submitted_at_ms,
                           approval_wait_ms=approval_wait_ms, grant_asked_ms=grant_asked_ms))


def consistent(want: tuple[str, str], record: dict) -> bool:
    """The record's decision and final outcome agree with the table's (outcome, reason)."""
    decision = record["decision"]
    said = (decision["outcome"], decision["reason_code"])
    if want == EXECUTE:
        if said != EXECUTE or decision.get("execute") is not True:
            return False
        return (record["outcome"], record["reason_code"]) == EXECUTE or \
            (record["outcome"] == "FAILED" and record["reason_code"] != "OK")
    return said == want and decision.get("execute") is False and (record["outcome"], record["reason_code"]) == want


def _intents_by_pair(rec: Recorded) -> dict[tuple[str, str], dict]:
    found: dict[tuple[str, str], dict] = {}
    for row in rec.intents:
        intent = row.get("intent") or {}
        found.setdefault((intent.get("tenant_id"), intent.get("idempotency_key")), row)
    return found


def _grants_asked(rec: Recorded) -> dict[tuple, float]:
    """When the harness first asked the api for each approval it granted, by (tenant, key, hash,
    status): the approval a snapshot holds was granted no earlier."""
    asked: dict[tuple, float] = {}
    for e in rec.history:
        if e.f == "approval" and e.type == INVOKE and "invoked_wall_ms" in e.value:
            ident = (e.value["tenant_id"], e.value["key"], e.value["intent_hash"], e.value["status"])
            asked[ident] = min(asked.get(ident, e.value["invoked_wall_ms"]), e.value["invoked_wall_ms"])
    return asked


def _grant_asked_ms(asked: dict[tuple, float], snapshot: dict) -> float | None:
    approval = snapshot.get("approval")
    if not approval:
        return None
    return asked.get((approval["tenant_id"], approval["idempotency_key"], approval["intent_hash"], approval["status"]))


def _declared_wait_ms(rec: Recorded) -> int | None:
    wait_s = rec.params.get("policy", {}).get("approval_wait_s")
    return None if wait_s is None else round(wait_s * 1000)


def decision_oracle(rec: Recorded) -> tuple[dict, dict]:
    """Every recorded decision against the table, fed with the harness's facts."""
    if "node_owners" not in rec.params:
        return {}, {"missing": "run_params has no node_owners: the oracle has no owner to judge by"}
    owners: dict[str, str] = rec.params["node_owners"]
    wait_ms = _declared_wait_ms(rec)
    intents = _intents_by_pair(rec)
    asked = _grants_asked(rec)
    checked, mismatches, owner_bad, inputs_bad, unjudged = 0, [], [], [], []
    reasons: set[str] = set()
    for row in rec.audit:
        r = row.get("record") or {}
        ref = f"{r.get('tenant_id')}:{r.get('idempotency_key')}"
        source = intents.get((r.get("tenant_id"), r.get("idempotency_key")))
        if source is None:
            unjudged.append({"intent": ref, "why": "no intent in INTENTS for this record"})
            continue
        try:
            intent, snap = source["intent"], r["snapshot"]
            owner = owners.get(intent["node_id"])
            want = expected(intent, snap, owner, submitted_at_ms=source["timestamp_ms"], approval_wait_ms=wait_ms,
                            grant_asked_ms=_grant_asked_ms(asked, snap))
            agrees = consistent(want, r)
        except (TypeError, KeyError, ValidationError, TableError) as exc:
            unjudged.append({"intent": ref, "why": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        checked += 1
        reasons.add(want[1])
        if snap.get("node_tenant") != owner:
            owner_bad.append({"intent": ref, "snapshot_node_tenant": snap.get("node_tenant"), "harness_owner": owner})
        if snap.get("submitted_at_ms") != source["timestamp_ms"] or \
                (wait_ms is not None and snap.get("approval_wait_ms") != wait_ms):
            inputs_bad.append({"intent": ref, "snapshot": [snap.get("submitted_at_ms"), snap.get("approval_wait_ms")],
                               "harness": [source["timestamp_ms"], wait_ms]})
        if not agrees:
            mismatches.append({"intent": ref, "expected": list(want),
                               "recorded": {"decision": r.get("decision"), "outcome": r.get("outcome"),
                                            "reason_code": r.get("reason_code")}})
    return {
        "oracle_decisions_checked": checked,
        "oracle_mismatches": len(mismatches),
        "oracle_records_unjudged": len(unjudged),
        "oracle_reasons_covered": len(reasons),
        "snapshot_node_owner_mismatches": len(owner_bad),
        "snapshot_input_mismatches": len(inputs_bad),
    }, {"mismatches": first(mismatches), "unjudged": first(unjudged), "node_owner_mismatches": first(owner_bad),
        "input_mismatches": first(inputs_bad), "reasons": sorted(reasons),
        "approval_wait_ms": wait_ms if wait_ms is not None else "from each snapshot (no declared policy)"}
