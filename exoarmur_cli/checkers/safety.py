"""Gates 3, 5, 6: decisions replay; switches and approvals hold; tenants stay apart."""

from __future__ import annotations

from exoarmur_cli.checkers.common import first, quantile, submissions, audit_time_by_pair, wall_ms
from exoarmur_cli.checkers.replay import replay_decisions
from exoarmur_cli.history import OK, Tag
from exoarmur_cli.recorded import Recorded

APPROVAL_CLASSES = {"A2", "A3"}


def decision_replay(rec: Recorded) -> tuple[dict, dict]:
    result = replay_decisions(rec.audit, rec.intents)
    return {
        "decisions_replayed": result.replayed,
        "decision_mismatches": len(result.mismatches),
        "intent_hash_mismatches": len(result.intent_hash_mismatches),
        "audit_seal_failures": len(result.seal_failures),
        "records_without_intent": len(result.missing_intents) + result.unreadable_records,
        "decision_reasons_covered": len(result.reasons_covered),
    }, {"mismatches": first(result.mismatches), "reasons": list(result.reasons_covered),
        "seal_failures": first(result.seal_failures), "missing_intents": first(result.missing_intents)}


def _switch_windows(rec: Recorded, scope: str, scenario: str) -> list[tuple[int, int, int]]:
    """(engaged ack wall ms, disengage invoke wall ms, revision) for each engagement."""
    windows, start = [], None
    for e in rec.history:
        if e.f != "killswitch" or e.scenario != scenario or e.value.get("scope") != scope:
            continue
        if e.type == OK and e.value["engaged"]:
            start = (e.value["acked_wall_ms"], e.value["revision"])
        elif e.type == "invoke" and not e.value["engaged"] and start is not None:
            windows.append((start[0], e.value["invoked_wall_ms"], start[1]))
            start = None
    return windows


def _records(rec: Recorded) -> list[dict]:
    return [row["record"] for row in rec.audit]


def killswitch(rec: Recorded) -> tuple[dict, dict]:
    records = _records(rec)
    global_windows = _switch_windows(rec, "global", "killswitch")
    executed_in_window, propagation, unseen = [], [], 0
    for begin, end, revision in global_windows:
        executed_in_window += [r["idempotency_key"] for r in records
                               if r["outcome"] == "EXECUTED" and begin <= r["snapshot"]["now_ms"] <= end]
        seen = [r["snapshot"]["now_ms"] for r in records
                if r["snapshot"]["global_switch"] and r["snapshot"]["global_revision"] >= revision]
        if seen:
            propagation.append(max(0, min(seen) - begin))
        else:
            unseen += 1
    tenant_leaks = []
    for scope in {e.value.get("scope") for e in rec.history if e.f == "killswitch" and e.scenario == "killswitch"} - {"global", None}:
        for begin, end, _ in _switch_windows(rec, scope, "killswitch"):
            tenant_leaks += [r["idempotency_key"] for r in records if r["tenant_id"] == scope
                             and r["outcome"] == "EXECUTED" and begin <= r["snapshot"]["now_ms"] <= end]
    corrupt = [e.value for e in rec.history if e.f == "corrupt_safety_state"]
    fail_open, fail_closed = [], 0
    for begin, end in zip([c["wall_ms"] for c in corrupt if c["begin"]], [c["wall_ms"] for c in corrupt if not c["begin"]]):
        window = [r for r in records if begin <= r["snapshot"]["now_ms"] <= end]
        fail_open += [r["idempotency_key"] for r in window if r["outcome"] == "EXECUTED"]
        fail_closed += sum(1 for r in window if r["reason_code"] == "SAFETY_STATE_UNAVAILABLE")
    unapproved = [r["idempotency_key"] for r in records
                  if r["action_class"] in APPROVAL_CLASSES and r["outcome"] == "EXECUTED" and not _approved(r)]
    return {
        "global_switch_cycles": len(global_windows),
        "executions_while_global_engaged": len(executed_in_window),
        "killswitch_propagation_p99_ms": quantile(propagation, 0.99) if propagation and not unseen else None,
        "killswitch_cycles_unobserved": unseen,
        "tenant_switch_leaks": len(tenant_leaks),
        "fail_closed_executions": len(fail_open) if corrupt else None,
        "fail_closed_denials": fail_closed,
        "unapproved_a2a3_executed": len(unapproved),
    }, {"propagation_ms": propagation, "executed_while_engaged": first(executed_in_window),
        "tenant_leaks": first(tenant_leaks), "fail_open": first(fail_open), "unapproved": first(unapproved)}


def _approved(record: dict) -> bool:
    approval = record["snapshot"].get("approval")
    return bool(approval) and approval["status"] == "APPROVED" and approval["intent_hash"] == record["intent_hash"] \
        and approval["expires_at_ms"] > record["snapshot"]["now_ms"]


def tenancy(rec: Recorded) -> tuple[dict, dict]:
    subs = submissions(rec.history, "tenancy")
    cross = [s for s in subs if s.tag == Tag.CROSS_TENANT]
    bad = [s for s in subs if s.tag == Tag.BAD_INPUT]
    reads = [e for e in rec.history if e.f == "read_audit" and e.type in ("ok", "fail")]
    leaked_reads = [e.index for e in reads if e.type == OK and (
        e.value["target_tenant"] != e.value["caller_tenant"]
        or any(t != e.value["caller_tenant"] for t in e.value["record_tenants"]))]
    owners = rec.run.node_owners
    foreign_effects = [row["idempotency_key"] for row in rec.ledger if owners.get(row["node_id"]) != row["tenant_id"]]
    foreign_records = [r["idempotency_key"] for r in _records(rec)
                       if r["outcome"] == "EXECUTED" and owners.get(r["node_id"]) != r["tenant_id"]]
    arrived = audit_time_by_pair(rec)

    def p99(tag: Tag) -> float | None:
        return quantile([arrived[s.pair] - wall_ms(rec, s.invoke) for s in subs
                         if s.tag == tag and s.accepted and s.pair in arrived], 0.99)

    baseline, under = p99(Tag.QUIET_BASELINE), p99(Tag.QUIET_NOISE)
    quiet_refused = sum(1 for s in subs if s.tag in (Tag.QUIET_BASELINE, Tag.QUIET_NOISE) and s.refused)
    noisy_limited = sum(1 for s in subs if s.tag == Tag.NOISY and s.reason == "RATE_LIMITED_TENANT")
    return {
        "cross_tenant_attempts": len(cross),
        "cross_tenant_accepted": sum(1 for s in cross if s.accepted or s.done is None),
        "cross_tenant_reads": sum(1 for e in reads if e.value["target_tenant"] != e.value["caller_tenant"]),
        "cross_tenant_reads_leaked": len(leaked_reads),
        "cross_tenant_effects": len(foreign_effects) + len(foreign_records) if owners else None,
        "bad_input_not_refused_4xx": sum(1 for s in bad if not (s.refused and 400 <= s.done.value["status"] < 500
                                                                  and s.reason)),
        "quiet_tenant_p99_ms_baseline": baseline,
        "quiet_tenant_p99_ms_under_noise": under,
        "quiet_tenant_latency_ratio": under / max(baseline, 1.0) if under is not None and baseline is not None else None,
        "quiet_tenant_refused": quiet_refused,
        "noisy_tenant_rate_limited": noisy_limited,
    }, {"leaked_reads": first(leaked_reads), "foreign_effects": first(foreign_effects),
        "foreign_records": first(foreign_records)}
