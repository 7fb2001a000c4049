"""Hand-written recorded data for checker unit tests: events, audit/intent/ledger rows.

Imported by ``tests/unit/test_checkers_*.py`` as ``from builders import ...`` (pytest's default
``prepend`` import mode puts ``tests/unit`` on ``sys.path``). Shapes follow ``recorded.py``,
``client.py`` and ``export.py``; records are real ``AuditRecordV1`` models, sealed, so the
same builders serve the replay checker and the checkers that read plain dicts.
"""

from __future__ import annotations

from typing import Any

from exoarmur.contracts import (
    ActionClass, ApprovalV1, AuditRecordV1, IntentV1, RefusalCounterV1, SafetySnapshot,
    audit_id_for, key_digest,
)
from exoarmur.decision import decide
from exoarmur_cli.checkers.common import scenario_of_key
from exoarmur_cli.history import FAIL, INFO, INVOKE, OK, Event
from exoarmur_cli.recorded import Recorded

T0_WALL_MS = 1_700_000_000_000  # params["t0_wall_ms"]: the run's wall-clock start
NODE_OWNERS = {"n1": "t1", "n2": "t2"}


class Hist:
    """Appends events with increasing index and time (1 ms apart unless ``time_ms`` is given)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._time_ms = 0.0

    def add(self, type_: str, f: str, process: str = "harness", scenario: str = "-",
            time_ms: float | None = None, **value: Any) -> Event:
        self._time_ms = self._time_ms + 1 if time_ms is None else time_ms
        event = Event(len(self.events), self._time_ms, type_, f, process, scenario, value)
        self.events.append(event)
        return event

    def submit(self, key: str, tenant: str = "t1", *, answer: str | None = "ok", scenario: str | None = None,
               peer: str = "p1", node: str = "n1", tag: str = "", status: int | None = None,
               reason: str | None = None, duplicate: bool = False, time_ms: float | None = None,
               **invoke_extra: Any) -> None:
        """One submit as ``client.submit`` records it: an invoke, then (unless ``answer`` is None)
        an ``ok`` (202), a ``fail`` (refused, with ``status`` and ``reason``) or an ``info`` (no answer)."""
        scenario = scenario or scenario_of_key(key)
        ident = {"key": key, "tenant_id": tenant, "peer_id": peer, "node_id": node, "action_class": "A1",
                 "tag": tag, **invoke_extra}
        self.add(INVOKE, "submit", peer, scenario, time_ms, **ident)
        if answer == "ok":
            self.add(OK, "submit", peer, scenario, **ident, status=202, duplicate=duplicate, seq=len(self.events))
        elif answer == "fail":
            self.add(FAIL, "submit", peer, scenario, **ident, status=403 if status is None else status,
                     reason_code=reason)
        elif answer == "info":
            self.add(INFO, "submit", peer, scenario, **ident, status=0, error="TimeoutError")

    def nemesis(self, f: str, scenario: str, **value: Any) -> None:
        self.add(INFO, f, "nemesis", scenario, **value)

    def observe(self, f: str, scenario: str, **value: Any) -> None:
        self.add(INFO, f, "observer", scenario, **value)


def intent(key: str, tenant: str = "t1", *, node: str = "n1", action_class: str = "A1",
           **fields: Any) -> IntentV1:
    return IntentV1(intent_id=f"i-{key}", tenant_id=tenant, peer_id="p1", node_id=node, action="block_ip",
                    action_class=ActionClass(action_class), idempotency_key=key,
                    parameters={"ip": "10.0.0.1"}, **fields)


def snapshot(the_intent: IntentV1, now_ms: int = T0_WALL_MS + 1_000, **fields: Any) -> SafetySnapshot:
    """A readable snapshot with no switch engaged, the node owned by the intent's tenant."""
    base = dict(readable=True, node_tenant=NODE_OWNERS.get(the_intent.node_id, the_intent.tenant_id),
                now_ms=now_ms, submitted_at_ms=now_ms - 10, approval_wait_ms=60_000)
    return SafetySnapshot(**{**base, **fields})


def approval(the_intent: IntentV1, *, status: str = "APPROVED", expires_at_ms: int = T0_WALL_MS + 60_000,
             intent_hash: str | None = None, granted_at_ms: int | None = None) -> ApprovalV1:
    return ApprovalV1(tenant_id=the_intent.tenant_id, idempotency_key=the_intent.idempotency_key,
                      intent_hash=intent_hash or the_intent.intent_hash(), status=status,
                      expires_at_ms=expires_at_ms, granted_at_ms=granted_at_ms)


