"""Approval oracle and operator door: judged against the harness's own grants — each can go red."""

from __future__ import annotations

from builders import T0_WALL_MS, Hist, approval, intent, intent_row, ledger_row, record, recorded, snapshot

from exoarmur_cli.checkers.approvals import MUST_NOT_EXECUTE, approvals, operator_door

GRANT_MS = T0_WALL_MS + 1_000


def grant(hist: Hist, the_intent, *, status: str = "APPROVED", ttl_s: float = 300, intent_hash: str | None = None,
          tenant: str | None = None, code: int = 200) -> None:
    value = {"key": the_intent.idempotency_key, "tenant_id": tenant or the_intent.tenant_id, "status": status,
             "intent_hash": intent_hash or the_intent.intent_hash(), "matching_hash": intent_hash is None,
             "ttl_s": ttl_s}
    hist.add("invoke", "approval", "operator", "killswitch", **value, invoked_wall_ms=GRANT_MS)
    hist.add("ok" if code == 200 else "fail", "approval", "operator", "killswitch", **value, status_code=code,
             acked_wall_ms=GRANT_MS + 2)


def executed_a2(key: str, *, approval_fields: dict | None = None, action_class: str = "A2"):
    the_intent = intent(key, action_class=action_class)
    granted = approval(the_intent, **(approval_fields or {}))
    return the_intent, record(the_intent, snapshot(the_intent, approval=granted), outcome="EXECUTED", reason_code="OK")


def applied(key: str, at_ms: int) -> dict:
    return {**ledger_row(key), "first_applied_at_ms": at_ms}


def judge(hist: Hist, the_intent, rec: dict, effect_ms: int = GRANT_MS + 50) -> dict:
    metrics, _ = approvals(recorded(hist, records=[rec], intents=[intent_row(the_intent)],
                                    ledger=[applied(the_intent.idempotency_key, effect_ms)]))
    return metrics


def test_an_execution_matching_a_harness_grant():
    the_intent, rec = executed_a2("killswitch-00001")
    hist = Hist()
    grant(hist, the_intent)
    metrics = judge(hist, the_intent, rec)
    assert metrics["a2a3_executed_checked"] == 1
    assert metrics["a2a3_executed_without_harness_grant"] == 0


def test_the_stacks_own_approval_is_not_the_yardstick():
    """The record carries a valid-looking APPROVED approval, but the harness never granted one."""
    the_intent, rec = executed_a2("killswitch-00001")
    assert judge(Hist(), the_intent, rec)["a2a3_executed_without_harness_grant"] == 1


def test_grants_that_do_not_authorise():
    the_intent, rec = executed_a2("killswitch-00001")
    for kwargs in ({"status": "DENIED"}, {"intent_hash": "0" * 64}, {"tenant": "t2"}, {"code": 403}):
        hist = Hist()
        grant(hist, the_intent, **kwargs)
        assert judge(hist, the_intent, rec)["a2a3_executed_without_harness_grant"] == 1, kwargs


def test_an_effect_after_the_grants_earliest_expiry():
    the_intent, rec = executed_a2("killswitch-00001")
    hist = Hist()
    grant(hist, the_intent, ttl_s=0.2)
    assert judge(hist, the_intent, rec, effect_ms=GRANT_MS + 150)["a2a3_executed_without_harness_grant"] == 0
    assert judge(hist, the_intent, rec, effect_ms=GRANT_MS + 250)["a2a3_executed_without_harness_grant"] == 1


def test_an_execution_without_an_effect_in_the_ledger_is_not_matched():
    the_intent, rec = executed_a2("killswitch-00001")
    hist = Hist()
    grant(hist, the_intent)
    metrics, _ = approvals(recorded(hist, records=[rec], intents=[intent_row(the_intent)]))
    assert metrics["a2a3_executed_without_harness_grant"] == 1


def probed(path_outcomes: dict[str, str]) -> dict:
    hist, records = Hist(), []
    for n, (path, outcome) in enumerate(path_outcomes.items()):
        key = f"killswitch-{n:05d}"
        hist.submit(key, probe=path)
        the_intent = intent(key, action_class="A2")
        reason = "OK" if outcome == "EXECUTED" else "APPROVAL_DENIED"
        records.append(record(the_intent, outcome=outcome, reason_code=reason))
    metrics, evidence = approvals(recorded(hist, records=records))
    return metrics | {"_evidence": evidence}


def test_every_path_judged_on_its_own():
    outcomes = {path: "DENIED" for path in MUST_NOT_EXECUTE} | {"approved": "EXECUTED"}
    metrics = probed(outcomes)
    assert metrics["approval_paths_probed"] == len(MUST_NOT_EXECUTE) + 1
    assert metrics["approval_approved_executed"] == 1
    assert all(metrics[f"approval_{p}_executed"] == 0 for p in MUST_NOT_EXECUTE)
    for path in MUST_NOT_EXECUTE:
        broken = probed(outcomes | {path: "EXECUTED"})
        assert broken[f"approval_{path}_executed"] == 1, path
        assert sum(broken[f"approval_{p}_executed"] for p in MUST_NOT_EXECUTE) == 1  # only that path is named


def test_an_unprobed_path_is_a_missing_measurement():
    metrics = probed({"approved": "EXECUTED"})
    assert metrics["approval_denied_executed"] is None
    assert metrics["approval_paths_probed"] == 1


def test_late_grants_count_as_seen_only_when_the_decision_had_the_approval_in_hand():
    hist, records = Hist(), []
    for n, seen in enumerate((True, False, True)):
        key = f"killswitch-{n:05d}"
        hist.submit(key, probe="late_grant")
        the_intent = intent(key, action_class="A2")
        late = snapshot(the_intent, approval=approval(the_intent)) if seen else snapshot(the_intent)
        records.append(record(the_intent, late, outcome="EXPIRED", reason_code="APPROVAL_EXPIRED"))
    metrics, _ = approvals(recorded(hist, records=records))
    assert metrics["approval_late_grants_seen"] == 2 and metrics["approval_late_grant_executed"] == 0
    assert probed({"approved": "EXECUTED"})["approval_late_grants_seen"] is None  # never probed: missing


def door(answers: list[int], before: int = 7, after: int = 7) -> dict:
    hist = Hist()
    for status in answers:
        hist.add("invoke", "operator_probe", "peer-own-tenant", "killswitch", method="PUT", path="/v1/x")
        hist.add("ok" if 200 <= status < 300 else "fail", "operator_probe", "peer-own-tenant", "killswitch",
                 method="PUT", path="/v1/x", status=status)
    hist.observe("safety_kv_writes", "killswitch", before={"safety": before, "approvals": 3},
                 after={"safety": after, "approvals": 3})
    metrics, _ = operator_door(recorded(hist))
    return metrics


def test_operator_door_holds():
    assert door([403, 401, 403]) == {"operator_probes": 3, "operator_probes_not_refused": 0,
                                     "operator_probe_kv_writes": 0}


def test_operator_door_open_or_server_error_or_written():
    assert door([403, 200])["operator_probes_not_refused"] == 1
    assert door([403, 500])["operator_probes_not_refused"] == 1  # a 5xx is not a refusal
    assert door([403, 403], after=8)["operator_probe_kv_writes"] == 1


def test_operator_door_unobserved_is_missing():
    metrics, _ = operator_door(recorded(Hist()))
    assert metrics["operator_probe_kv_writes"] is None
    assert metrics["operator_probes"] == 0
