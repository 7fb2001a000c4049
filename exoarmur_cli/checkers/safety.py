"""Gates 3, 5, 6: decisions replay; switches and approvals hold; tenants stay apart."""

from __future__ import annotations

from dataclasses import dataclass

from exoarmur_cli.checkers.common import (
    Submission, audit_time_by_pair, first, intent_ref, quantile, records_by_pair, submissions, wall_ms,
)
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


@dataclass(frozen=True)
class SwitchWindow:
    """One engagement of a switch, as the operator's history saw it.

    A decision is placed in a window by causal order, not by comparing clocks: an intent whose
    submission was invoked after the engage was acknowledged was decided by a read that began
    after the ack, so it must not execute unless its read saw the release (a revision at or past
    ``release_revision``). Intents already in flight at the ack are judged at effect time instead.
    """

    scope: str
    engaged_index: int  # history index of the engage's ok
    acked_wall_ms: int
    revision: int
    release_index: int | None  # history index of the release's invoke
    release_invoked_wall_ms: int | None
    release_revision: int | None  # None: the release's revision is unknown (nothing counts as released)

    def covers_submission(self, invoke_index: int) -> bool:
        return invoke_index > self.engaged_index and (self.release_index is None or invoke_index < self.release_index)

    def saw_release(self, revision: int) -> bool:
        return self.release_revision is not None and revision >= self.release_revision


def _switch_windows(rec: Recorded, scope: str, scenario: str) -> list[SwitchWindow]:
    """Each engagement of ``scope`` in ``scenario``, from ack to the invoke of its release."""
    windows, engaged, release_invoke = [], None, None
    for e in rec.history:
        if e.f != "killswitch" or e.scenario != scenario or e.value.get("scope") != scope:
            continue
        if e.type == OK and e.value["engaged"]:
            engaged = e
        elif e.type == "invoke" and not e.value["engaged"] and engaged is not None:
            release_invoke = e
        elif e.type == OK and not e.value["engaged"] and engaged is not None and release_invoke is not None:
            windows.append(_window(scope, engaged, release_invoke, e.value.get("revision")))
            engaged = release_invoke = None
    if engaged is not None:  # never released (or its release never answered): open to the end
        windows.append(_window(scope, engaged, release_invoke, None))
    return windows


def _window(scope: str, engaged, release_invoke, release_revision) -> SwitchWindow:
    return SwitchWindow(scope, engaged.index, engaged.value["acked_wall_ms"], engaged.value["revision"],
                        release_invoke.index if release_invoke else None,
                        release_invoke.value["invoked_wall_ms"] if release_invoke else None, release_revision)


def _records(rec: Recorded) -> list[dict]:
    return [row["record"] for row in rec.audit]


def _switch_scopes(rec: Recorded, scenario: str) -> set[str]:
    return {e.value.get("scope") for e in rec.history if e.f == "killswitch" and e.scenario == scenario} - {None}


def _judged(subs: list[Submission], window: SwitchWindow) -> list[Submission]:
    """The submissions a window judges: invoked inside it, on its scope."""
    return [sub for sub in subs if window.covers_submission(sub.invoke.index)
            and (window.scope == "global" or sub.tenant_id == window.scope)]


def _executed_after_ack(subs: list[Submission], by_pair: dict, window: SwitchWindow, revision_field: str) -> list[str]:
    """Intents submitted after the engage's ack that executed without having seen the release."""
    return [r["idempotency_key"] for sub in _judged(subs, window) for r in by_pair.get(sub.pair, [])
            if r["outcome"] == "EXECUTED" and not window.saw_release(r["snapshot"][revision_field])]


def _effects_past_bound(rec: Recorded, window: SwitchWindow, bound_ms: float) -> list[str]:
    """Effects the effector applied later than ack + bound while the switch was still engaged."""
    end = window.release_invoked_wall_ms if window.release_invoked_wall_ms is not None else float("inf")
    return [row["intent_ref"] for row in rec.ledger
            if (window.scope == "global" or row["tenant_id"] == window.scope)
            and window.acked_wall_ms + bound_ms < row["first_applied_at_ms"] < end]