def record(the_intent: IntentV1, snap: SafetySnapshot | None = None, **overrides: Any) -> dict:
    """The sealed terminal record a cell would write for ``decide(intent, snap)``, as exported JSON.

    ``overrides`` replace fields before sealing (outcome, reason_code, attempts, breaker_state...),
    so a record can state something its decision does not, and still carry a valid seal."""
    snap = snap or snapshot(the_intent)
    decision = decide(the_intent, snap)
    fields = dict(
        audit_id=audit_id_for(the_intent.tenant_id, the_intent.idempotency_key),
        tenant_id=the_intent.tenant_id, intent_id=the_intent.intent_id,
        idempotency_key=the_intent.idempotency_key, intent_hash=the_intent.intent_hash(),
        node_id=the_intent.node_id, action=the_intent.action, action_class=the_intent.action_class,
        outcome=decision.outcome, reason_code=decision.reason_code, decision=decision, snapshot=snap,
        breaker_state="CLOSED", attempts=1 if decision.execute else 0, receipt=None, cell_id="cell-0",
        decided_at_ms=snap.now_ms,
    )
    fields.update(overrides)
    return AuditRecordV1(**fields).sealed().model_dump(mode="json")


def quick_record(key: str, tenant: str = "t1", *, node: str = "n1", action_class: str = "A1",
                 now_ms: int = T0_WALL_MS + 1_000, snap_fields: dict | None = None, **overrides: Any) -> dict:
    the_intent = intent(key, tenant, node=node, action_class=action_class)
    return record(the_intent, snapshot(the_intent, now_ms, **(snap_fields or {})), **overrides)


def audit_row(rec: dict, timestamp_ms: int | None = None, seq: int = 1) -> dict:
    subject = f"exo.audit.{rec['tenant_id']}.{key_digest(rec['tenant_id'], rec['idempotency_key'])}"
    return {"seq": seq, "subject": subject,
            "timestamp_ms": rec["snapshot"]["now_ms"] if timestamp_ms is None else timestamp_ms, "record": rec}


def intent_row(the_intent: IntentV1 | dict, timestamp_ms: int = T0_WALL_MS + 500, seq: int = 1) -> dict:
    data = the_intent.model_dump(mode="json") if isinstance(the_intent, IntentV1) else the_intent
    tenant, key = data["tenant_id"], data["idempotency_key"]
    return {"seq": seq, "subject": f"exo.intents.{tenant}.{key_digest(tenant, key)}", "msg_id": f"{tenant}:{key}",
            "timestamp_ms": timestamp_ms, "intent": data}


def ledger_row(key: str, tenant: str = "t1", *, node: str = "n1") -> dict:
    ref = f"{tenant}:{key}"
    return {"idempotency_key": ref, "intent_ref": ref, "tenant_id": tenant, "node_id": node, "action": "block_ip",
            "receipt_id": f"r-{ref}", "first_applied_at_ms": T0_WALL_MS, "calls": 1, "last_call_at_ms": T0_WALL_MS}


def refusal_row(reason: str, count: int, tenant: str = "t1") -> dict:
    data = RefusalCounterV1(api_id="api-0", tenant_id=tenant, reason_code=reason, count=count,
                            window_start_ms=T0_WALL_MS, window_end_ms=T0_WALL_MS + 1_000)
    return {"seq": 1, "subject": f"exo.events.refusals.{tenant}", "timestamp_ms": T0_WALL_MS,
            "data": data.model_dump(mode="json")}


def breaker_row(cell: str, from_state: str, to_state: str, at_ms: int, *, failures: int = 5, calls: int = 5) -> dict:
    """A breaker transition on EVENTS; its window (failures of calls) as the breaker reports it."""
    return {"seq": 1, "subject": f"exo.events.breaker.{cell}", "timestamp_ms": at_ms,
            "data": {"cell_id": cell, "breaker": "effector", "from": from_state, "to": to_state, "at_ms": at_ms,
                     "reason": "", "failures_in_window": failures, "calls_in_window": calls}}


def recorded(hist: Hist | None = None, *, records: list[dict] = (), audit: list[dict] = (), **parts: Any) -> Recorded:
    """A Recorded; ``records`` become audit rows (stored at their decision time)."""
    params = {"t0_wall_ms": T0_WALL_MS, **parts.pop("params", {})}
    return Recorded(history=hist.events if hist else [], audit=[*audit, *(audit_row(r) for r in records)],
                    params=params, **parts)