def _propagation(records: list[dict], window: SwitchWindow) -> float | None:
    seen = [r["snapshot"]["now_ms"] for r in records
            if r["snapshot"]["global_switch"] and r["snapshot"]["global_revision"] >= window.revision]
    return max(0, min(seen) - window.acked_wall_ms) if seen else None


def _corrupt_windows(rec: Recorded) -> list[SwitchWindow]:
    """Corruptions of the global switch, as windows: from the corrupting write's ack to the repair.

    The repair is the operator's release of the global switch after the corruption ended; a
    decision that saw its revision read the repaired state."""
    windows, begin = [], None
    for e in rec.history:
        if e.f == "corrupt_safety_state" and e.value.get("begin"):
            begin, repair = e, None
        elif begin is not None and e.f == "killswitch" and e.value.get("scope") == "global":
            if e.type == "invoke":
                repair = e
            elif e.type == OK and repair is not None:
                windows.append(SwitchWindow("global", begin.index, begin.value["wall_ms"], 0, repair.index,
                                            repair.value["invoked_wall_ms"], e.value.get("revision")))
                begin = None
    if begin is not None:
        windows.append(SwitchWindow("global", begin.index, begin.value["wall_ms"], 0, None, None, None))
    return windows


def killswitch(rec: Recorded) -> tuple[dict, dict]:
    records, subs, by_pair = _records(rec), submissions(rec.history), records_by_pair(rec)
    bound_ms = rec.params.get("scenario_params", {}).get("killswitch", {}).get("switch_effect_bound_ms")
    global_windows = _switch_windows(rec, "global", "killswitch")
    tenant_windows = [w for scope in _switch_scopes(rec, "killswitch") - {"global"}
                      for w in _switch_windows(rec, scope, "killswitch")]
    corrupt = _corrupt_windows(rec)
    executed_in_window = [k for w in global_windows for k in _executed_after_ack(subs, by_pair, w, "global_revision")]
    tenant_leaks = [k for w in tenant_windows for k in _executed_after_ack(subs, by_pair, w, "tenant_revision")]
    fail_open = [k for w in corrupt for k in _executed_after_ack(subs, by_pair, w, "global_revision")]
    late_effects = None if bound_ms is None else \
        [k for w in global_windows + tenant_windows for k in _effects_past_bound(rec, w, bound_ms)]
    propagation = [p for p in (_propagation(records, w) for w in global_windows) if p is not None]
    unseen = len(global_windows) - len(propagation)
    fail_closed = sum(1 for w in corrupt for sub in _judged(subs, w) for r in by_pair.get(sub.pair, [])
                      if r["reason_code"] == "SAFETY_STATE_UNAVAILABLE")
    a2a3_executed = [r for r in records if r["action_class"] in APPROVAL_CLASSES and r["outcome"] == "EXECUTED"]
    unapproved = [r["idempotency_key"] for r in a2a3_executed if not _approved(r)]
    return {
        "global_switch_cycles": len(global_windows),
        "submissions_after_global_ack": sum(len(_judged(subs, w)) for w in global_windows),
        "tenant_switch_submissions": sum(len(_judged(subs, w)) for w in tenant_windows),
        "fail_closed_submissions": sum(len(_judged(subs, w)) for w in corrupt),
        "a2a3_executed": len(a2a3_executed),
        "tenant_switch_cycles": len(tenant_windows),
        "executions_while_global_engaged": len(executed_in_window),
        "effects_past_switch_bound": None if late_effects is None else len(late_effects),
        "killswitch_propagation_p99_ms": quantile(propagation, 0.99) if propagation and not unseen else None,
        "killswitch_cycles_unobserved": unseen,
        "tenant_switch_leaks": len(tenant_leaks),
        "fail_closed_executions": len(fail_open) if corrupt else None,
        "fail_closed_denials": fail_closed,
        "unapproved_a2a3_executed": len(unapproved),
    }, {"propagation_ms": propagation, "executed_while_engaged": first(executed_in_window),
        "effects_past_switch_bound": first(late_effects or []), "switch_effect_bound_ms": bound_ms,
        "tenant_leaks": first(tenant_leaks), "fail_open": first(fail_open), "unapproved": first(unapproved)}


def _approved(record: dict) -> bool:
    approval = record["snapshot"].get("approval")
    return bool(approval) and approval["status"] == "APPROVED" and approval["intent_hash"] == record["intent_hash"] \
        and approval["expires_at_ms"] > record["snapshot"]["now_ms"]


def tenancy(rec: Recorded) -> tuple[dict, dict]:
    subs = submissions(rec.history, "tenancy")
    cross = [s for s in subs if s.tag == Tag.CROSS_TENANT]
    same_key = [s for s in subs if s.tag == Tag.SAME_KEY_OTHER_TENANT]
    bad = [s for s in subs if s.tag == Tag.BAD_INPUT]
    owners = rec.run.node_owners
    foreign_effects = [row["idempotency_key"] for row in rec.ledger if owners.get(row["node_id"]) != row["tenant_id"]]
    foreign_records = [r["idempotency_key"] for r in _records(rec)
                       if r["outcome"] == "EXECUTED" and owners.get(r["node_id"]) != r["tenant_id"]]
    targets = {intent_ref(row["intent"]["tenant_id"], row["intent"]["idempotency_key"]):
               (row["intent"]["tenant_id"], row["intent"]["node_id"]) for row in rec.intents}
    off_target = [row["intent_ref"] for row in rec.ledger
                  if targets.get(row["intent_ref"]) != (row["tenant_id"], row["node_id"])]
    arrived = audit_time_by_pair(rec)
    # Each tenant's intent under the shared key must be its own: accepted as new, with its own record.
    swallowed = [s.pair for s in same_key if not s.accepted or s.done.value.get("duplicate") or s.pair not in arrived]

    def p99(tag: Tag) -> float | None:
        return quantile([arrived[s.pair] - wall_ms(rec, s.invoke) for s in subs
                         if s.tag == tag and s.accepted and s.pair in arrived], 0.99)

    baseline, under = p99(Tag.QUIET_BASELINE), p99(Tag.QUIET_NOISE)
    quiet_refused = sum(1 for s in subs if s.tag in (Tag.QUIET_BASELINE, Tag.QUIET_NOISE) and s.refused)
    noisy_limited = sum(1 for s in subs if s.tag == Tag.NOISY and s.reason == "RATE_LIMITED_TENANT")
    return {
        "cross_tenant_attempts": len(cross),
        "bad_input_attempts": len(bad),
        "quiet_submissions": sum(1 for s in subs if s.tag.startswith("quiet")),
        "cross_tenant_accepted": sum(1 for s in cross if s.accepted or s.done is None),
        "same_key_other_tenant_submissions": len(same_key),
        "same_key_other_tenant_swallowed": len(swallowed),
        "cross_tenant_effects": len(foreign_effects) + len(foreign_records) if owners else None,
        "effects_off_their_intent": len(off_target),
        "bad_input_not_refused_4xx": sum(1 for s in bad if not (s.refused and 400 <= s.done.value["status"] < 500
                                                                  and s.reason)),
        "quiet_tenant_p99_ms_baseline": baseline,
        "quiet_tenant_p99_ms_under_noise": under,
        "quiet_tenant_latency_ratio": under / max(baseline, 1.0) if under is not None and baseline is not None else None,
        "quiet_tenant_refused": quiet_refused,
        "noisy_tenant_rate_limited": noisy_limited,
    }, {"foreign_effects": first(foreign_effects),
        "effects_off_their_intent": first(off_target),
        "foreign_records": first(foreign_records), "same_key_swallowed": first(swallowed)}
